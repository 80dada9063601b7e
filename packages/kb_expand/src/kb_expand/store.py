"""The label-word store: one SQLite file (sqlite-utils) and ALL of kb_expand's SQL.

Tables (created by numbered migrations, each applied in a transaction and recorded in `_migrations`):
  builds(id, source, scheme, params JSON, inputs JSON {name: sha256}, created_at, tool_version, checksum,
         n_labels, n_words, duration_s, missing JSON, build_key, seq)
         build_key: sha256 of everything the build was made from (a rerun with the same key reuses it);
         seq: the newest written-or-reused build of a source is the one its name resolves to
  labels(build_id, position, label, entity_type, seeds JSON)
  label_words(build_id, label, rank, word, score, source, evidence JSON)
  http_cache(key, url, status, body, fetched_at)        web responses, so a second build makes no request
  file_checksums(path, size, mtime_ns, sha256)          avoids re-hashing big unchanged inputs
A build is written in ONE transaction: a failed or killed build leaves every earlier build intact.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from .checksum import labels_checksum
from .errors import KbxError
from .paths import default_db_path
from .version import __version__

MIGRATIONS: list[tuple[int, str, list[str]]] = [
    (
        1,
        "initial schema",
        [
            """CREATE TABLE builds (
                id INTEGER PRIMARY KEY, source TEXT NOT NULL, scheme TEXT NOT NULL, params TEXT NOT NULL,
                inputs TEXT NOT NULL, created_at TEXT NOT NULL, tool_version TEXT NOT NULL, checksum TEXT NOT NULL,
                n_labels INTEGER NOT NULL, n_words INTEGER NOT NULL, duration_s REAL, missing TEXT NOT NULL)""",
            "CREATE INDEX builds_source ON builds(source, id)",
            """CREATE TABLE labels (
                build_id INTEGER NOT NULL REFERENCES builds(id), position INTEGER NOT NULL, label TEXT NOT NULL,
                entity_type TEXT NOT NULL, seeds TEXT NOT NULL, PRIMARY KEY (build_id, label))""",
            """CREATE TABLE label_words (
                build_id INTEGER NOT NULL REFERENCES builds(id), label TEXT NOT NULL, rank INTEGER NOT NULL,
                word TEXT NOT NULL, score REAL NOT NULL, source TEXT NOT NULL, evidence TEXT NOT NULL,
                PRIMARY KEY (build_id, label, rank))""",
            """CREATE TABLE http_cache (
                key TEXT PRIMARY KEY, url TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL,
                fetched_at TEXT NOT NULL)""",
            """CREATE TABLE file_checksums (
                path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)""",
        ],
    ),
    (
        2,
        "build reuse: build_key (what a build was made from) and seq (which build of a source is current)",
        [
            "ALTER TABLE builds ADD COLUMN build_key TEXT",
            "ALTER TABLE builds ADD COLUMN seq INTEGER",
            "UPDATE builds SET seq = id",
            "CREATE INDEX builds_key ON builds(build_key)",
        ],
    ),
]


@dataclass
class WordRow:
    word: str  # the label word
    score: float  # source-specific relatedness score (higher = more related)
    source: str  # source that produced it ("wordnet", "conceptnet", ... or "textual")
    evidence: dict  # why: relation path, edge, co-occurrence count, per-source ranks


@dataclass
class LabelResult:
    label: str  # label name
    entity_type: str  # PER/LOC/ORG/MISC
    seeds: list[str]  # seed terms used
    words: list[WordRow]  # ranked words (rank = position + 1)


class StoreLocked(KbxError):
    """Another process held the store's write lock for longer than the lock timeout."""


def lock_timeout() -> float:
    """Seconds a write waits for another process's lock on the store: $KBX_LOCK_TIMEOUT, default 60."""
    try:
        return max(0.0, float(os.environ.get("KBX_LOCK_TIMEOUT") or 60))
    except ValueError:
        raise KbxError(f"KBX_LOCK_TIMEOUT={os.environ['KBX_LOCK_TIMEOUT']!r}: expected seconds") from None


def _is_locked(exc: BaseException) -> bool:
    return isinstance(exc, sqlite_utils.db.sqlite3.OperationalError) and (
        "locked" in str(exc) or "busy" in str(exc)
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """An open store. Use `Store.open(path)` as a context manager."""

    def __init__(self, db: sqlite_utils.Database, path: Path):
        self.db = db
        self.path = path

    @classmethod
    def open(cls, db: str | Path | None = None, create: bool = True) -> Store:
        """Open (and migrate) the store at db / $KBX_DB / $CATMNER_HOME/kb.sqlite."""
        path = default_db_path(db)
        if not create and not path.exists():
            raise KbxError(
                f"no label-word store at {path}: run `kbx build` first (or pass --db / set KBX_DB)"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite_utils.db.sqlite3.connect(str(path), timeout=lock_timeout())  # waits, then retries
            database = sqlite_utils.Database(conn)
            store = cls(database, path)
            store.migrate()
        except (OSError, sqlite_utils.db.sqlite3.DatabaseError) as e:
            raise KbxError(f"{path}: cannot open label-word store: {e}") from e
        return store

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    # -- schema ---------------------------------------------------------------------------------------
    def migrate(self) -> list[int]:
        """Apply pending numbered migrations, each in its own transaction; returns the applied ids."""
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (id INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT)"
        )
        done = {row[0] for row in self.db.execute("SELECT id FROM _migrations").fetchall()}
        applied = []
        for mid, name, statements in MIGRATIONS:
            if mid in done:
                continue
            with self.db.atomic():
                for sql in statements:
                    self.db.execute(sql)
                self.db.execute(
                    "INSERT INTO _migrations (id, name, applied_at) VALUES (?, ?, ?)", [mid, name, _now()]
                )
            applied.append(mid)
        return applied

    def schema_version(self) -> int:
        return self.db.execute("SELECT COALESCE(MAX(id), 0) FROM _migrations").fetchone()[0]

    # -- builds ---------------------------------------------------------------------------------------
    def write_build(
        self,
        source: str,
        scheme: str,
        params: dict,
        inputs: dict,
        results: Sequence[LabelResult],
        missing: dict | None = None,
        duration_s: float | None = None,
        on_write: Callable[[str], None] | None = None,
        build_key: str | None = None,
    ) -> int:
        """Insert one complete build in a single transaction; returns its id.

        on_write(stage) is called inside the transaction ("build", then once per label) - a hook for tests
        that interrupt a build mid-write.
        """
        labels = {r.label: [w.word for w in r.words] for r in results}
        try:
            return self._write_build(
                source, scheme, params, inputs, results, missing, duration_s, on_write, labels, build_key
            )
        except sqlite_utils.db.sqlite3.OperationalError as e:
            if not _is_locked(e):
                raise
            raise StoreLocked(
                f"{self.path}: the label-word store stayed locked by another process for {lock_timeout():g} s"
            ) from e

    def _write_build(
        self, source, scheme, params, inputs, results, missing, duration_s, on_write, labels, build_key=None
    ) -> int:
        with self.db.atomic():
            cur = self.db.execute(
                "INSERT INTO builds (source, scheme, params, inputs, created_at, tool_version, checksum, n_labels,"
                " n_words, duration_s, missing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    source, scheme, json.dumps(params, sort_keys=True), json.dumps(inputs, sort_keys=True), _now(),
                    __version__, labels_checksum(labels), len(results), sum(len(r.words) for r in results),
                    duration_s, json.dumps(missing or {}, sort_keys=True),
                ],
            )  # fmt: skip
            build_id = int(cur.lastrowid)
            self.db.execute(
                "UPDATE builds SET build_key = ?, seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM builds) WHERE id = ?",
                [build_key, build_id],
            )
            if on_write:
                on_write("build")
            for pos, r in enumerate(results):
                self.db["labels"].insert(
                    {"build_id": build_id, "position": pos, "label": r.label, "entity_type": r.entity_type,
                     "seeds": json.dumps(r.seeds)}
                )  # fmt: skip
                self.db["label_words"].insert_all(
                    {"build_id": build_id, "label": r.label, "rank": i + 1, "word": w.word, "score": float(w.score),
                     "source": w.source, "evidence": json.dumps(w.evidence, sort_keys=True, ensure_ascii=False)}
                    for i, w in enumerate(r.words)
                )  # fmt: skip
                if on_write:
                    on_write(f"label:{r.label}")
        return build_id

    def builds(self, source: str | None = None) -> list[dict]:
        sql = "SELECT * FROM builds" + (" WHERE source = ?" if source else "") + " ORDER BY id"
        return [self._build_row(r) for r in self.db.query(sql, [source] if source else [])]

    def get_build(self, build_id: int) -> dict:
        rows = list(self.db.query("SELECT * FROM builds WHERE id = ?", [build_id]))
        if not rows:
            raise KbxError(f"{self.path}: no build with id {build_id}")
        return self._build_row(rows[0])

    def find_reusable(self, build_key: str, missing: dict) -> dict | None:
        """The newest build made from exactly `build_key` with the same missing sources, or None."""
        rows = self.db.query("SELECT * FROM builds WHERE build_key = ? ORDER BY id DESC", [build_key])
        for row in rows:
            row = self._build_row(row)
            if row["missing"] == missing:
                return row
        return None

    def select_build(self, build_id: int) -> None:
        """Make a build the newest of its source (what the source name resolves to), e.g. when it is reused."""
        with self.db.atomic():
            self.db.execute(
                "UPDATE builds SET seq = (SELECT COALESCE(MAX(seq), 0) + 1 FROM builds) WHERE id = ?",
                [build_id],
            )

    def resolve_build(self, spec: str | int) -> dict:
        """A build id ("7") or a source name ("textual" -> its newest build: the one the last `kbx build` of
        that source wrote or reused)."""
        spec = str(spec)
        if spec.isdigit():
            return self.get_build(int(spec))
        rows = list(
            self.db.query("SELECT * FROM builds WHERE source = ? ORDER BY seq DESC, id DESC LIMIT 1", [spec])
        )
        if not rows:
            raise KbxError(f"{self.path}: no '{spec}' build: run `kbx build --source {spec}`")
        return self._build_row(rows[0])

    @staticmethod
    def _build_row(row: dict) -> dict:
        row = dict(row)
        for key in ("params", "inputs", "missing"):
            row[key] = json.loads(row[key])
        return row

    def label_words(self, build_id: int) -> tuple[dict[str, list[str]], dict[str, str]]:
        """({label: [words by rank]}, {label: entity_type}) in the scheme's label order."""
        labels: dict[str, list[str]] = {}
        types: dict[str, str] = {}
        for row in self.db.query("SELECT * FROM labels WHERE build_id = ? ORDER BY position", [build_id]):
            labels[row["label"]] = []
            types[row["label"]] = row["entity_type"]
        for row in self.db.query(
            "SELECT label, word FROM label_words WHERE build_id = ? ORDER BY rank", [build_id]
        ):
            labels[row["label"]].append(row["word"])
        return labels, types

    def word_rows(self, build_id: int, label: str | None = None) -> list[dict]:
        """Detailed rows (label, entity_type, rank, word, score, source, evidence) of a build."""
        sql = (
            "SELECT w.label, l.entity_type, w.rank, w.word, w.score, w.source, w.evidence FROM label_words w"
            " JOIN labels l ON l.build_id = w.build_id AND l.label = w.label WHERE w.build_id = ?"
        )
        args: list = [build_id]
        if label is not None:
            sql += " AND w.label = ?"
            args.append(label)
        rows = []
        for row in self.db.query(sql + " ORDER BY l.position, w.rank", args):
            row = dict(row)
            row["evidence"] = json.loads(row["evidence"])
            rows.append(row)
        return rows

    def labels_of(self, build_id: int) -> list[dict]:
        rows = self.db.query("SELECT * FROM labels WHERE build_id = ? ORDER BY position", [build_id])
        return [dict(r, seeds=json.loads(r["seeds"])) for r in rows]

    # -- HTTP cache -----------------------------------------------------------------------------------
    def http_get(self, key: str) -> dict | None:
        rows = list(self.db.query("SELECT * FROM http_cache WHERE key = ?", [key]))
        return rows[0] if rows else None

    def http_put(self, key: str, url: str, status: int, body: str) -> None:
        with self.db.atomic():
            self.db["http_cache"].upsert(
                {"key": key, "url": url, "status": status, "body": body, "fetched_at": _now()}, pk="key"
            )

    def http_cache_size(self) -> int:
        return self.db["http_cache"].count

    # -- input checksums ------------------------------------------------------------------------------
    def file_checksum(self, path: str | Path) -> str:
        """sha256 of a file, cached by (absolute path, size, mtime) so unchanged big inputs are hashed once."""
        p = Path(path).resolve()
        st = p.stat()
        rows = list(self.db.query("SELECT * FROM file_checksums WHERE path = ?", [str(p)]))
        if rows and rows[0]["size"] == st.st_size and rows[0]["mtime_ns"] == st.st_mtime_ns:
            return rows[0]["sha256"]
        digest = sha256_file(p)
        try:
            with self.db.atomic():
                self.db["file_checksums"].upsert(
                    {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest},
                    pk="path",
                )
        except sqlite_utils.db.sqlite3.OperationalError as e:
            if not _is_locked(e):
                raise  # locked: the digest is still right, it is only not remembered
        return digest


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextmanager
def timed() -> Iterator[Callable[[], float]]:
    start = time.perf_counter()
    yield lambda: time.perf_counter() - start


def store_exists(db: str | Path | None = None) -> bool:
    return os.path.exists(default_db_path(db))
