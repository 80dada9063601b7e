"""The same inputs give the same words, scores and checksum under any PYTHONHASHSEED (set and dict order).

Each hash seed runs in its own subprocess with its own store and its own CATMNER_HOME (so no cache made under
one seed is read under another): the textual build (real WordNet, GloVe, the shared ConceptNet file) and the
visualgenome build (the shared VG-150 file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, sys
from kb_expand.build import BuildConfig, run_build
from kb_expand.store import Store
ckbc, vg = sys.argv[1], sys.argv[2]
out = {}
for cfg in (BuildConfig(source="textual", conceptnet_dump=ckbc, progress=False),
            BuildConfig(source="visualgenome", vg=vg, progress=False)):
    res = run_build(cfg)
    with Store.open() as store:
        build = store.get_build(res.build_id)
        rows = store.word_rows(res.build_id)
    out[cfg.source] = {"checksum": build["checksum"],
                       "words": [[r["label"], r["rank"], r["word"], r["score"]] for r in rows]}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_builds_identical_under_any_hash_seed(tmp_path, data_dir, ckbc):
    vg = data_dir / "visualgenome" / "relationships_vg150_test5k.json"
    results = {}
    for seed in ("0", "1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "KBX_DB": str(tmp_path / f"kb{seed}.sqlite"),
               "CATMNER_HOME": str(tmp_path / f"home{seed}")}  # fmt: skip
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(ckbc), str(vg)], env=env, capture_output=True,
                           text=True, timeout=600)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        results[seed] = json.loads(r.stdout.strip().splitlines()[-1])
    first = results["0"]
    assert len(first["textual"]["words"]) == 100
    assert 30 <= len(first["visualgenome"]["words"]) <= 100  # fewer where nothing passes the thresholds
    for source in ("textual", "visualgenome"):
        for seed in ("1", "2"):
            assert results[seed][source]["checksum"] == first[source]["checksum"], (source, seed)
            assert results[seed][source]["words"] == first[source]["words"], (source, seed)
