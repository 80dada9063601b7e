"""The Related Words web service (relatedwords.org): GET {base}/api/related?term=<label> -> [{word, score, from}]."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import SourceUnavailable
from ..web import HttpClient
from .base import Candidate, Source, SourceContext, finalize

DEFAULT_RELATEDWORDS_URL = "https://relatedwords.org"


class RelatedWordsSource(Source):
    """Queries the label itself (as the paper does); keeps the service's order and scores."""

    name = "relatedwords"
    uses_http = True

    @classmethod
    def from_context(cls, ctx: SourceContext) -> RelatedWordsSource:
        return cls(ctx.http, ctx.cfg.relatedwords_url)

    def __init__(
        self, http: HttpClient, base_url: str = DEFAULT_RELATEDWORDS_URL, keep: Callable | None = None
    ):
        self.http = http
        self.base_url = base_url.rstrip("/")  # service root; tests point it at 127.0.0.1
        self.keep = keep

    def params(self) -> dict:
        return {"url": self.base_url}

    def inputs(self) -> dict:
        return {"relatedwords": f"{self.base_url}/api/related"}

    def expand(self, label: str, seeds: Sequence[str], k: int) -> list[Candidate]:
        url = f"{self.base_url}/api/related"
        data = self.http.get_json(url, {"term": label}, source=self.name)
        if not isinstance(data, list) or not all(
            isinstance(d, dict) and isinstance(d.get("word"), str) for d in data
        ):
            raise SourceUnavailable(
                f"{self.name}: unexpected response from {url}?term={label}: expected [{{word, score, from}}]"
            )
        n = len(data)
        cands = []
        for i, d in enumerate(data):
            score = d.get("score")
            score = float(score) if isinstance(score, int | float) else float(n - i) / max(n, 1)
            cands.append(Candidate(d["word"], score, {"from": d.get("from", ""), "api_rank": i + 1}))
        return finalize(cands, label, k, max_tokens=2, keep=self.keep)
