"""HTTP for the web sources: one requests.Session with timeouts, retries with exponential back-off, a polite
rate limit, and a response cache kept in the store's `http_cache` table (a second build makes no request)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from urllib.parse import urlencode

import requests

from .errors import SourceUnavailable
from .store import Store
from .version import __version__

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass
class HttpConfig:
    timeout: float = 10.0  # seconds for connect and for each read
    retries: int = 3  # extra attempts after a failed one (connection error, timeout, 429/5xx)
    backoff: float = 0.5  # sleep backoff * 2**attempt between attempts
    min_interval: float = 1.0  # polite rate limit: seconds between two requests to the network
    offline: bool = False  # only answer from the cache


class HttpClient:
    """GET JSON through the cache. `requests_made` counts network requests (tests assert 0 on a warm cache)."""

    def __init__(self, store: Store, config: HttpConfig | None = None):
        self.store = store
        self.config = config or HttpConfig()
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"kb-expand/{__version__} (catmner label-word expansion)"
        self.requests_made = 0
        self.cache_hits = 0
        self._last = 0.0

    def close(self) -> None:
        self.session.close()

    def get_json(self, url: str, params: dict | None = None, source: str = "web"):
        """Parsed JSON of GET url?params, from the cache when present. Raises SourceUnavailable with one line."""
        full = f"{url}?{urlencode(params)}" if params else url
        cached = self.store.http_get(full)
        if cached is not None:
            self.cache_hits += 1
            return json.loads(cached["body"])
        if self.config.offline:
            raise SourceUnavailable(f"{source}: offline and {full} is not in the cache")
        last_error = ""
        for attempt in range(self.config.retries + 1):
            if attempt:
                time.sleep(self.config.backoff * 2 ** (attempt - 1))
            wait = self._last + self.config.min_interval - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._last = time.monotonic()
            self.requests_made += 1
            try:
                resp = self.session.get(full, timeout=self.config.timeout)
            except requests.Timeout:
                last_error = f"timed out after {self.config.timeout:g} s"
                continue
            except requests.ConnectionError as e:
                last_error = f"connection failed ({type(e).__name__})"
                continue
            if resp.status_code in RETRY_STATUS:
                last_error = f"HTTP {resp.status_code}"
                continue
            if resp.status_code != 200:
                raise SourceUnavailable(f"{source}: {full} answered HTTP {resp.status_code}")
            try:
                data = json.loads(resp.text)
            except json.JSONDecodeError as e:
                raise SourceUnavailable(
                    f"{source}: malformed JSON from {full} ({e.msg} at char {e.pos})"
                ) from e
            self.store.http_put(full, url, resp.status_code, resp.text)
            return data
        raise SourceUnavailable(
            f"{source}: cannot reach {full}: {last_error} ({self.config.retries + 1} attempts)"
        )
