"""The speed paths: precision (fp32 | bf16 | auto), fused AdamW, word-piece buckets, packed rows.

fp32 stays the exact path (equal logits); bf16 is autocast, enabled by `auto` only where the hardware has native
bf16; a bf16 Predictor casts its Linear weights once and gives exactly the logits of autocast over fp32 weights;
packing the real rows (no work on padding) gives the same logits and, without dropout, the same loss.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from catmner_model import precision as prec
from catmner_model.batching import Example
from catmner_model.data import Tweet, load_split
from catmner_model.model import create_model
from catmner_model.predict import PredictError, Predictor
from catmner_model.training.config import TrainConfig, TrainError
from catmner_model.training.loop import train
from catmner_model.training.optim import make_optimizer

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _examples() -> list[Example]:
    return [
        Example(Tweet("a", ["Obama", "visits", "Paris", "today"], ["O"] * 4, []), caption="a man in a city"),
        Example(Tweet("b", ["RT", "@user", ":", "Hi", "New", "York"], ["O"] * 6, [])),
    ]


def test_resolve_precision_and_native_bf16(monkeypatch):
    assert prec.resolve_precision("fp32") == "fp32" and prec.resolve_precision("bf16") == "bf16"
    with pytest.raises(ValueError, match="precision"):
        prec.resolve_precision("fp16")
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert not prec.native_bf16("cpu") and prec.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert prec.native_bf16("cpu") == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    # fp32 is no context at all; bf16 is autocast
    with prec.autocast("cpu", "fp32"):
        assert not torch.is_autocast_enabled("cpu")
    with prec.autocast("cpu", "bf16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


def test_bf16_predictor_equals_autocast_and_fp32_stays_exact(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny", ["person", "city", "team"], variant="cat", visual="caption").eval()
    model.save_pretrained(tmp_path / "m")
    p32 = Predictor(tmp_path / "m", device="cpu")
    p16 = Predictor(tmp_path / "m", device="cpu", precision="bf16")
    assert p16.model.span_head.out.weight.dtype == torch.bfloat16
    batch = p32.collate(_examples())
    with torch.inference_mode():
        exact = p32.model(batch).logits
        with prec.autocast("cpu", "bf16"):
            auto = p32.model(batch).logits  # autocast over fp32 weights (fills the label-key cache in bf16)
            cast = p16.model(batch).logits  # weights cast once
        again = p32.model(batch).logits  # fp32 again: the bf16 label keys are not reused
    assert cast.dtype == torch.bfloat16 and torch.equal(auto, cast)
    assert again.dtype == torch.float32 and torch.equal(exact, again)
    assert (exact - auto.float()).abs().max() < 0.1
    assert p16.predict_tokens(["Obama", "visits", "Paris"], caption="a man") is not None
    with pytest.raises(PredictError, match="precision"):
        Predictor(tmp_path / "m", device="cpu", precision="half")


def test_fused_adamw_is_the_same_update():
    torch.manual_seed(0)
    a = create_model("tiny", ["person", "city"])
    b = create_model("tiny", ["person", "city"])
    b.load_state_dict(a.state_dict())
    cfg = TrainConfig(lr=1e-3, encoder_lr=1e-3)
    opt_a = make_optimizer(a, cfg, torch.device("cpu"))  # fused on CPU
    opt_b = make_optimizer(b, cfg, torch.device("cpu"), fused=False)
    assert opt_a.defaults["fused"] and not opt_b.defaults["fused"]
    batch = a.collator()(_examples())
    for model, opt in ((a, opt_a), (b, opt_b)):
        model.train()
        torch.manual_seed(1)  # same dropout masks
        for _ in range(2):
            model(batch, labels=True).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6), name


def test_train_in_bf16_and_bad_precision(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"labels": {"person": ["person", "singer"], "location": ["city"]}}))
    tweets = [t for t in load_split("twitter2015", "train", DATA) if t.entities][:6]
    base = dict(
        dataset="twitter2015",
        labels=str(labels),
        text_encoder="tiny",
        image_encoder="none",
        visual="caption",
        epochs=1,
        batch_size=3,
        quiet=True,
        num_threads=1,
    )
    rec = train(
        TrainConfig(**base, output=str(tmp_path / "run"), precision="bf16"),
        data={"train": tweets, "valid": tweets, "test": tweets},
    )
    assert (
        rec["config"]["precision"] == "bf16" and rec["precision"] == "bf16" and rec["epochs"][0]["loss"] > 0
    )
    with pytest.raises(TrainError, match="precision"):
        train(TrainConfig(**base, output=str(tmp_path / "bad"), precision="fp16"))


def test_epoch_buckets_sort_by_word_pieces():
    from catmner_model.training.inputs import example_lengths

    model = create_model("tiny", ["person"], variant="text")
    url = "http://t.co/AbCdEfGhIj"
    examples = [
        Example(Tweet("a", ["Hi", url], ["O"] * 2, [])),
        Example(Tweet("b", ["Hi", "there", "you"], ["O"] * 3, [])),
    ]
    collate = model.collator()
    lengths = example_lengths(examples, collate)
    assert lengths == [int(collate([ex]).attention_mask.sum()) for ex in examples]
    assert lengths[0] == 2 + 1 + model.cfg.max_url_pieces  # [CLS] Hi <2 URL pieces> [SEP]


@pytest.mark.parametrize("visual", ["caption", "grid"])
def test_packed_rows_give_the_padded_result(visual):
    from catmner_model.model import CatMner

    tweets = load_split("twitter2015", "train", DATA)[:10]
    torch.manual_seed(0)
    model = create_model(
        "tiny", ["person", "city", "team"], visual=visual, image_feature_dim=8, gate_init_std=0.5
    )
    examples = [
        Example(
            t,
            caption=("a man in a big city " * (i % 3 + 1)) if i % 2 else None,
            image_features=torch.randn(16, 8) if i % 3 == 0 else None,
        )
        for i, t in enumerate(tweets)
    ]
    batch = model.collator()(examples)
    model.attn_dropout = 0.0  # same dropout masks cannot be drawn for fewer rows: compare without dropout
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    results = {}
    for name, share in (("padded", 2.0), ("packed", 0.0)):
        model.PACK_MIN_PADDING = share
        if name == "packed":
            key_mask = torch.cat([batch.attention_mask, batch.attention_mask.new_ones(len(batch), 1)], 1)
            assert model._real_rows(key_mask, batch.attention_mask) is not None
        model.eval()
        with torch.no_grad():
            logits = model(batch).logits
        model.train()
        model.zero_grad()
        loss = model(batch, labels=True).loss
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results[name] = (logits[batch.span_mask], loss.detach(), grads)
    (la, lossa, ga), (lb, lossb, gb) = results["padded"], results["packed"]
    assert torch.equal(la, lb)
    assert torch.allclose(lossa, lossb, atol=1e-7) and torch.allclose(ga, gb, atol=1e-6)
    del model.PACK_MIN_PADDING
    assert CatMner.PACK_MIN_PADDING == 0.05
