"""The refinement over other encoders: tiny random-initialised BERT, RoBERTa, MPNet and ModernBERT (nothing
downloads), through our layer loop and through the interception of the encoder's own attention calls."""

from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path

import pytest
import torch
from catmner_model import mpnet
from catmner_model.batching import Example
from catmner_model.config import load_config
from catmner_model.data import load_split
from catmner_model.layouts import layout_of
from catmner_model.model import CatMner
from catmner_model.text_encoder import load_text_encoder, load_tokenizer
from transformers import AutoModel, BertConfig, ModernBertConfig, MPNetConfig, RobertaConfig

torch.set_num_threads(1)
DATA = Path(os.environ.get("CATMNER_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
WORDS = ["person", "singer", "city", "country", "team", "company", "festival"]
OTHER_WORDS = ["zebra", "saxophone", "volcano", "umbrella"]
F_DIM = 24


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny")


def hf_config(arch: str, tok):
    common = dict(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64
    )
    if arch == "bert":
        return BertConfig(max_position_embeddings=130, **common)
    if arch == "roberta":
        return RobertaConfig(max_position_embeddings=130, pad_token_id=tok.pad_token_id, **common)
    if arch == "mpnet":
        return MPNetConfig(max_position_embeddings=130, **common)
    cls, sep = tok.cls_token_id, tok.sep_token_id
    ids = dict(
        cls_token_id=cls, sep_token_id=sep, bos_token_id=cls, eos_token_id=sep, pad_token_id=tok.pad_token_id
    )
    # window of 8 tokens in layers 1 and 2 (layer 0 global): the windows matter on tweets
    return ModernBertConfig(max_position_embeddings=130, local_attention=8, **ids, **common)


# every (architecture, path) that works, and the ones that must be refused
PATHS = [
    ("bert", "loop"),
    ("bert", "intercept"),
    ("roberta", "loop"),
    ("roberta", "intercept"),
    ("mpnet", "loop"),
    ("modernbert", "intercept"),
]


@pytest.fixture(scope="module")
def reference(tok):
    """One random-initialised, unmodified Hugging Face encoder per architecture (eval mode)."""
    out = {}
    for arch in ("bert", "roberta", "mpnet", "modernbert"):
        torch.manual_seed(0)
        out[arch] = AutoModel.from_config(hf_config(arch, tok)).eval()
    return out


@pytest.fixture(scope="module")
def tweets():
    return load_split("twitter2015", "train", DATA)[:6]


def examples(tweets, with_image=(0, 2)):
    g = torch.Generator().manual_seed(1)
    return [
        Example(t, torch.randn(16, F_DIM, generator=g) if i in with_image else None)
        for i, t in enumerate(tweets)
    ]


def build(reference, tok, arch, path, variant="cat", words=WORDS, seed=0, **overrides):
    torch.manual_seed(seed)
    cfg = load_config("tiny", variant=variant, r_transformer=path, **overrides)
    return CatMner(
        cfg, words if variant != "text" else [], tokenizer=tok, encoder=copy.deepcopy(reference[arch])
    )


def open_gates(model, std=0.5):
    with torch.no_grad():
        for g in [*(model.gates_i2t or []), *(model.gates_t2i or [])]:
            g.proj.weight.normal_(std=std)
            g.proj.bias.fill_(0.2)


# ---------------------------------------------------------------------------------------- (a) text alone
@pytest.mark.parametrize(("arch", "path"), PATHS)
def test_text_alone_equals_the_unmodified_encoder(reference, tok, tweets, arch, path):
    model = build(reference, tok, arch, path, variant="text").eval()
    assert model._intercept == (path == "intercept")
    batch = model.collator()(examples(tweets))
    with torch.no_grad():
        ours, _ = model.encode(batch)
        ref = reference[arch](
            input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()
        ).last_hidden_state
    m = batch.attention_mask
    assert torch.allclose(ours[m], ref[m], atol=1e-5), (ours[m] - ref[m]).abs().max()
    if path == "intercept":  # outside our forward the encoder still computes exactly what it did
        with torch.no_grad():
            alone = model.encoder(input_ids=batch.input_ids, attention_mask=batch.attention_mask.long())
        assert torch.allclose(alone.last_hidden_state[m], ref[m], atol=1e-5)


@pytest.mark.parametrize(("arch", "path"), PATHS)
def test_zero_gates_equal_mm_and_padding_invariance(reference, tok, tweets, arch, path):
    cat = build(reference, tok, arch, path, "cat").eval()
    mm = build(reference, tok, arch, path, "mm", seed=1).eval()
    missing, unexpected = mm.load_state_dict(cat.state_dict(), strict=False)
    # the refinement's own parameters: the gates and the learned saliency multipliers
    assert not missing and all(k.startswith(("gates_", "saliency_log_scale")) for k in unexpected)
    ex = examples(tweets)
    batch = cat.collator()(ex)
    with torch.no_grad():
        assert torch.allclose(cat(batch).logits, mm(batch).logits, atol=1e-6)  # g = 0: exactly vanilla
        open_gates(cat)
        out = cat(batch).logits
        assert not torch.allclose(out, mm(batch).logits, atol=1e-4)
        for b in (0, 1):  # each tweet alone = inside the padded batch (positions, windows, masks)
            alone = cat.collator()([ex[b]])
            n = int(alone.span_mask.sum())
            assert torch.allclose(cat(alone).logits[0, :n], out[b, :n], atol=1e-5), (arch, b)


def test_refused_paths_and_layouts(reference, tok):
    with pytest.raises(ValueError, match="cannot be intercepted"):
        build(reference, tok, "mpnet", "intercept")
    with pytest.raises(ValueError, match="cannot run in our layer loop"):
        build(reference, tok, "modernbert", "loop")
    with pytest.raises(ValueError, match="r_transformer"):
        load_config("tiny", r_transformer="bogus")
    assert {a: layout_of(reference[a]).name for a in reference} == {
        "bert": "bert",
        "roberta": "bert",
        "mpnet": "mpnet",
        "modernbert": "modernbert",
    }
    with pytest.raises(ValueError, match="no layer layout"):
        layout_of(torch.nn.Linear(2, 2))
    # auto: our loop where it applies, else interception
    assert not build(reference, tok, "mpnet", "auto")._intercept
    assert build(reference, tok, "modernbert", "auto")._intercept


# ---------------------------------------------------------------------- (b) refined variants, gradients
@pytest.mark.parametrize(("arch", "path"), PATHS)
def test_refined_variants_train_and_label_words_matter(reference, tok, tweets, arch, path):
    batch = None
    for variant in ("cat", "i2t", "t2i"):
        model = build(reference, tok, arch, path, variant, saliency_scale="learned")
        open_gates(model)
        model.train()
        batch = model.collator()(examples(tweets[:4]))
        out = model(batch, labels=True, output_attentions=True)
        out.loss.backward()
        assert out.attentions.shape[:2] == (4, 3)
        gates = [*(model.gates_i2t or []), *(model.gates_t2i or [])]
        assert gates and all(g.proj.weight.grad.abs().sum() > 0 for g in gates)
        assert model.saliency_log_scale.grad.abs().sum() > 0  # the saliency term carries gradient
        only_labels = sorted(
            set(model.label_ids[model.label_mask].tolist()) - set(batch.input_ids.flatten().tolist())
        )
        grad = model.encoder.get_input_embeddings().weight.grad[only_labels]
        assert (grad.abs().sum(-1) > 0).all()  # ... through the C-Transformer into the label words
    # other label words, same weights: other outputs (eval, cached label keys and not)
    a = build(reference, tok, arch, path, "cat", saliency_scale="keys")
    b = build(reference, tok, arch, path, "cat", words=OTHER_WORDS, saliency_scale="keys")
    open_gates(a)
    with torch.no_grad():  # sharper projections than the 0.02-std init: a saliency far from uniform
        for name, p in a.encoder.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.mul_(8.0)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    with torch.no_grad():
        cached = a.encode(batch)[0]
        assert (cached - b.encode(batch)[0]).abs().max() > 1e-2
    assert torch.allclose(a.encode(batch)[0], cached, atol=1e-5)  # grad mode: C-Transformer inside


def test_loop_and_interception_compute_the_same(reference, tok, tweets):
    ex = examples(tweets)
    for arch in ("bert", "roberta"):
        loop = build(reference, tok, arch, "loop", "cat")
        open_gates(loop)
        hooked = build(reference, tok, arch, "intercept", "cat")
        hooked.load_state_dict(loop.state_dict())
        loop.eval(), hooked.eval()
        batch = loop.collator()(ex)
        a, b = loop(batch, output_attentions=True), hooked(batch, output_attentions=True)
        assert torch.allclose(a.logits, b.logits, atol=1e-5)
        # the same attention for every real query; padded query rows are not computed by the layer loop
        # (no work on padding), so their rows of the map differ and mean nothing
        real = batch.attention_mask[:, None, None, :, None]  # (B, 1, 1, T, 1)
        assert torch.allclose(a.attentions * real, b.attentions * real, atol=1e-6)
        a.logits.sum().backward(), b.logits.sum().backward()
        for (name, p), q in zip(loop.named_parameters(), hooked.parameters(), strict=True):
            assert (p.grad is None) == (q.grad is None), name
            if p.grad is not None:
                # relative to the tensor's scale: the word-embedding gradient sums many positions (entries up to
                # ~650 here, where one float32 ulp is 6e-5) in an order that differs between the two paths
                scale = q.grad.abs().max().item()
                assert (p.grad - q.grad).abs().max().item() <= 1e-5 + 1e-6 * scale, name


# ------------------------------------------------------------------------------------------ (c) save/load
@pytest.mark.parametrize("arch", ["roberta", "mpnet", "modernbert"])
def test_save_load_round_trip(reference, tok, tweets, arch, tmp_path):
    model = build(reference, tok, arch, "auto", "cat", saliency_scale="keys")
    open_gates(model)
    model.eval()
    saved = model.save_pretrained(tmp_path / arch)
    loaded = CatMner.from_pretrained(saved)
    assert loaded.cfg == model.cfg and loaded._intercept == model._intercept
    assert type(loaded.encoder) is type(model.encoder)
    batch = model.collator()(examples(tweets))
    with torch.no_grad():
        assert torch.equal(model(batch).logits, loaded(batch).logits)


# ----------------------------------------------------------------------------- the optional MPNet encoder
def _fake_parts(tmp_path: Path, monkeypatch) -> list[Path]:
    """A split zip laid out like the wheels' (five pieces), with its own checksums patched in."""
    files = {name: f"{name} contents\n".encode() * 50 for name in mpnet.FILE_SHA256}
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(f"{mpnet.NAME}/", "")
        for name, data in files.items():
            zf.writestr(f"{mpnet.NAME}/{name}", data)
        zf.writestr(f"{mpnet.NAME}/desktop.ini", "junk")
    raw = whole.read_bytes()
    cut = [0, 100, 101, 400, len(raw) // 2, len(raw)]  # uneven pieces, one a single byte
    parts = []
    for i in range(5):
        p = tmp_path / f"part{i + 1}" / f"{mpnet.NAME}.zip.{i + 1:03d}"
        p.parent.mkdir()
        p.write_bytes(raw[cut[i] : cut[i + 1]])
        parts.append(p)
    monkeypatch.setattr(mpnet, "PART_SHA256", tuple(mpnet._sha256(p) for p in parts))
    import hashlib

    monkeypatch.setattr(mpnet, "FILE_SHA256", {n: hashlib.sha256(d).hexdigest() for n, d in files.items()})
    return parts


def test_mpnet_unpack_checks_and_is_once(tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    parts = _fake_parts(tmp_path, monkeypatch)
    target = mpnet.mpnet_home()
    assert target == tmp_path / "home" / "encoders" / mpnet.NAME
    assert mpnet.unpack(parts, target) == target
    assert sorted(p.name for p in target.iterdir()) == sorted([*mpnet.FILE_SHA256, mpnet.MARKER])
    assert (target / "vocab.txt").read_bytes() == b"vocab.txt contents\n" * 50
    monkeypatch.setattr(mpnet, "part_files", lambda: pytest.fail("unpacked twice"))
    assert mpnet.mpnet_path() == target  # complete: the wheels are not read again
    # a truncated file makes the copy incomplete; a corrupted piece is refused and leaves nothing behind
    (target / "vocab.txt").write_bytes(b"short")
    assert not mpnet._complete(target)
    bad = tmp_path / "bad"
    parts[2].write_bytes(b"X" * parts[2].stat().st_size)
    with pytest.raises(ValueError, match="SHA-256"):
        mpnet.unpack(parts, bad)
    assert not bad.exists() and not [p for p in bad.parent.iterdir() if p.name.startswith(".")]


def test_mpnet_not_installed_says_how(tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path))
    try:
        mpnet.part_files()
    except mpnet.EncoderNotInstalled as e:
        assert "uv sync --group mpnet" in str(e)
        with pytest.raises(mpnet.EncoderNotInstalled):
            load_text_encoder("mpnet")
    else:
        pytest.skip("the optional mpnet group is installed here")


@pytest.mark.slow
def test_real_mpnet_text_equals_hf(tweets):
    try:
        mpnet.mpnet_path()
    except mpnet.EncoderNotInstalled:
        pytest.skip("optional encoder not installed (uv sync --group mpnet)")
    model = CatMner(load_config("minilm", text_encoder="mpnet", variant="text"), []).eval()
    assert model.width == 768 and len(model.layers) == 12 and not model._intercept
    assert type(model.encoder).__name__ == "MPNetModel"  # the loop leaves the HF model untouched
    batch = model.collator()(examples(tweets[:3]))
    with torch.no_grad():
        ours, _ = model.encode(batch)
        hf = model.encoder(
            input_ids=batch.input_ids, attention_mask=batch.attention_mask.long()
        ).last_hidden_state
    m = batch.attention_mask
    assert torch.allclose(ours[m], hf[m], atol=1e-4)
