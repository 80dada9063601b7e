"""GPU checks: run where CUDA is available (skipped on CPU-only machines such as CI).

The same tiny model gives the same logits on the CPU and on the GPU; training on the GPU writes a model that
the CPU loads and scores exactly as the GPU run reported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from catmner_model.batching import Example
from catmner_model.data import load_split
from catmner_model.evaluate import evaluate_model
from catmner_model.model import create_model
from catmner_model.training.config import TrainConfig
from catmner_model.training.loop import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
WORDS = ["person", "singer", "city", "country", "team", "company", "festival", "dog"]


def test_cuda_forward_matches_cpu():
    torch.manual_seed(0)
    model = create_model("tiny", WORDS, variant="cat", image_feature_dim=32).eval()
    with torch.no_grad():
        for g in [*model.gates_i2t, *model.gates_t2i]:
            g.proj.bias.fill_(0.5)  # refinement active
    tweets = load_split("twitter2017", "valid", DATA)[:16]
    gen = torch.Generator().manual_seed(0)
    ex = [Example(t, torch.randn(16, 32, generator=gen) if i % 2 else None) for i, t in enumerate(tweets)]
    batch = model.collator()(ex)
    with torch.no_grad():
        cpu = model(batch, output_attentions=True)
        model.cuda()
        gpu = model(batch.to("cuda"), output_attentions=True)
    assert torch.allclose(cpu.logits, gpu.logits.cpu(), atol=1e-4)
    assert torch.allclose(cpu.attentions, gpu.attentions.cpu(), atol=1e-5)


def test_cuda_training_then_cpu_evaluation(tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"labels": {"misc": WORDS}}), encoding="utf-8")
    cfg = TrainConfig(
        dataset="twitter2017", labels=str(labels), text_encoder="tiny", image_encoder="tiny", variant="cat",
        epochs=3, lr=2e-3, encoder_lr=2e-3, batch_size=16, max_train=400, max_eval=200, seed=3,
        data_dir=str(DATA), output=str(tmp_path / "run"), quiet=True,
    )  # fmt: skip
    record = train(cfg)
    assert record["hardware"]["cuda"]  # trained on the GPU
    reported = record["metrics"]["valid"]["lenient"]["f1"]
    on_cpu = evaluate_model(tmp_path / "run" / "model", "twitter2017", "valid", data_dir=DATA, max_tweets=200,
                            device="cpu")  # fmt: skip
    assert abs(on_cpu["lenient"]["f1"] - reported) < 0.5
