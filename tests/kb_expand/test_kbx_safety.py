"""No code runs from a data file, and every bad input or fault of a build is one line with nothing half-stored.

Crafted pickles (a `.kv` file, a planted cache file) whose unpickling would write a marker file; a real SQLite
store held by another process; Visual Genome files with no usable relationship."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
from kb_expand.errors import InputError, KbxError
from kb_expand.sources import embeddings
from kb_expand.sources.embeddings import load_vectors, words_file
from kb_expand.store import Store


class _Boom:
    """Unpickling this object creates the file `marker` (what an attacker's payload would do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle.dumps(_Boom(marker)))
    return path


@pytest.fixture
def fresh_vectors(monkeypatch):
    """An empty in-memory vectors cache (the on-disk one stays per session)."""
    monkeypatch.setattr(embeddings, "_CACHE", {})


def test_kv_pickle_refused_with_conversion_hint(tmp_path, fresh_vectors):
    marker = tmp_path / "pwned"
    kv = _evil_pickle(tmp_path / "vectors.kv", marker)
    with pytest.raises(InputError, match=r"vectors\.kv: a gensim \.kv file is a Python pickle") as err:
        load_vectors(kv)
    msg = str(err.value)
    assert "\n" not in msg and "save_word2vec_format" in msg and "--trust-pickle" in msg
    assert not marker.exists()
    # a pickle under another name is refused the same way (its first byte gives it away)
    other = _evil_pickle(tmp_path / "vectors.txt", marker)
    with pytest.raises(InputError, match="is a Python pickle"):
        load_vectors(other)
    assert not marker.exists()


def test_kv_pickle_cli_is_one_line_and_runs_nothing(tmp_path, db, kbx):
    marker = tmp_path / "pwned"
    kv = _evil_pickle(tmp_path / "vectors.kv", marker)
    r = kbx("build", "-s", "embeddings", "--vectors", str(kv), "-q", KBX_DB=str(db))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith(f"kbx: error: {kv}: a gensim .kv")
    assert not marker.exists() and "Traceback" not in r.stderr


def test_real_kv_loads_only_with_trust_pickle(tmp_path, fresh_vectors):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=3, count=0)
    kv.add_vectors(["cat", "dog"], np.eye(2, 3, dtype=np.float32))
    kv.save(str(tmp_path / "mine.kv"))
    with pytest.raises(InputError, match="pickle"):
        load_vectors(tmp_path / "mine.kv")
    loaded = load_vectors(tmp_path / "mine.kv", trust_pickle=True)
    assert loaded.index_to_key == ["cat", "dog"]


def test_safe_own_format_and_text_formats(tmp_path, fresh_vectors):
    words = ["cat", "dog", "bird"]
    m = np.arange(9, dtype=np.float32).reshape(3, 3) + 1
    np.save(tmp_path / "v.npy", m, allow_pickle=False)
    (tmp_path / "v.words.json").write_text(json.dumps(words))
    kv = load_vectors(tmp_path / "v.npy")
    assert kv.index_to_key == words and np.allclose(kv.get_vector("dog"), m[1])
    assert kv.most_similar("cat", topn=1)[0][0] in ("dog", "bird")
    # an object array (a pickle inside .npy) is refused, not unpickled
    np.save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (tmp_path / "o.words.json").write_text('["a"]')
    with pytest.raises(InputError, match=r"o\.npy: not a readable vectors matrix"):
        load_vectors(tmp_path / "o.npy")
    (tmp_path / "short.npy").write_bytes((tmp_path / "v.npy").read_bytes())
    (tmp_path / "short.words.json").write_text('["cat"]')
    with pytest.raises(InputError, match="1 words for 3 vectors"):
        load_vectors(tmp_path / "short.npy")
    # GloVe text: cached in the safe format, never as a .kv pickle
    glove = tmp_path / "glove.txt"
    glove.write_text(
        "".join(f"{w} {' '.join(str(x) for x in row)}\n" for w, row in zip(words, m, strict=True))
    )
    kv = load_vectors(glove)
    assert kv.index_to_key == words
    folder = Path(os.environ["CATMNER_HOME"]) / "vectors"
    cached = [p for p in folder.iterdir() if p.name.startswith("glove.txt.")]
    assert cached and not [p for p in folder.iterdir() if p.suffix == ".kv"]
    assert {p.suffix for p in cached} == {".npy", ".json"}


def test_default_vectors_cache_is_not_a_pickle(tmp_path, monkeypatch, fresh_vectors):
    """A `.kv` planted where the old cache lay is never read; the cache is .npy + .words.json."""
    load_vectors()  # make sure the session cache exists
    folder = Path(os.environ["CATMNER_HOME"]) / "vectors"
    marker = tmp_path / "pwned"
    _evil_pickle(folder / "glove-6b-50d.kv", marker)
    monkeypatch.setattr(embeddings, "_CACHE", {})
    kv = load_vectors()
    assert len(kv.key_to_index) == 400000 and not marker.exists()
    assert words_file(folder / "glove-6b-50d.npy").is_file()
    (folder / "glove-6b-50d.kv").unlink()


def test_wordnet_index_cache_is_json(tmp_path, monkeypatch):
    from kb_expand.sources import wordnet

    monkeypatch.setenv("CATMNER_HOME", str(tmp_path))
    root = tmp_path / "wn"
    root.mkdir()
    (root / "data.noun").write_text("x")
    calls = []
    got = wordnet._index_cache(root, "satellites", lambda: calls.append(1), lambda: [3, 1, 2], set)
    again = wordnet._index_cache(root, "satellites", lambda: calls.append(1), lambda: [9], set)
    assert got == again == {1, 2, 3} and calls == [1]
    files = list((tmp_path / "cache").iterdir())
    assert [f.suffix for f in files] == [".json"] and json.loads(files[0].read_text()) == [3, 1, 2]
    # a pickle planted under the old name is ignored; a damaged JSON cache is recomputed
    marker = tmp_path / "pwned"
    _evil_pickle(files[0].with_suffix(".pickle"), marker)
    files[0].write_text("{not json")
    assert wordnet._index_cache(root, "satellites", lambda: calls.append(1), lambda: [7], set) == {7}
    assert not marker.exists() and calls == [1, 1]
    src = (Path(wordnet.__file__)).read_text() + Path(embeddings.__file__).read_text()
    assert "pickle.load" not in src and "import pickle" not in src


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '[{"image_id": 1, "relationships": []}]',
        '[{"image_id": 1, "relationships": [1, "x", {"predicate": "on", "subject": {}, "object": {"name": ""}}]}]',
    ],
    ids=["empty-array", "no-relationships", "malformed-relationships"],
)
def test_vg_without_usable_relationships_is_refused_not_stored(tmp_path, db, kbx, content):
    vg = tmp_path / "relationships.json"
    vg.write_text(content)
    r = kbx("build", "-s", "visualgenome", "--vg", str(vg), "-q", KBX_DB=str(db))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith(f"kbx: error: {vg}: no usable relationship")
    with Store.open(db) as store:
        assert store.builds() == []


def test_build_with_no_words_is_not_stored(db, tmp_path):
    from kb_expand.build import BuildConfig, run_build

    scheme = tmp_path / "scheme.json"
    scheme.write_text(json.dumps({"name": "nonsense", "labels": [{"label": "qzxv", "type": "MISC"}]}))
    with pytest.raises(KbxError, match="found no label words for any label: nothing stored"):
        run_build(BuildConfig(source="embeddings", scheme=str(scheme), progress=False), db)
    with Store.open(db) as store:
        assert store.builds() == []


def test_store_locked_past_timeout_is_one_line_and_loses_nothing(db, vg_sample, kbx, hold_lock, pending):
    from kb_expand import load_label_words

    holder = hold_lock(db, 60)  # the write lock
    try:
        r = kbx(
            "build", "-s", "visualgenome", "--vg", str(vg_sample), "-q", KBX_DB=str(db), KBX_LOCK_TIMEOUT="1"
        )
    finally:
        holder.kill()
        holder.wait()
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "locked by another process for 1 s" in lines[0] and "nothing lost" in lines[0]
    saved = load_label_words(str(pending(lines[0])))
    assert saved.source == "visualgenome" and len(saved.labels) == 10 and saved.words()
    with Store.open(db) as store:
        assert store.builds() == [] and store.http_cache_size() == 0  # the holder's rollback, nothing else


def test_store_locked_briefly_waits_and_stores(db, vg_sample, kbx, hold_lock):
    holder = hold_lock(db, 4)
    t0 = time.monotonic()
    try:
        r = kbx(
            "build", "-s", "visualgenome", "--vg", str(vg_sample), "-q", KBX_DB=str(db), KBX_LOCK_TIMEOUT="60"
        )
        waited = time.monotonic() - t0  # before waiting for the holder: the build itself waited for the lock
    finally:
        holder.wait()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("build 1: visualgenome")
    assert waited >= 3.5  # the holder keeps the lock 4 s from just before t0
