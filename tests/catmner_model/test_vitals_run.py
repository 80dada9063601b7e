"""The vital signs in a training run's log and record, and `catmner inspect` on a saved model.

A tiny random-init caption model trained 2 epochs on real Twitter-2015 tweets (captions from the shared data);
CATMNER_HOME points at tmp_path.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from catmner_model.cli import app
from catmner_model.data import load_split
from catmner_model.training.config import TrainConfig
from catmner_model.training.loop import train
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
WORDS = {"labels": {"person": ["person", "player"], "location": ["city"], "organization": ["team"]}}


def _tweets_with_entities(n: int) -> list:
    """The first n Twitter-2015 training tweets that have an entity."""
    return [t for t in load_split("twitter2015", "train", DATA) if t.entities][:n]


def _train_tiny_caption_model(tmp: Path, data: dict, **config) -> dict:
    """Train a tiny random-init CAT caption model (label words WORDS, the vital signs on 4 tweets) into tmp/run,
    with CATMNER_HOME at tmp/home; `config` holds the rest of its TrainConfig. Returns the run record."""
    labels = tmp / "labels.json"
    labels.write_text(json.dumps(WORDS))
    train_config = TrainConfig(
        dataset="twitter2015",
        labels=str(labels),
        text_encoder="tiny",
        variant="cat",
        visual="caption",
        data_dir=str(DATA),
        vitals_tweets=4,
        output=str(tmp / "run"),
        quiet=True,
        **config,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CATMNER_HOME", str(tmp / "home"))
        return train(train_config, data=data)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("vitals")
    valid = load_split("twitter2015", "valid", DATA)[:5]
    torch.set_num_threads(1)
    _train_tiny_caption_model(
        tmp,
        {"train": _tweets_with_entities(6), "valid": valid, "test": valid},
        epochs=3,
        valid_every=2,  # epochs 2 and 3 are validated
        lr=5e-3,
        batch_size=3,
        seed=3,
        model_overrides={"gate_init_std": 0.5},
    )
    return tmp / "run"


def test_every_validation_records_the_vital_signs(run_dir):
    record = json.loads((run_dir / "run.json").read_text())
    epochs = record["epochs"]
    assert epochs[0]["vitals"] is None  # not validated (valid_every=2)
    for entry in epochs[1:]:
        v = entry["vitals"]
        assert v["tweets"] == 4 and len(v["layers"]) == 2
        assert v["mean"]["qk_i2t"] > 0 and 0 < v["mean"]["caption_first_share"] < 1
        assert v["layers"][0]["gate_i2t"] is not None and v["saliency_multiplier"]
    best = next(e for e in epochs if e["epoch"] == record["best_epoch"])
    assert record["vitals"] == best["vitals"]
    assert record["model_config"]["caption_positions"] == "pair"


def test_inspect_prints_the_vital_signs_of_a_saved_model(run_dir, tmp_path):
    runner = CliRunner()
    args = [
        "inspect",
        str(run_dir / "model"),
        "--dataset",
        "twitter2015",
        "--split",
        "valid",
        "--data-dir",
        str(DATA),
        "--max-tweets",
        "4",
    ]
    got = runner.invoke(app, args)
    assert got.exit_code == 0, got.output
    result = json.loads(got.stdout)
    assert result["tweets"] == 4 and result["captions"] == 4 and result["split"] == "valid"
    assert result["config"]["caption_positions"] == "pair" and result["config"]["softmax"] == "joint"
    # the kept model on the same first 4 validation tweets: what the run record holds
    recorded = json.loads((run_dir / "run.json").read_text())["vitals"]["layers"]
    for mine, theirs in zip(result["layers"], recorded, strict=True):
        assert mine.keys() == theirs.keys()
        for name, value in mine.items():
            assert (value is None and theirs[name] is None) or value == pytest.approx(theirs[name], rel=1e-4)
    out = tmp_path / "v.json"
    got = runner.invoke(app, [*args, "--out", str(out)])
    assert got.exit_code == 0 and json.loads(out.read_text())["layers"] == result["layers"]
    table = runner.invoke(app, [*args, "--table"])
    assert table.exit_code == 0 and "qk_i2t" in table.stdout and "mean" in table.stdout


def test_inspect_refuses_a_text_model_in_one_line(tmp_path):
    from catmner_model.model import create_model

    create_model("tiny", variant="text").save_pretrained(tmp_path / "text")
    got = CliRunner().invoke(
        app, ["inspect", str(tmp_path / "text"), "--data-dir", str(DATA), "-d", "twitter2015"]
    )
    assert got.exit_code == 1
    assert got.output.strip().splitlines() == [
        f"catmner: error: {tmp_path / 'text'}: the text variant has no visual tokens, so no vital signs"
    ]


def test_a_run_can_start_its_saliency_at_qk(tmp_path):
    tweets = _tweets_with_entities(4)
    record = _train_tiny_caption_model(
        tmp_path,
        {"train": tweets, "valid": tweets, "test": tweets},
        epochs=1,
        lr=1e-9,  # the scale stays where it started
        encoder_lr=1e-9,
        batch_size=4,
        saliency_from_qk=True,
    )
    vitals = record["vitals"]
    for layer, m in zip(vitals["layers"], vitals["saliency_multiplier"], strict=True):
        assert abs(m - 1) > 0.1 and layer["s_i2t"] == pytest.approx(layer["qk_i2t"], rel=1e-2)
