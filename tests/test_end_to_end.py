"""The user's path through the installed console scripts, as separate processes: `kbx build` into a fresh
store -> `catmner train --labels <source>` reading that store -> `catmner evaluate` -> `catmner predict`.
Tiny random-init encoders keep it fast; the data, the knowledge base and the store are real."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from catmner_model.metrics import read_predictions, score

BIN = Path(sys.executable).parent


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / args[0]), *args[1:]], env=env, capture_output=True, text=True, timeout=600
    )


def test_kbx_build_then_train_evaluate_predict(tmp_path, shared_data):
    env = {**os.environ, "CATMNER_HOME": str(tmp_path / "home"), "KBX_DB": str(tmp_path / "kb.sqlite")}
    env["OMP_NUM_THREADS"] = "1"
    vg = shared_data / "visualgenome" / "relationships_vg150_test5k.json"
    built = run("kbx", "build", "--source", "visualgenome", "--vg", str(vg), "-q", env=env)
    assert built.returncode == 0, built.stderr
    listed = run("kbx", "list", env=env)
    assert "visualgenome" in listed.stdout

    out = tmp_path / "run"
    train = run(
        "catmner", "train", "--dataset", "twitter2017", "--labels", "visualgenome", "--text-encoder", "tiny",
        "--image-encoder", "tiny", "--epochs", "1", "--max-train", "24", "--max-eval", "20", "--batch-size", "8",
        "--data-dir", str(shared_data), "--output", str(out), "--threads", "1", "--quiet", "--json", env=env,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    record = json.loads(train.stdout)
    # the model was trained with the words of the store's visualgenome build, and says so
    words = json.loads((out / "model" / "label_words.json").read_text())["words"]
    assert "dog" in words and "vehicle" in words
    assert record["label_words"]["source"] == "visualgenome"

    preds = tmp_path / "valid.conll"
    ev = run(
        "catmner", "evaluate", str(out / "model"), "--dataset", "twitter2017", "--split", "valid",
        "--data-dir", str(shared_data), "--predictions", str(preds), "--json", "--quiet", env=env,
    )  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    metrics = json.loads(ev.stdout)
    tweets, predicted = read_predictions(preds)
    assert len(tweets) == 723
    # the file an external scorer would read gives the numbers the command printed
    assert abs(score([t.entities for t in tweets], predicted)["f1"] - metrics["lenient"]["f1"]) < 1e-6

    pr = run(
        "catmner", "predict", str(out / "model"), "--text", "Obama visits Paris with the Lakers", env=env
    )
    assert pr.returncode == 0, pr.stderr
    entities = json.loads(pr.stdout)
    assert isinstance(entities, list)
    assert all({"text", "type", "start", "end", "score"} <= set(e) for e in entities)

    missing = run("catmner", "predict", str(tmp_path / "nope"), "--text", "hi", env=env)
    assert (
        missing.returncode == 1
        and missing.stderr.count("\n") == 1
        and missing.stderr.startswith("catmner: error: ")
    )
