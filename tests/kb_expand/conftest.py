"""Fixtures for kb_expand tests: real shared data, a per-test store, a scripted HTTP server on 127.0.0.1.

CATMNER_HOME is one folder per session (root conftest), so the WordNet copy and GloVe .kv cache are built once."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest


@pytest.fixture(scope="session")
def data_dir(shared_data) -> Path:
    """The real shared data (root conftest: $CATMNER_DATA, else ../shared/data); CATMNER_HOME is isolated there."""
    return shared_data


@pytest.fixture
def db(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "kb.sqlite"
    monkeypatch.setenv("KBX_DB", str(path))
    return path


@pytest.fixture
def ckbc(data_dir) -> Path:
    return data_dir / "conceptnet" / "assertions_en_ckbc_positive.csv"


class Scripted:
    """Routes path -> list of responses served in order (the last one repeats).

    A response is (status, body_text) or ("sleep", seconds, status, body)."""

    def __init__(self):
        self.routes: dict[str, list] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()

    def set(self, path: str, *responses) -> None:
        self.routes[path] = list(responses)

    def next(self, path: str):
        with self.lock:
            seq = self.routes.get(path)
            if not seq:
                return (404, "not found")
            return seq.pop(0) if len(seq) > 1 else seq[0]


@pytest.fixture
def server():
    script = Scripted()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            url = urlparse(self.path)
            script.requests.append(self.path)
            resp = script.next(url.path)
            if callable(resp):
                resp = resp(parse_qs(url.query))
            if resp[0] == "sleep":
                time.sleep(resp[1])
                resp = resp[2:]
            status, body = resp
            data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    script.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield script
    httpd.shutdown()
    httpd.server_close()
