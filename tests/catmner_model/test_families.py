"""The model registry (families.py): a toy family defined here goes through the real trainer, the saved-model
format, the loader and `Predictor` with no change to catmner_model; old directories load as CAT-MNER; an
unknown family is one clear error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from catmner_model.batching import LABELS, Collator, Example
from catmner_model.data import Entity, load_split
from catmner_model.families import (
    FAMILIES,
    ModelFamily,
    create_model,
    get_family,
    load_pretrained,
    register_family,
)
from catmner_model.model import CatMner
from catmner_model.model_io import ModelFormatError, save_model_dir
from catmner_model.predict import Predictor
from catmner_model.text_encoder import load_text_encoder, load_tokenizer
from catmner_model.training.config import TrainConfig, TrainError
from catmner_model.training.loop import train

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")


class ToyTagger(nn.Module):
    """A one-word-entity tagger: the text encoder's first word piece of each word -> Linear over LABELS."""

    def __init__(self, cfg, label_words=(), tokenizer=None, encoder=None, image_encoder_weights=True):
        super().__init__()
        if encoder is None:
            encoder, tokenizer = load_text_encoder(cfg.text_encoder, tokenizer)
        elif tokenizer is None:
            tokenizer = load_tokenizer(cfg.text_encoder)
        self.cfg, self.tokenizer, self.encoder = cfg, tokenizer, encoder
        self.label_words, self.label_words_meta = [], None
        self.head = nn.Linear(encoder.config.hidden_size, len(LABELS))

    def collator(self):
        return Collator(self.tokenizer, self.cfg)

    def parameter_groups(self):
        return {"encoder": list(self.encoder.parameters()), "new": list(self.head.parameters())}

    def save_pretrained(self, directory):
        return save_model_dir(self, directory)

    def forward(self, batch, labels=None):
        h = self.encoder(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()
        ).last_hidden_state
        words = h.gather(1, batch.word_index[..., None].expand(-1, -1, h.shape[-1]))
        logits = self.head(words)  # (B, W, 5)
        loss = None
        if labels:
            gold = torch.full(batch.word_mask.shape, -100, dtype=torch.long)
            for b, (tweet, n) in enumerate(zip(batch.tweets, batch.n_words, strict=True)):
                gold[b, :n] = 0
                for e in tweet.entities:
                    gold[b, e.start : min(e.end, n)] = LABELS.index(e.type)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), gold.flatten(), ignore_index=-100)
        return type("ToyOutput", (), {"loss": loss, "logits": logits})()

    def decode(self, out, batch):
        probs = out.logits.detach().softmax(-1)
        result = []
        for b, n in enumerate(batch.n_words):
            best = probs[b, :n].argmax(-1).tolist()
            result.append(
                [Entity(w, w + 1, LABELS[k], float(probs[b, w, k])) for w, k in enumerate(best) if k]
            )
        return result


@pytest.fixture()
def toy_family():
    family = register_family(ModelFamily("toy", "a test family", ToyTagger))
    yield family
    FAMILIES.pop("toy")


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    torch.set_num_threads(1)


def test_a_toy_family_trains_saves_loads_and_predicts(tmp_path, toy_family):
    tweets = [t for t in load_split("twitter2017", "train", DATA) if t.entities][:6]
    out = tmp_path / "run"
    config = TrainConfig(
        dataset="twitter2017",
        model="toy",
        variant="text",
        labels=None,
        text_encoder="tiny",
        epochs=1,
        batch_size=6,  # one optimizer step
        output=str(out),
        quiet=True,
        num_threads=1,
    )
    record = train(config, data={"train": tweets, "valid": tweets[:3], "test": tweets[:3]})
    assert record["epochs"][0]["steps"] == 1 and record["model_config"]["family"] == "toy"
    saved = json.loads((out / "model" / "config.json").read_text())
    assert saved["config"]["family"] == "toy"

    model = load_pretrained(out / "model")
    assert isinstance(model, ToyTagger)
    trained = create_model("tiny", family="toy", variant="text")  # fresh weights differ from the trained ones
    assert not torch.equal(trained.head.weight, model.head.weight)

    predictor = Predictor(out / "model", device="cpu")
    assert isinstance(predictor.model, ToyTagger)
    rows = predictor.predict([tweets[0].tokens])
    assert len(rows) == 1 and all(set(e) == {"text", "type", "start", "end", "score"} for e in rows[0])
    batch = model.collator()([Example(tweets[0])])
    direct = model.decode(model(batch), batch)
    assert [(e["start"], e["end"], e["type"]) for e in rows[0]] == [e.key for e in direct[0]]


def test_directories_without_a_family_load_as_catmner(tmp_path):
    d = create_model("tiny", ["person", "city"], variant="mm").save_pretrained(tmp_path / "m")
    meta = json.loads((d / "config.json").read_text())
    del meta["config"]["family"]  # as saved before families existed
    (d / "config.json").write_text(json.dumps(meta))
    assert isinstance(load_pretrained(d), CatMner)
    assert isinstance(CatMner.from_pretrained(d), CatMner)


def test_unknown_families_are_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown model family 'nope'"):
        get_family("nope")
    with pytest.raises(ValueError, match="unknown model family 'nope': choose one of catmner, umt"):
        create_model("tiny", family="nope")
    d = create_model("tiny", family="umt", variant="mm", visual="caption").save_pretrained(tmp_path / "u")
    with pytest.raises(ModelFormatError, match="a 'umt' model, not CAT-MNER"):
        CatMner.from_pretrained(d)
    meta = json.loads((d / "config.json").read_text())
    meta["config"]["family"] = "nope"
    (d / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match=r"config.json: model family 'nope' is not registered here"):
        load_pretrained(d)
    with pytest.raises(TrainError, match="unknown --model 'nope'"):
        train(TrainConfig(model="nope", labels=None, variant="mm"))
