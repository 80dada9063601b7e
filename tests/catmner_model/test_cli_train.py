"""`catmner train -> evaluate -> predict` end to end through the real CLI (typer's CliRunner), tiny configs,
a JSON label-word file, real tweets; known failures are one line on stderr and exit code 1."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from catmner_model.cli import app
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
runner = CliRunner()


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CATMNER_DEBUG", raising=False)
    monkeypatch.setenv("CATMNER_DATA", str(DATA))
    torch.set_num_threads(1)


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("catmner: error: "), result.stderr
    return lines[0]


def test_train_evaluate_predict_end_to_end(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(
        json.dumps({"labels": {"person": ["person", "singer"], "location": ["city", "country"]}})
    )
    out = tmp_path / "run"
    args = ["train", "--dataset", "twitter2015", "--labels", str(labels), "--text-encoder", "tiny"]
    args += [
        "--image-encoder",
        "tiny",
        "--epochs",
        "2",
        "--max-train",
        "12",
        "--max-eval",
        "10",
        "--lr",
        "1e-3",
    ]
    args += ["--batch-size", "4", "--data-dir", str(DATA), "--output", str(out), "--quiet", "--threads", "1"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["n_tweets"] == {"train": 12, "valid": 10, "test": 10}
    assert record["config"]["labels"] == str(labels) and record["variant"] == "cat"
    assert (out / "model" / "model.safetensors").exists() and (out / "run.json").exists()
    assert record["image_stats"]["tweets"] == 32

    # rerunning the finished command resumes nothing and reports the same metrics
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"test F1 {record['metrics']['test']['lenient']['f1']:.2f}" in again.stdout

    preds = tmp_path / "test.conll"
    ev = runner.invoke(
        app,
        [
            "evaluate",
            str(out / "model"),
            "--dataset",
            "twitter2015",
            "--split",
            "test",
            "--data-dir",
            str(DATA),
        ]
        + ["--max-tweets", "10", "--predictions", str(preds), "--json", "--quiet"],
    )
    assert ev.exit_code == 0, ev.output
    scores = json.loads(ev.stdout)
    assert scores["lenient"]["f1"] == pytest.approx(record["metrics"]["test"]["lenient"]["f1"])
    assert scores["strict"]["n_gold"] == record["metrics"]["test"]["strict"]["n_gold"]
    assert preds.read_text().startswith("IMGID:")
    table = runner.invoke(
        app, ["evaluate", str(out / "model"), "--split", "valid", "--max-tweets", "5", "--quiet"]
    )
    assert table.exit_code == 0 and "lenient" in table.stdout

    one = runner.invoke(
        app, ["predict", str(out / "model"), "--text", "Barack Obama visits Paris with the NBA"]
    )
    assert one.exit_code == 0, one.output
    ents = json.loads(one.stdout)
    assert isinstance(ents, list)
    for e in ents:
        assert set(e) == {"text", "type", "start", "end", "score"} and e["type"] in {
            "PER",
            "LOC",
            "ORG",
            "MISC",
        }

    img = sorted((DATA / "tweet_images" / "twitter2015_images").glob("*.jpg"))[0]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text(
        json.dumps({"text": "Obama in Paris", "image": str(img)})
        + "\n"
        + json.dumps({"tokens": ["Hi", "Bob"]})
        + "\n"
    )
    many = runner.invoke(app, ["predict", str(out / "model"), "--input", str(jsonl), "--quiet"])
    assert many.exit_code == 0, many.output
    rows = [json.loads(line) for line in many.stdout.splitlines()]
    assert [r["tokens"] for r in rows] == [["Obama", "in", "Paris"], ["Hi", "Bob"]]

    # bad input: one line, exit 1
    assert "empty tweet" in one_error_line(runner.invoke(app, ["predict", str(out / "model"), "--text", " "]))
    line = one_error_line(runner.invoke(app, ["predict", str(tmp_path), "--text", "hi"]))
    assert "not a catmner model directory" in line
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n[1, 2]\n')
    assert "bad.jsonl:2" in one_error_line(
        runner.invoke(app, ["predict", str(out / "model"), "--input", str(bad)])
    )
    other = [a if a != str(out) else str(tmp_path / "run2") for a in args]
    line = one_error_line(
        runner.invoke(app, [*other[: other.index("--labels") + 1], str(tmp_path / "none.json")])
    )
    assert "none.json" in line
    empty = tmp_path / "empty.json"
    empty.write_text("{}")
    line = one_error_line(runner.invoke(app, [*other[:4], str(empty), *other[5:]]))
    assert "is empty" in line
    changed = [a if a != "1e-3" else "2e-3" for a in args]
    assert "different config" in one_error_line(runner.invoke(app, changed))


def test_one_error_handler_and_its_debug_switches(tmp_path, monkeypatch):
    """A known error is one line and exit 1; `catmner --debug`, the command's --debug and CATMNER_DEBUG=1 each
    let it propagate with its traceback, and one call's switch does not leak into the next."""
    from catmner_model.errors import CatmnerError

    args = ["evaluate", str(tmp_path / "nope"), "--dataset", "twitter2017"]
    assert "nope" in one_error_line(runner.invoke(app, args))
    for argv, env in ((["--debug", *args], None), ([*args, "--debug"], None), (args, "1")):
        if env is not None:
            monkeypatch.setenv("CATMNER_DEBUG", env)
        result = runner.invoke(app, argv)
        assert isinstance(result.exception, CatmnerError), (argv, result.output)
        monkeypatch.delenv("CATMNER_DEBUG", raising=False)
    assert "nope" in one_error_line(runner.invoke(app, args))
    data = one_error_line(runner.invoke(app, ["data", "stats", "twitter2017", "--data-dir", str(tmp_path)]))
    assert "train.txt" in data  # the data commands go through the same handler


def test_train_patience_stops_early_and_says_so(tmp_path):
    """--patience 1 at a learning rate too small to change a prediction: validation F1 stays where epoch 1 put
    it, so the run stops after epoch 2 of 6, says so, and records it. Left out, the patience is 2 (stopped after
    epoch 3); --patience 0 trains every epoch; a negative one is refused by the parser."""
    out = tmp_path / "run"
    args = ["train", "--dataset", "twitter2015", "--variant", "text", "--text-encoder", "tiny"]
    args += ["--epochs", "6", "--max-train", "8", "--max-eval", "6", "--lr", "1e-9", "--encoder-lr", "1e-9"]
    args += ["--batch-size", "4", "--data-dir", str(DATA), "--output", str(out), "--quiet", "--threads", "1"]
    result = runner.invoke(app, [*args, "--patience", "1"])
    assert result.exit_code == 0, result.output
    assert "stopped early: no validation gain in 1 validation (after epoch 2)" in result.stdout
    record = json.loads((out / "run.json").read_text())
    assert record["stopped_epoch"] == 2 and record["best_epoch"] == 1 and len(record["epochs"]) == 2
    assert record["config"]["patience"] == 1
    default = [str(tmp_path / "default") if a == str(out) else a for a in args]
    assert runner.invoke(app, default).exit_code == 0
    record = json.loads((tmp_path / "default" / "run.json").read_text())
    assert record["config"]["patience"] == 2 and record["stopped_epoch"] == 3 and len(record["epochs"]) == 3
    every = [str(tmp_path / "every") if a == str(out) else a for a in args]
    assert runner.invoke(app, [*every, "--patience", "0"]).exit_code == 0
    record = json.loads((tmp_path / "every" / "run.json").read_text())
    assert (
        record["config"]["patience"] is None
        and len(record["epochs"]) == 6
        and not record.get("stopped_epoch")
    )
    other = [str(tmp_path / "other") if a == str(out) else a for a in args]
    refused = runner.invoke(app, [*other, "--patience", "-1"])
    assert refused.exit_code == 2 and "--patience" in refused.output
