"""`catmner predict --input` line by line: a BOM, missing / non-image / unreadable / out-of-folder images are
warnings naming the line (that tweet predicted without its image, the rest as usual), `--strict` makes them an
error; words past max_length are counted in predict's JSON, evaluate's result and the training log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from catmner_model.cli import app
from catmner_model.data import load_split
from catmner_model.evaluate import evaluate_model, format_report
from catmner_model.predict import Predictor
from catmner_model.training.config import TrainConfig
from catmner_model.training.loop import train
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
IMAGES = DATA / "tweet_images" / "twitter2015_images"
MAX_LENGTH = 16  # tokens incl. [CLS]/[SEP]: many real tweets are longer
runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny CAT model (tiny image encoder, max_length 16) trained 1 epoch on 6 real tweets, 3 with images."""
    root = tmp_path_factory.mktemp("inputs")
    old = os.environ.get("CATMNER_HOME")
    os.environ["CATMNER_HOME"] = str(root / "home")
    torch.set_num_threads(1)
    labels = root / "labels.json"
    labels.write_text(json.dumps({"person": ["person", "singer"], "location": ["city"]}))
    images = {p.stem for p in IMAGES.glob("*.jpg")}
    tweets = load_split("twitter2015", "train", DATA)
    few = [t for t in tweets if t.imgid in images][:3] + [t for t in tweets if t.imgid not in images][:3]
    config = TrainConfig(labels=str(labels), text_encoder="tiny", image_encoder="tiny", epochs=1, batch_size=3,
                         max_eval=5, data_dir=str(DATA), output=str(root / "run"), quiet=True, num_threads=1,
                         model_overrides={"max_length": MAX_LENGTH})  # fmt: skip
    record = train(config, data={"train": few})
    yield root / "run", record
    if old is None:
        os.environ.pop("CATMNER_HOME", None)
    else:
        os.environ["CATMNER_HOME"] = old


def _write(path: Path, rows: list[dict], bom: bool = False) -> Path:
    path.write_text(("\ufeff" if bom else "") + "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_truncation_counted_in_train_log_and_evaluate(trained):
    run, record = trained
    log = json.loads((run / "log.json").read_text())
    assert log["truncated"] == record["truncated"]
    assert record["truncated"]["train"]["words"] > 0 and 0 < record["truncated"]["train"]["tweets"] <= 6
    result = evaluate_model(run / "model", "twitter2015", "test", data_dir=DATA, max_tweets=5)
    assert result["truncated"] == record["truncated"]["test"]  # the same first 5 test tweets
    assert "words never predicted" in format_report(result)


def test_bom_and_each_line_on_its_own(trained, tmp_path):
    run, _ = trained
    img = sorted(IMAGES.glob("*.jpg"))[0]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    allowed = tmp_path / "pictures"
    allowed.mkdir()
    inside = allowed / "in.jpg"
    inside.write_bytes(img.read_bytes())
    long_words = " ".join(f"w{i}" for i in range(40))
    rows = [
        {"text": "Obama in Paris", "image": str(inside)},  # 1: fine
        {"text": "Obama in Paris", "image": "pictures/missing.jpg"},  # 2: not found
        {"text": "Obama in Paris", "image": "/etc/passwd"},  # 3: not an image file name
        {"text": "Obama in Paris", "image": str(broken)},  # 4: unreadable
        {"text": "Obama in Paris", "image": str(img)},  # 5: outside --image-dir
        {"text": long_words},  # 6: past max_length
    ]
    f = _write(tmp_path / "in.jsonl", rows, bom=True)
    res = runner.invoke(
        app, ["predict", str(run / "model"), "--input", str(f), "--image-dir", str(allowed), "-q"]
    )
    assert res.exit_code == 0, res.output
    out = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(out) == 6 and out[0]["text"] == "Obama in Paris"
    assert [r["truncated_words"] for r in out[:5]] == [0] * 5 and out[5]["truncated_words"] > 0
    err = res.stderr.strip().splitlines()
    assert err[:4] == [
        f"warning: {f}:2: image '{allowed / 'missing.jpg'}' not found: predicted without an image",
        f"warning: {f}:3: image '/etc/passwd' is not an image file name (.jpg, .jpeg, .png, .gif, .webp, .bmp, "
        ".tif, .tiff): predicted without an image",
        f"warning: {f}:4: image '{broken}' is outside the image directory {allowed}: predicted without an image",
        f"warning: {f}:5: image '{img}' is outside the image directory {allowed}: predicted without an image",
    ]
    assert err[4] == (
        f"predict: 6 tweets, 4 predicted without their image or caption, 1 longer than the model's max_length "
        f"({out[5]['truncated_words']} words not predicted: truncated_words)"
    )
    assert len(err) == 5
    # without --image-dir any image file may be read: the broken one is then found unreadable
    res = runner.invoke(app, ["predict", str(run / "model"), "--input", str(f), "-q"])
    assert res.exit_code == 0 and f"warning: {f}:4: image '{broken}' is not a readable image" in res.stderr
    assert "predict: 6 tweets, 3 predicted without their image or caption" in res.stderr
    # a tweet predicted without its image gets what the same tweet without any image gets
    predictor = Predictor(run / "model")
    assert out[1]["entities"] == predictor.predict_text("Obama in Paris")

    strict = runner.invoke(app, ["predict", str(run / "model"), "--input", str(f), "--strict", "-q",
                                 "--image-dir", str(allowed)])  # fmt: skip
    assert strict.exit_code == 1 and strict.stdout == ""
    assert strict.stderr.strip().splitlines() == [
        f"error: {f}:2: image '{allowed / 'missing.jpg'}' not found (--strict; 4 such line(s))"
    ]
