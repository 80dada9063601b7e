"""The visual-source seam: a model config lists registered sources (checked once, older string forms load
unchanged), and a new source is one class plus one registry line, through training, saving, loading and
prediction (the toy source below, built through the registry end to end)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from catmner_model.components import VisualEmbedding
from catmner_model.config import CatMnerConfig, config_from_dict
from catmner_model.data import load_split
from catmner_model.model_io import ModelFormatError
from catmner_model.predict import load_model
from catmner_model.training.config import TrainConfig, TrainError
from catmner_model.training.loop import train
from catmner_model.visual_base import VisualSourceKind
from catmner_model.visual_sources import VISUAL_SOURCES, parse_visual, visual_name

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")


def test_parse_visual_reads_the_old_strings_and_lists_in_registry_order():
    assert parse_visual("grid+caption") == ("grid", "caption") == parse_visual(["caption", "grid"])
    assert parse_visual("none") == () == parse_visual("") == parse_visual([])
    assert visual_name(("grid", "caption")) == "grid+caption" and visual_name(()) == "none"
    with pytest.raises(ValueError, match="unknown visual source 'pixels'"):
        parse_visual("grid+pixels")
    with pytest.raises(ValueError, match="listed twice"):
        parse_visual(["grid", "grid"])


def test_old_configs_load_unchanged():
    assert config_from_dict({"visual": "grid+caption", "text_encoder": "tiny"}).visual == ("grid", "caption")
    assert config_from_dict({"visual": "caption"}).uses_caption
    # a text model saved as variant text with the old default "grid": no visual source
    old_text = config_from_dict({"variant": "text", "visual": "grid"})
    assert old_text.visual == () and not old_text.uses_image and old_text.visual_source == "none"
    assert config_from_dict({"variant": "text", "visual": "none"}).visual == ()
    with pytest.raises(ValueError, match="visual source 'none'"):
        CatMnerConfig(variant="mm", visual=())
    with pytest.raises(ValueError, match="image_feature_dim"):
        CatMnerConfig(visual=("grid",), image_feature_dim=0)  # each source checks its own fields, once


# ------------------------------------------------------------------------------------------- a toy source
class ToySource(VisualSourceKind):
    """Two tokens per tweet from its length and its first letters: a tensor of fixed shape (2, 3), so the
    base class collates it and `VisualEmbedding` embeds it."""

    name = "toy"

    def setup(self, src: Any, cfg: Any, options: dict[str, Any]) -> None:
        src.state["toy"] = {"looked_up": 0}

    def find(self, src: Any, tweet: Any, image: Path | None, given: Any) -> torch.Tensor | None:
        src.state["toy"]["looked_up"] += 1
        if given is not None:  # prediction may pass it per tweet
            return torch.as_tensor(given, dtype=torch.float32)
        if len(tweet.tokens) % 5 == 0:
            return None  # some tweets have none: the no-input token
        first = [ord(w[0]) / 100.0 for w in tweet.tokens[:3]] + [0.0] * 3
        return torch.tensor([[len(tweet.tokens) / 10.0, 1.0, 0.0], first[:3]])

    def embedding(self, model: Any, cfg: Any, width: int, eps: float, dropout: float) -> torch.nn.Module:
        return VisualEmbedding(3, 2, width, eps, dropout)


@pytest.fixture
def toy_registered(monkeypatch):
    monkeypatch.setitem(VISUAL_SOURCES, "toy", ToySource)  # the one registry line


def test_a_toy_source_through_the_registry_end_to_end(toy_registered, tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    tweets = load_split("twitter2017", "valid", DATA)[:6]
    config = TrainConfig(
        dataset="twitter2017",
        labels=None,
        text_encoder="tiny",
        variant="mm",
        visual="toy",
        epochs=1,
        batch_size=6,  # one step
        data_dir=str(DATA),
        output=str(tmp_path / "run"),
        quiet=True,
        num_threads=1,
    )
    rec = train(config, data={"train": tweets, "valid": tweets, "test": tweets})
    model_dir = Path(rec["model_dir"])
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["config"]["visual"] == ["toy"]

    predictor = load_model(model_dir)
    model = predictor.model
    assert model.toy is not None and model.visual is None and model.caption is None
    weights = {k for k in model.state_dict() if k.startswith("toy.")}
    assert {"toy.proj.weight", "toy.position", "toy.no_image"} <= weights
    # the source's tokens reach the model: with one input the text states differ from with none
    src = predictor.source()
    with_toy = src.example(tweets[0], visual={"toy": [[0.5, 1.0, 0.0], [0.7, 0.8, 0.9]]})
    five = dataclasses.replace(tweets[0], tokens=["a", "b", "c", "d", "e"], entities=[])
    without = src.example(five)  # the lookup finds nothing for it
    assert src.state["toy"]["looked_up"] == 2
    collate = model.collator()
    batch = collate([with_toy, without])
    features, mask = batch.visual["toy"]
    assert features.shape == (2, 2, 3) and mask.tolist() == [True, False]
    with torch.inference_mode():
        text = model.encode(batch)[0]
    assert not torch.allclose(text[0], text[1])
    out = predictor.predict(["Messi scores for Barcelona", ["Obama", "in", "Paris"]])
    assert len(out) == 2 and all(isinstance(x, list) for x in out)
    # where the source is not registered, the model directory is one clear error naming its config
    monkeypatch.delitem(VISUAL_SOURCES, "toy")
    with pytest.raises(
        ModelFormatError, match=r"config.json: invalid model config \(unknown visual source 'toy'"
    ):
        load_model(model_dir)


def test_an_unregistered_source_is_one_clear_error(tmp_path):
    config = TrainConfig(dataset="twitter2017", text_encoder="tiny", variant="mm", visual="toy", labels=None)
    from catmner_model.training.config import check_config

    with pytest.raises(TrainError, match="--visual 'toy': choose from grid, caption"):
        check_config(config)
