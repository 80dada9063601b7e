"""Fixtures for kb_expand tests: real shared data, a per-test store, a scripted HTTP server on 127.0.0.1, and the
helpers of the store tests (the `kbx` CLI in a subprocess, another process holding the store's lock, the file
a failed build saved its words to).

CATMNER_HOME is one folder per session (root conftest), so the WordNet copy and GloVe .kv cache are built once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from kb_expand.store import Store


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


@pytest.fixture
def vg_sample(data_dir) -> Path:
    """The small Visual Genome sample (5 images) most builds in these tests read."""
    return data_dir / "visualgenome" / "relationships_sample5.json"


def kbx_env(**extra: str) -> dict[str, str]:
    """This environment without KBX_DEBUG / CATMNER_DEBUG (a known error must stay one line), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("KBX_DEBUG", "CATMNER_DEBUG")}
    return {**env, **extra}


def run_kbx(*args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`python -m kb_expand.cli ARGS` in a subprocess under kbx_env(**env), its output captured as text."""
    cmd = [sys.executable, "-m", "kb_expand.cli", *args]
    return subprocess.run(cmd, env=kbx_env(**env), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def kbx():
    """run_kbx: ``kbx("build", "-s", "visualgenome", "--vg", str(vg), "-q", KBX_DB=str(db))``."""
    return run_kbx


def pending_words(line: str) -> Path:
    """The file a failed build saved its words to, as its one-line error names it."""
    return Path(line.split("the words are in ")[1].split(" (usable")[0])


@pytest.fixture
def pending():
    return pending_words


# Another process holding the store's lock: BEGIN IMMEDIATE (the write lock, with a row written that its
# rollback takes back) or BEGIN EXCLUSIVE (no other connection may even read). It prints "locked" once it holds it.
_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
if sys.argv[3] == "exclusive":
    conn.execute("BEGIN EXCLUSIVE")
else:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO http_cache VALUES ('k', 'u', 200, 'b', 'now')")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


@pytest.fixture
def hold_lock():
    """``hold_lock(db, seconds, exclusive=False, schema=True)``: a process holding db's lock for `seconds`
    (returned once it holds it; the test kills or waits for it). With schema, the store's tables are made
    first, so a build only needs the lock to write its result. Holders still running at the end are killed."""
    holders: list[subprocess.Popen] = []

    def hold(db: Path, seconds: float, *, exclusive: bool = False, schema: bool = True) -> subprocess.Popen:
        if schema:
            with Store.open(db):
                pass
        mode = "exclusive" if exclusive else "immediate"
        holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(db), str(seconds), mode],
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        holders.append(holder)
        assert holder.stdout.readline().strip() == "locked"
        return holder

    yield hold
    for holder in holders:
        if holder.poll() is None:
            holder.kill()
        holder.wait()
        holder.stdout.close()


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
