"""Prediction: raw-tweet tokenisation against the real files, JSONL input, Predictor and evaluate_model
agreeing with the trainer's own evaluation, clear errors for bad input and foreign model directories."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from catmner_model.data import load_split
from catmner_model.predict import PredictError, Predictor, make_input, read_jsonl, tokenize
from catmner_model.training.config import TrainConfig
from catmner_model.training.loop import train

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
IMAGES = DATA / "tweet_images" / "twitter2015_images"


def test_tokenize_matches_benchmark_tokens_on_real_tweets():
    """Joining a real tweet's tokens with spaces and re-tokenising gives the same tokens for most tweets."""
    for dataset in ("twitter2015", "twitter2017"):
        tweets = load_split(dataset, "valid", DATA)
        same = sum(tokenize(" ".join(t.tokens)) == t.tokens for t in tweets)
        assert same / len(tweets) > 0.9, (dataset, same, len(tweets))
    assert tokenize("RT @nba: LeBron's #Cavs beat Boston 101-99 &amp; more... http://t.co/x1Y") == [
        "RT", "@nba", ":", "LeBron's", "#Cavs", "beat", "Boston", "101-99", "&amp", ";", "more", "...",
        "http://t.co/x1Y",
    ]  # fmt: skip


def test_inputs_and_jsonl_errors(tmp_path):
    assert make_input("Obama visits Paris").tokens == ["Obama", "visits", "Paris"]
    assert make_input(None, ["New", "York"]).tokens == ["New", "York"]
    for bad in ("", "   "):
        with pytest.raises(PredictError, match="empty tweet"):
            make_input(bad)
    with pytest.raises(PredictError, match="'text'"):
        make_input(None, None)
    with pytest.raises(PredictError, match="no whitespace"):
        make_input(None, ["New York"])
    f = tmp_path / "in.jsonl"
    f.write_text(
        '{"text": "Obama in Paris", "image": "img.jpg"}\n\n{"tokens": ["Hi", "Bob"]}\n', encoding="utf-8"
    )
    items = read_jsonl(f)
    assert [i.tokens for i in items] == [["Obama", "in", "Paris"], ["Hi", "Bob"]]
    assert items[0].image == str(tmp_path / "img.jpg") and items[1].image is None
    f.write_text('{"text": "ok"}\n{"text": ""}\n', encoding="utf-8")
    with pytest.raises(PredictError, match=r"in.jsonl:2: empty tweet"):
        read_jsonl(f)
    f.write_text('{"text": "ok"}\n{broken\n', encoding="utf-8")
    with pytest.raises(PredictError, match=r"in.jsonl:2: not JSON"):
        read_jsonl(f)
    with pytest.raises(PredictError, match="not found"):
        read_jsonl(tmp_path / "nope.jsonl")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CAT model trained 2 epochs on 12 real tweets (4 with images); validated on the first 30."""
    root = tmp_path_factory.mktemp("pred")
    old = os.environ.get("CATMNER_HOME")
    os.environ["CATMNER_HOME"] = str(root / "home")
    torch.set_num_threads(1)
    labels = root / "labels.json"
    labels.write_text(
        json.dumps({"person": ["person", "singer"], "location": ["city"], "organization": ["team"]})
    )
    images = {p.stem for p in IMAGES.glob("*.jpg")}
    tweets = load_split("twitter2015", "train", DATA)
    train_set = [t for t in tweets if t.imgid in images][:4] + tweets[:8]
    config = TrainConfig(
        labels=str(labels),
        text_encoder="tiny",
        image_encoder="tiny",
        epochs=2,
        lr=1e-3,
        batch_size=4,
        max_eval=30,
        data_dir=str(DATA),
        output=str(root / "run"),
        quiet=True,
        num_threads=1,
    )
    record = train(config, data={"train": train_set})
    yield root / "run" / "model", record
    if old is None:
        os.environ.pop("CATMNER_HOME", None)
    else:
        os.environ["CATMNER_HOME"] = old


def test_evaluate_model_agrees_with_training_evaluation(trained, tmp_path):
    from catmner_model.evaluate import evaluate_model, format_report
    from catmner_model.metrics import read_predictions

    model_dir, record = trained
    preds_file = tmp_path / "valid.conll"
    result = evaluate_model(
        model_dir, "twitter2015", "valid", data_dir=DATA, max_tweets=30, predictions=preds_file
    )
    assert result["n_tweets"] == 30
    for mode in ("lenient", "strict"):
        assert result[mode]["f1"] == pytest.approx(record["metrics"]["valid"][mode]["f1"])
        assert result[mode]["n_pred"] == record["metrics"]["valid"][mode]["n_pred"]
    tweets, preds = read_predictions(preds_file)
    assert len(tweets) == 30 and sum(len(p) for p in preds) == result["lenient"]["n_pred"]
    text = format_report(result)
    assert "lenient" in text and "strict" in text and "PER" in text


def test_predictor_batched_equals_one_at_a_time_and_uses_images(trained, tmp_path):
    model_dir, _ = trained
    predictor = Predictor(model_dir)
    assert predictor.uses_images
    tweets = load_split("twitter2015", "test", DATA)[:12]
    img = sorted(IMAGES.glob("*.jpg"))[0]
    f = tmp_path / "in.jsonl"
    rows = [{"tokens": t.tokens} for t in tweets] + [{"text": "Obama visits Paris today", "image": str(img)}]
    f.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    batched = predictor.predict_jsonl(f, batch_size=5)
    assert len(batched) == 13 and batched[-1]["text"] == "Obama visits Paris today"
    for t, row in zip(tweets, batched, strict=False):
        single = predictor.predict_tokens(t.tokens)
        assert [(e["start"], e["end"], e["type"]) for e in single] == [
            (e["start"], e["end"], e["type"]) for e in row["entities"]
        ]
        for e in single:
            assert e["text"] == " ".join(t.tokens[e["start"] : e["end"]]) and 0.0 < e["score"] <= 1.0
    # the image is read through the feature cache (computed once, then hit)
    predictor.predict_text("Obama visits Paris today", str(img))
    assert predictor.source().grid_cache().stats["hit"] >= 1
    with pytest.raises(PredictError, match="image not found"):
        predictor.predict_text("Obama", str(tmp_path / "none.jpg"))


def test_foreign_model_directories_fail_clearly(trained, tmp_path):
    from catmner_model.model_io import ModelFormatError

    model_dir, _ = trained
    with pytest.raises(PredictError, match="model directory not found"):
        Predictor(tmp_path / "absent")
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelFormatError, match="not a catmner model directory"):
        Predictor(other)
    newer = tmp_path / "newer"
    newer.mkdir()
    for f in model_dir.iterdir():
        (newer / f.name).write_bytes(f.read_bytes())
    meta = json.loads((newer / "config.json").read_text())
    meta["format_version"] = 99
    (newer / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="format version 99"):
        Predictor(newer)
