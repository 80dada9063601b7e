"""The CAT-MNER model: attention math, masks, variants, gradients, overfitting real tweets, save/load, MiniLM."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from catmner_model.attention import attention, cross_modal_gate, saliency
from catmner_model.batching import Example
from catmner_model.config import VARIANTS, CatMnerConfig, list_configs, load_config
from catmner_model.data import Tweet, load_split
from catmner_model.metrics import score
from catmner_model.model import CatMner, create_model
from catmner_model.model_io import FORMAT_VERSION, ModelFormatError
from catmner_model.predict import predict_examples

torch.set_num_threads(2)
DATA = Path(os.environ.get("CATMNER_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
LABEL_WORDS = ["person", "singer", "city", "country", "team", "company", "festival", "zebra", "saxophone"]
F_DIM = 24  # image feature width of the tiny config


@pytest.fixture(scope="module")
def tweets() -> list[Tweet]:
    return load_split("twitter2015", "train", DATA)[:12]


def tiny(variant: str = "cat", seed: int = 0, **overrides) -> CatMner:
    torch.manual_seed(seed)
    return create_model("tiny", LABEL_WORDS, variant=variant, **overrides)


def examples(tweets: list[Tweet], with_image=(0, 2), seed: int = 1) -> list[Example]:
    g = torch.Generator().manual_seed(seed)
    return [
        Example(t, torch.randn(16, F_DIM, generator=g) if i in with_image else None)
        for i, t in enumerate(tweets)
    ]


# ------------------------------------------------------------------------------------------ attention math
def test_gate_zero_refined_attention_equals_vanilla():
    torch.manual_seed(0)
    B, H, N, D, T = 2, 3, 7, 4, 4
    q, k, v = (torch.randn(B, H, N, D) for _ in range(3))
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[1, 2:4] = False
    sal = torch.rand(B, H, 1, N)
    vanilla = attention(q, k, v, mask)
    zero = attention(q, k, v, mask, gate=torch.zeros(B, H, N, N), saliency=sal)
    assert torch.equal(vanilla[0], zero[0]) and torch.equal(vanilla[1], zero[1])
    gate = cross_modal_gate(torch.rand(B, H, N) * 0.9, T, True, True)
    refined_ctx, refined_p = attention(q, k, v, mask, gate=gate, saliency=sal)
    assert not torch.allclose(refined_p, vanilla[1])
    # T2T and I2I blocks untouched by the refinement: same raw scores -> same ratios within those blocks
    assert torch.equal(gate[:, :, :T, :T], torch.zeros(B, H, T, T)) and (gate[:, :, :T, T:] > 0).all()
    assert torch.equal(
        cross_modal_gate(torch.ones(B, H, N), T, True, False)[:, :, T:, :T], torch.zeros(B, H, 3, T)
    )
    # masked keys get zero probability; rows are distributions
    assert refined_p[1, :, :, 2:4].abs().max() == 0
    assert torch.allclose(refined_p.sum(-1), torch.ones(B, H, N))
    # Eq. 4 by hand for one entry in the I2T block
    b, h, i, j = 0, 1, 1, 5
    raw = q[b, h] @ k[b, h].T
    g = gate[b, h, i]
    logits = ((1 - g) * raw[i] + g * sal[b, h, 0]) / D**0.5
    assert torch.allclose(refined_p[b, h, i], logits.softmax(-1), atol=1e-6)
    assert refined_p[b, h, i, j] > 0


def test_saliency_is_a_distribution_over_key_tokens():
    torch.manual_seed(0)
    B, H, N, C, D = 3, 2, 6, 5, 4
    q = torch.randn(B, H, N, D)
    k = torch.randn(H, C, D)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[0, 4:] = False
    s = saliency(q, k, mask)
    assert s.shape == (B, H, N)
    assert torch.allclose(s.sum(-1), torch.ones(B, H), atol=1e-6)
    assert (s[0, :, 4:] == 0).all() and (s >= 0).all()
    assert s.std() > 0  # not the constant 1/C of normalising over label words
    by_hand = ((q[1, 0] @ k[0].T) / D**0.5).softmax(dim=0).mean(dim=1)  # softmax over keys, mean over words
    assert torch.allclose(s[1, 0], by_hand, atol=1e-6)
    keys = saliency(q, k, mask, scale="keys")
    assert torch.allclose(keys.sum(-1), mask.sum(-1, keepdim=True).float().expand(B, H), atol=1e-5)
    assert torch.allclose(saliency(q, k, mask, scale=2.5), 2.5 * s)
    with pytest.raises(ValueError, match="saliency scale"):
        saliency(q, k, mask, scale="bogus")


# -------------------------------------------------------------------------------------------------- model
def test_shapes_masks_and_attention_maps(tweets):
    model = tiny().eval()
    collate = model.collator()
    batch = collate(examples(tweets[:4]))
    out = model(batch, labels=True, output_attentions=True)
    B, S = batch.span_start.shape
    T = batch.input_ids.shape[1]
    assert out.logits.shape == (B, S, 5) and out.loss.ndim == 0 and torch.isfinite(out.loss)
    L, H = len(model.layers), model.n_heads
    assert out.attentions.shape == (B, L, H, T, 16)
    # no-image examples (1, 3) attend only to the no-image token (visual slot 0)
    assert out.attentions[1, :, :, :, 1:].abs().max() == 0
    assert out.attentions[0, :, :, :, 1:].sum() > 0
    # padding invariance: each tweet alone gives the same logits as inside the padded batch
    for b in range(B):
        alone = collate([examples(tweets[:4])[b]])
        single = model(alone).logits[0]
        n = int(alone.span_mask.sum())
        assert torch.allclose(single[:n], out.logits[b, :n], atol=1e-5), b


def test_gate_zero_model_equals_mm_and_init_starts_vanilla(tweets):
    cat = tiny("cat").eval()
    mm = tiny("mm", seed=1).eval()
    missing, unexpected = mm.load_state_dict(cat.state_dict(), strict=False)
    # the refinement's own parameters: the gates and the learned saliency multipliers
    assert not missing and all(k.startswith(("gates_", "saliency_log_scale")) for k in unexpected)
    batch = cat.collator()(examples(tweets[:4]))
    assert torch.equal(cat(batch).logits, mm(batch).logits)  # gate init = 0 => exactly vanilla
    with torch.no_grad():
        for gate in [*cat.gates_i2t, *cat.gates_t2i]:
            gate.proj.bias.fill_(0.5)
    assert not torch.allclose(cat(batch).logits, mm(batch).logits)


def test_gradients_reach_gates_and_c_transformer(tweets):
    model = tiny("cat").train()
    batch = model.collator()(examples(tweets[:4]))
    model(batch, labels=True).loss.backward()
    for gates in (model.gates_i2t, model.gates_t2i):
        assert all(g.proj.weight.grad is not None and g.proj.weight.grad.abs().sum() > 0 for g in gates)
    # once the gates are open, the saliency carries gradient into the label-word (C-Transformer) path:
    # rows of the word-embedding matrix used only by label words receive gradient
    with torch.no_grad():
        for g in [*model.gates_i2t, *model.gates_t2i]:
            g.proj.bias.fill_(0.3)
    model.zero_grad()
    model(batch, labels=True).loss.backward()
    only_labels = sorted(
        set(model.label_ids[model.label_mask].tolist()) - set(batch.input_ids.flatten().tolist())
    )
    assert only_labels
    grad = model.encoder.embeddings.word_embeddings.weight.grad[only_labels]
    assert (grad.abs().sum(-1) > 0).all()
    assert model.visual.no_image.grad.abs().sum() > 0


def test_inference_label_key_cache_matches_and_follows_weights(tweets):
    model = tiny("cat", seed=3)
    with torch.no_grad():  # open the gates so the saliency (and so the label words) matter
        for g in [*model.gates_i2t, *model.gates_t2i]:
            g.proj.bias.fill_(0.5)
    model.eval()
    batch = model.collator()(examples(tweets[:6]))
    with torch.enable_grad():
        uncached = model(batch).logits.detach()  # grad mode: the C-Transformer runs inside the layers
    with torch.no_grad():
        cached = model(batch).logits
        assert model._label_key_cache is not None
        assert torch.allclose(cached, uncached, atol=1e-5)
        # a weight change (in place, like an optimizer step) invalidates the cache
        model.encoder.encoder.layer[0].intermediate.dense.weight.mul_(1.5)
        changed = model(batch).logits
    with torch.enable_grad():
        expected = model(batch).logits.detach()
    assert torch.allclose(changed, expected, atol=1e-5) and not torch.allclose(changed, cached, atol=1e-4)


def test_label_key_cache_follows_a_fused_optimizer_step(tweets):
    """The trainer's optimizer (fused AdamW on CPU) updates weights without bumping their version counters:
    the validation after a training epoch must still see the new label keys, not those of the last one."""
    from catmner_model.training.config import TrainConfig
    from catmner_model.training.optim import make_optimizer

    def fresh_keys() -> list[torch.Tensor]:  # the C-Transformer run now, bypassing the cache
        _, c, _ = model.embed(model.label_ids[:1, :1], True)
        return model._layer_label_keys(c)

    model = tiny("cat", seed=3)
    batch = model.collator()(examples(tweets[:6]))
    opt = make_optimizer(model, TrainConfig(lr=1e-2, encoder_lr=1e-2), torch.device("cpu"), fused=True)
    model.eval()
    with torch.no_grad():
        model(batch)  # fills the cache
        before = [k.clone() for k in model._label_keys()]
    versions = [p._version for p in model.encoder.parameters()]
    model.train()  # one training step, as an epoch does
    model(batch, labels=True).loss.backward()
    opt.step()
    assert [p._version for p in model.encoder.parameters()] == versions  # why the version key is not enough
    model.eval()
    with torch.no_grad():
        model(batch)
        cached, expected = model._label_keys(), fresh_keys()
    assert not torch.allclose(expected[0], before[0], atol=1e-4)  # the step moved the keys
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(cached, expected, strict=True))


@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_run(tweets, variant):
    model = tiny(variant).train()
    batch = model.collator()(examples(tweets[:3]))
    out = model(batch, labels=True, output_attentions=True)
    out.loss.backward()
    assert (model.gates_i2t is not None) == (variant in ("cat", "i2t"))
    assert (model.gates_t2i is not None) == (variant in ("cat", "t2i"))
    assert (model.visual is None) == (variant == "text")
    assert (out.attentions is None) == (variant == "text")
    if variant == "text":
        assert batch.image_features is None  # the text variant ignores images entirely


def test_label_words_required_only_for_refined_variants():
    with pytest.raises(ValueError, match="label words"):
        create_model("tiny", [], variant="cat")
    assert create_model("tiny", [], variant="mm").label_words == []


def test_empty_tweets_and_wrong_feature_width(tweets):
    model = tiny()
    empty = Tweet(imgid="e", tokens=[], tags=[], entities=[])
    batch = model.collator()([Example(empty), Example(empty)])
    out = model(batch, labels=True)
    assert out.loss.item() == 0.0 and model.decode(out, batch) == [[], []]
    bad = model.collator()([Example(tweets[0], torch.randn(16, F_DIM + 1))])
    with pytest.raises(ValueError, match="image features have shape"):
        model(bad)


def test_overfits_real_tweets_to_f1_1(tweets):
    chosen = [t for t in tweets if t.entities][:4]
    model = tiny("cat", dropout=0.0)
    ex = examples(chosen, with_image=(0,))
    batch = model.collator()(ex)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(150):
        loss = model(batch, labels=True).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    pred = predict_examples(model, ex, model.collator())
    result = score([t.entities for t in chosen], pred)
    assert result["f1"] == 100.0, (result, loss.item())
    assert all(0.5 < e.score <= 1.0 for p in pred for e in p)


def test_decode_greedy_non_overlapping(tweets):
    model = tiny().eval()
    batch = model.collator()(examples(tweets[:2]))
    out = model(batch)
    logits = torch.full_like(out.logits, -5.0)
    logits[..., 0] = 0.0  # all O ...
    start, end = batch.span_start[0].tolist(), batch.span_end[0].tolist()
    idx = {(s, e): i for i, (s, e) in enumerate(zip(start, end, strict=True))}
    logits[0, idx[(0, 1)], 1] = 3.0  # PER over words 0-1, p ~ 0.95
    logits[0, idx[(1, 2)], 2] = 5.0  # LOC over words 1-2, higher: wins, overlaps the PER span
    logits[0, idx[(3, 3)], 3] = 1.0  # ORG word 3
    ents = model.decode(replace(out, logits=logits), batch)
    assert [e.key for e in ents[0]] == [(1, 3, "LOC"), (3, 4, "ORG")] and ents[1] == []
    assert ents[0][0].score == pytest.approx(
        torch.tensor([0.0, -5, 5, -5, -5]).softmax(0)[2].item(), rel=1e-5
    )


# ------------------------------------------------------------------------------------------------- save/load
def test_save_load_identical_predictions_and_bad_dirs(tweets, tmp_path):
    model = tiny("cat", saliency_scale="keys")
    with torch.no_grad():
        for g in [*model.gates_i2t, *model.gates_t2i]:
            g.proj.weight.normal_(std=0.5)
    model.eval()
    ex = examples(tweets[:6])
    saved = model.save_pretrained(tmp_path / "m")
    assert {"config.json", "model.safetensors", "label_words.json", "tokenizer_config.json"} <= {
        p.name for p in saved.iterdir()
    }
    loaded = CatMner.from_pretrained(saved)
    assert loaded.cfg == model.cfg and loaded.label_words == model.label_words
    batch = model.collator()(ex)
    assert torch.equal(model(batch).logits, loaded(batch).logits)
    assert predict_examples(model, ex, model.collator()) == predict_examples(loaded, ex, loaded.collator())

    meta = json.loads((saved / "config.json").read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFormatError, match="format version"):
        CatMner.from_pretrained(saved)
    (saved / "config.json").write_text(json.dumps({"architectures": ["BertModel"]}))
    with pytest.raises(ModelFormatError, match="not a catmner model"):
        CatMner.from_pretrained(saved)
    with pytest.raises(ModelFormatError, match="no config.json"):
        CatMner.from_pretrained(tmp_path)
    other = tiny("cat").save_pretrained(tmp_path / "o")
    (other / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ModelFormatError, match="cannot read weights"):
        CatMner.from_pretrained(other)


def test_named_configs():
    assert {"tiny", "minilm"} <= set(list_configs())
    cfg = load_config("minilm", variant="text")
    assert cfg.text_encoder == "minilm" and cfg.variant == "text"
    with pytest.raises(ValueError, match="unknown config field"):
        load_config("tiny", bogus=1)
    with pytest.raises(ValueError, match="unknown variant"):
        CatMnerConfig(variant="nope")


# ---------------------------------------------------------------------------------------------- real MiniLM
def test_real_minilm_forward_matches_hf_and_runs_with_images(tweets):
    torch.manual_seed(0)
    model = create_model("minilm", LABEL_WORDS, variant="cat", image_feature_dim=F_DIM).eval()
    assert model.width == 384 and len(model.layers) == 6
    ex = examples(tweets[:3], with_image=(0,))
    batch = model.collator()(ex)
    out = model(batch, output_attentions=True)
    assert torch.isfinite(out.logits).all() and out.attentions.shape[:3] == (3, 6, 12)
    # our layer loop over text only reproduces the Hugging Face encoder exactly (pretrained weights)
    text = create_model("minilm", [], variant="text").eval()
    ours, _ = text.encode(batch)
    with torch.no_grad():
        ref = text.encoder(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()
        ).last_hidden_state
    m = batch.attention_mask
    assert torch.allclose(ours[m], ref[m], atol=1e-4)


def test_the_default_saliency_scale_is_learned_and_older_saved_models_keep_the_paper_scale(tmp_path):
    """The default changed to the validation winner; a model directory written before `saliency_scale` existed
    was trained with the paper's scale and must load with it (and with its weights: no learned multipliers)."""
    from catmner_model.config import CatMnerConfig, load_config
    from catmner_model.model import CatMner, create_model

    assert CatMnerConfig().saliency_scale == load_config("minilm").saliency_scale == "learned"
    assert create_model("tiny", ["person"], variant="cat").cfg.saliency_scale == "learned"
    torch.manual_seed(0)
    d = create_model("tiny", ["person", "city"], variant="cat", saliency_scale="paper").save_pretrained(
        tmp_path / "m"
    )
    meta = json.loads((d / "config.json").read_text())
    assert meta["config"]["saliency_scale"] == "paper"  # every save writes the field
    del meta["config"]["saliency_scale"]
    (d / "config.json").write_text(json.dumps(meta))
    loaded = CatMner.from_pretrained(d)
    assert loaded.cfg.saliency_scale == "paper" and loaded.saliency_log_scale is None
