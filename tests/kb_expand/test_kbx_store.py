"""The store and the read API: migrations, atomic builds (incl. SIGKILL mid-write), load_label_words."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from kb_expand import LabelWords, labels_checksum, load_label_words
from kb_expand.build import BuildConfig, run_build
from kb_expand.errors import KbxError
from kb_expand.store import MIGRATIONS, LabelResult, Store, WordRow


def _result(label, words, etype="PER"):
    return LabelResult(
        label, etype, [label], [WordRow(w, 1.0 / (i + 1), "test", {"i": i}) for i, w in enumerate(words)]
    )


def test_migrations_recorded_and_idempotent(db):
    with Store.open(db) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
        assert store.migrate() == []  # nothing pending on reopen
        tables = set(store.db.table_names())
    assert {"_migrations", "builds", "labels", "label_words", "http_cache", "file_checksums"} <= tables


def test_store_from_before_build_reuse_is_migrated(db, monkeypatch, vg_sample):
    import kb_expand.store as kstore

    monkeypatch.setattr(kstore, "MIGRATIONS", MIGRATIONS[:1])  # a store written by the first schema
    with Store.open(db) as store:
        for _ in range(2):  # the first schema's columns only
            store.db.execute(
                "INSERT INTO builds (source, scheme, params, inputs, created_at, tool_version, checksum, n_labels,"
                " n_words, duration_s, missing) VALUES ('test', 's', '{}', '{}', 'now', '0.1.0', 'x', 0, 0, 0, '{}')"
            )
        store.db.conn.commit()
        old = [b["id"] for b in store.builds()]
    monkeypatch.setattr(kstore, "MIGRATIONS", MIGRATIONS)
    with Store.open(db) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
        assert [b["seq"] for b in store.builds()] == old and store.resolve_build("test")["id"] == old[-1]
        assert store.find_reusable("anything", {}) is None  # old builds have no key: never reused
    vg = str(vg_sample)
    first = run_build(BuildConfig(source="visualgenome", vg=vg, progress=False), db)
    assert first.build_id == 3 and not first.reused
    assert run_build(BuildConfig(source="visualgenome", vg=vg, progress=False), db).reused


def test_write_and_read_back(db):
    with Store.open(db) as store:
        b1 = store.write_build(
            "textual",
            "s",
            {"k": 2},
            {},
            [_result("person", ["man", "woman"]), _result("animal", ["dog", "man"], "MISC")],
        )
        b2 = store.write_build("textual", "s", {}, {}, [_result("person", ["child"])])
    lw = load_label_words("textual", db)  # latest textual build
    assert lw.build_id == b2 and lw.labels == {"person": ["child"]}
    lw1 = load_label_words(str(b1), db)
    assert lw1.labels == {"person": ["man", "woman"], "animal": ["dog", "man"]}
    assert lw1.entity_types == {"person": "PER", "animal": "MISC"}
    assert lw1.words() == ["man", "woman", "dog"]
    assert lw1.checksum == labels_checksum(lw1.labels) and lw1.source == "textual"
    again = LabelWords.from_json(json.loads(json.dumps(lw1.to_json())))
    assert again == lw1
    with pytest.raises(KbxError, match="no 'visualgenome' build"):
        load_label_words("visualgenome", db)
    with pytest.raises(KbxError, match="no build with id 99"):
        load_label_words("99", db)


def test_label_words_from_json_file(tmp_path):
    p = tmp_path / "words.json"
    p.write_text(json.dumps({"labels": {"person": ["man"], "animal": ["dog", "cat"]}}))
    lw = load_label_words(str(p))
    assert lw.words() == ["man", "dog", "cat"] and lw.build_id is None and lw.source == "json"
    assert (
        lw.entity_types["animal"] == "MISC" and lw.entity_types["person"] == "PER"
    )  # from the default scheme
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"person": ["man"]}))
    assert load_label_words(str(bare)).labels == {"person": ["man"]}
    bad = tmp_path / "bad.json"
    bad.write_text('{"labels": {"person": ["man"]}\n,,')
    with pytest.raises(KbxError, match=r"bad\.json:2: invalid JSON"):
        load_label_words(str(bad))
    d = lw.to_json()
    d["checksum"] = "0" * 64
    with pytest.raises(KbxError, match="checksum mismatch"):
        LabelWords.from_json(d)


def test_failed_build_leaves_store_unchanged(db, vg_sample):
    vg = str(vg_sample)
    first = run_build(BuildConfig(source="visualgenome", vg=vg, progress=False), db)

    def boom(stage):
        if stage.startswith("label:"):
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        run_build(BuildConfig(source="visualgenome", vg=vg, progress=False, force=True), db, on_write=boom)
    with Store.open(db) as store:
        assert [b["id"] for b in store.builds()] == [first.build_id]
        assert (
            store.db.execute(
                "SELECT COUNT(*) FROM label_words WHERE build_id != ?", [first.build_id]
            ).fetchone()[0]
            == 0
        )


KILL_SCRIPT = """
import sys, time
from pathlib import Path
from kb_expand.build import BuildConfig, run_build
marker = Path(sys.argv[3])
def hook(stage):
    if stage == "label:location":   # two labels written, inside the transaction
        marker.write_text(stage)
        time.sleep(120)
run_build(BuildConfig(source="visualgenome", vg=sys.argv[2], progress=False, force=True), sys.argv[1],
          on_write=hook)
"""


def test_sigkill_mid_build_keeps_earlier_builds(db, vg_sample, tmp_path):
    vg = str(vg_sample)
    cfg = BuildConfig(source="visualgenome", vg=vg, progress=False, force=True)  # two builds, not one reused
    earlier = [run_build(cfg, db) for _ in range(2)]
    before = load_label_words("visualgenome", db)
    marker = tmp_path / "in_transaction"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(db), vg, str(marker)], env=os.environ.copy()
    )
    try:
        deadline = time.time() + 90
        while not marker.exists():
            assert proc.poll() is None, "build subprocess died before reaching the transaction"
            assert time.time() < deadline, "build subprocess never reached the transaction"
            time.sleep(0.1)
        with sqlite3.connect(db) as raw:  # the half-written build is invisible to readers meanwhile
            assert raw.execute("SELECT COUNT(*) FROM builds").fetchone()[0] == 2
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    with Store.open(db) as store:  # opening rolls back the hot journal
        assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [b["id"] for b in store.builds()] == [e.build_id for e in earlier]
        orphans = store.db.execute(
            "SELECT COUNT(*) FROM label_words WHERE build_id NOT IN (SELECT id FROM builds)"
        )
        assert orphans.fetchone()[0] == 0
    after = load_label_words("visualgenome", db)
    assert after == before and after.build_id == earlier[-1].build_id
    nxt = run_build(cfg, db)  # the store still works
    assert load_label_words("visualgenome", db).build_id == nxt.build_id
