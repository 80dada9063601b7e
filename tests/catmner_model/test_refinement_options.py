"""The refinement's options: the paper's per-block softmax beside the joint one, the saliency scales (a learned
scale that starts where asked and has its own learning rate), and the vital signs of `catmner_model.vitals`
checked against a direct recomputation from the layers' own projections.

Tiny random-init BERTs (MiniLM vocabulary), tweets made in memory.
"""

from __future__ import annotations

import math

import pytest
import torch
from catmner_model.attention import attention
from catmner_model.batching import Example
from catmner_model.data import Tweet
from catmner_model.model import create_model
from catmner_model.training.config import TrainConfig
from catmner_model.training.optim import make_optimizer
from catmner_model.vitals import measure_vitals

WORDS = ["person", "city", "team"]


def tweet(text: str) -> Tweet:
    words = text.split()
    return Tweet("1", words, ["O"] * len(words), [])


def examples(n_features: int = 8) -> list[Example]:
    grid = torch.linspace(-1, 1, 16 * n_features).view(16, n_features)
    return [
        Example(tweet("Kevin Durant plays in Oakland tonight"), grid, caption="a man playing basketball"),
        Example(tweet("RT @nba : what a game")),
        Example(tweet("Paris at night"), grid.flip(0), caption="a city at night with lights"),
    ]


# ----------------------------------------------------------------------------------------- block softmax
def test_block_softmax_rows_sum_to_one_per_block():
    torch.manual_seed(0)
    B, H, T, V, D = 2, 3, 5, 4, 8
    q, k, v = torch.randn(B, H, T + V, D), torch.randn(B, H, T + V, D), torch.randn(B, H, T + V, D)
    mask = torch.ones(B, T + V, dtype=torch.bool)
    mask[0, 3:T] = False  # padding text keys
    mask[1, T + 1 :] = False  # one visual key only
    _, probs = attention(q, k, v, mask, blocks=T)
    torch.testing.assert_close(probs[..., :T].sum(-1), torch.ones(B, H, T + V))
    torch.testing.assert_close(probs[..., T:].sum(-1), torch.ones(B, H, T + V))
    assert bool((probs[0, :, :, 3:T] == 0).all()) and bool((probs[1, :, :, T + 1 :] == 0).all())
    assert bool((probs[1, :, :, T] == 1).all())  # the one visual key takes its block's whole mass
    _, joint = attention(q, k, v, mask)
    torch.testing.assert_close(joint.sum(-1), torch.ones(B, H, T + V))
    # a block without an allowed key gets no mass (not a uniform spread over masked keys)
    mask[1, T:] = False
    _, probs = attention(q, k, v, mask, blocks=T)
    assert bool((probs[1, ..., T:] == 0).all())


@pytest.mark.parametrize("r_transformer", ["loop", "intercept"])
@pytest.mark.parametrize("visual", ["grid", "grid+caption"])
def test_with_gate_zero_block_cat_is_block_mm_exactly(r_transformer, visual):
    kw = dict(visual=visual, image_feature_dim=8, softmax="block", r_transformer=r_transformer)
    torch.manual_seed(0)
    cat = create_model("tiny", WORDS, variant="cat", gate_init_std=0.0, **kw).eval()  # g = 0
    mm = create_model("tiny", variant="mm", **kw).eval()
    missing, unexpected = mm.load_state_dict(cat.state_dict(), strict=False)
    assert not missing and all(n.startswith(("gates_", "saliency_log_scale")) for n in unexpected)
    batch = cat.collator()(examples())
    with torch.inference_mode():
        out = cat(batch, output_attentions=True)
        assert torch.equal(out.logits, mm(batch).logits)
        # I2T rows (text queries over the visual keys) sum to one on their own
        real = batch.attention_mask[:, None, None, :]  # (B, 1, 1, T)
        rows = out.attentions.sum(-1)  # (B, L, H, T)
        torch.testing.assert_close(rows[real.expand_as(rows)], torch.ones(int(real.expand_as(rows).sum())))
    joint = create_model("tiny", variant="mm", **{**kw, "softmax": "joint"}).eval()
    joint.load_state_dict(mm.state_dict())
    with torch.inference_mode():
        assert not torch.allclose(joint(batch).logits, out.logits)  # the option changes the model


def test_old_configs_are_joint_and_unknown_softmax_is_refused():
    assert create_model("tiny", variant="mm", visual="caption").cfg.softmax == "joint"
    with pytest.raises(ValueError, match="softmax must be one of joint, block"):
        create_model("tiny", variant="mm", softmax="paper")


# ------------------------------------------------------------------------------------------- saliency
def test_learned_scale_starts_where_asked():
    torch.manual_seed(0)
    keys = create_model(
        "tiny", WORDS, variant="cat", image_feature_dim=8, saliency_scale="keys", gate_init_std=0.5
    ).eval()
    learned = create_model("tiny", WORDS, variant="cat", image_feature_dim=8, gate_init_std=0.5).eval()
    learned.load_state_dict(keys.state_dict(), strict=False)
    assert torch.equal(learned.saliency_log_scale.data, torch.zeros(2))  # starts at "keys"
    batch = keys.collator()(examples())
    big = create_model(
        "tiny", WORDS, variant="cat", image_feature_dim=8, gate_init_std=0.5, saliency_scale_init=8.0
    ).eval()
    torch.testing.assert_close(big.saliency_log_scale.data, torch.full((2,), math.log(8.0)))
    big.load_state_dict({k: v for k, v in keys.state_dict().items()}, strict=False)
    with torch.inference_mode():
        torch.testing.assert_close(learned(batch).logits, keys(batch).logits)
        assert not torch.allclose(big(batch).logits, keys(batch).logits)
    for bad in (0, -1.0, float("nan"), True):
        # NaN and True are caught by the config's type check (ConfigError), 0 and -1 by the field's own
        with pytest.raises(ValueError, match="saliency_scale_init.? must be (a positive number|float)"):
            create_model("tiny", WORDS, variant="cat", saliency_scale_init=bad)


def test_learned_scale_has_its_own_learning_rate():
    torch.manual_seed(0)
    model = create_model("tiny", WORDS, variant="cat", image_feature_dim=8, gate_init_std=0.5)
    plain = make_optimizer(model, TrainConfig(lr=1e-3), torch.device("cpu"), fused=False)
    assert all("saliency" not in g["name"] for g in plain.param_groups)
    opt = make_optimizer(model, TrainConfig(lr=1e-3, saliency_lr=0.25), torch.device("cpu"), fused=False)
    (group,) = [g for g in opt.param_groups if g["name"] == "saliency-nodecay"]
    assert group["lr"] == 0.25 and group["params"] == [model.saliency_log_scale]
    model.train()
    batch = model.collator()([Example(tweet("Kevin Durant plays"), torch.randn(16, 8), caption=None)] * 2)
    before = model.saliency_log_scale.detach().clone()
    model(batch, labels=True).loss.backward()
    assert bool((model.saliency_log_scale.grad != 0).all())
    opt.step()
    moved = (model.saliency_log_scale.detach() - before).abs()
    torch.testing.assert_close(moved, torch.full((2,), 0.25), rtol=1e-2, atol=0)  # Adam: first step ~ lr


# ----------------------------------------------------------------------------------------- vital signs
def recompute(model, batch):
    """The vital signs of one batch of fully real tokens (B = 1: no padding) from hooks on the layers' own
    Q/K projections and gates, and the attention maps the model returns."""
    layers = model.layers
    got: dict[str, list] = {"q": [], "k": [], "g_v": [], "g_t": []}
    hooks = []

    def keep(name):
        def hook(
            _module, _args, out
        ):  # token rows only (B, N, D): label-word keys (C, D) share the projection
            if out.dim() == 3:
                got[name].append(out)

        return hook

    for layer in layers:
        att = layer.attention.self
        hooks.append(att.query.register_forward_hook(keep("q")))
        hooks.append(att.key.register_forward_hook(keep("k")))
    for gate in model.gates_i2t:
        hooks.append(gate.register_forward_hook(keep("g_v")))
    for gate in model.gates_t2i:
        hooks.append(gate.register_forward_hook(keep("g_t")))
    with torch.inference_mode():
        out = model(batch, output_attentions=True)
    for h in hooks:
        h.remove()
    with torch.inference_mode():
        keys = model._label_keys()  # (H, C, Dh) per layer
    return _recompute(model, batch, got, out, keys)


@torch.inference_mode()
def _recompute(model, batch, got, out, keys):
    layers = model.layers
    T = batch.input_ids.shape[1]
    H = model.n_heads
    heads = lambda x: x.view(1, x.shape[1], H, -1).transpose(1, 2)  # noqa: E731
    assert len(got["q"]) == len(got["k"]) == len(layers)
    res = []
    for i in range(len(layers)):
        q, k = heads(got["q"][i]), heads(got["k"][i])  # (1, H, N, Dh)
        qk = q @ k.transpose(-1, -2)
        s_probs = torch.softmax(q[:, :, T:] @ keys[i].transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-2)
        s = s_probs.mean(-1) * (q.shape[2] - T) * model.saliency_log_scale[i].exp()  # (1, H, I) "learned"
        g_v = got["g_v"][i]
        att = out.attentions[:, i]  # (1, H, T, I)
        row = {
            "qk_i2t": qk[:, :, :T, T:].abs().mean(),
            "gate_i2t": g_v.mean(),
            "gs_i2t": (g_v * s).mean(),
            "s_i2t": s.mean(),
            "text_visual_mass": att.sum(-1).mean(),
            "caption_first_share": (att[..., 16] / att[..., 16:].sum(-1)).mean(),
        }
        p = s / s.sum(-1, keepdim=True)
        ent = -(p * p.log()).sum(-1)
        row["saliency_entropy"] = ent.mean()
        row["saliency_entropy_norm"] = (ent / math.log(s.shape[-1])).mean()
        if i < len(layers) - 1:
            row["qk_t2i"] = qk[:, :, T:, :T].abs().mean()
            g_t = got["g_t"][i]
            s_t = torch.softmax(q[:, :, :T] @ keys[i].transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-2)
            s_t = s_t.mean(-1) * T * model.saliency_log_scale[i].exp()
            row["gate_t2i"], row["gs_t2i"] = g_t.mean(), (g_t * s_t).mean()
        res.append({name: float(v) for name, v in row.items()})
    return res


def test_vital_signs_equal_a_direct_recomputation():
    torch.manual_seed(0)
    model = create_model(
        "tiny",
        WORDS,
        variant="cat",
        visual="grid+caption",
        image_feature_dim=8,
        gate_init_std=0.5,
        saliency_scale_init=3.0,
    ).eval()
    exs = [examples()[0], examples()[2]]  # both with an image and a caption
    expected = [recompute(model, model.collator()([ex])) for ex in exs]
    vitals = measure_vitals(model, exs, batch_size=1)
    assert vitals["tweets"] == 2 and len(vitals["layers"]) == 2
    assert vitals["saliency_multiplier"] == pytest.approx([3.0, 3.0])
    for i, layer in enumerate(vitals["layers"]):
        for name, value in expected[0][i].items():
            # the split's mean weighs each tweet by its number of elements: text rows T, visual keys I
            n_text = [model.collator()([ex]).input_ids.shape[1] for ex in exs]
            n_vis = [16 + model.collator()([ex]).caption_ids.shape[1] for ex in exs]
            weights = {
                "qk_i2t": [t * v for t, v in zip(n_text, n_vis, strict=True)],
                "qk_t2i": [t * v for t, v in zip(n_text, n_vis, strict=True)],
                "gate_i2t": n_vis,
                "gs_i2t": n_vis,
                "s_i2t": n_vis,
                "gate_t2i": n_text,
                "gs_t2i": n_text,
                "text_visual_mass": n_text,
                "caption_first_share": n_text,
            }.get(name, [1, 1])  # the entropies: one per tweet and head
            want = sum(w * e[i][name] for w, e in zip(weights, expected, strict=True)) / sum(weights)
            assert layer[name] == pytest.approx(want, rel=1e-4, abs=1e-6), (i, name)
            assert value is not None
    assert vitals["layers"][1]["qk_t2i"] is None and vitals["layers"][1]["gate_t2i"] is None  # last layer


def test_vital_signs_do_not_depend_on_the_batching():
    torch.manual_seed(0)
    model = create_model("tiny", WORDS, variant="cat", visual="caption", gate_init_std=0.5).eval()
    exs = examples() * 2
    one = measure_vitals(model, exs, batch_size=1)
    many = measure_vitals(model, exs, batch_size=4)
    for a, b in zip(one["layers"], many["layers"], strict=True):
        for name in a:
            assert (a[name] is None) == (b[name] is None), name
            if a[name] is not None:
                assert a[name] == pytest.approx(b[name], rel=1e-4, abs=1e-6), name
    mm = create_model("tiny", variant="mm", visual="caption").eval()
    plain = measure_vitals(mm, exs, batch_size=4)["mean"]
    assert (
        plain["gate_i2t"] is None
        and 0 < plain["text_visual_mass"] < 1
        and 0 < plain["caption_first_share"] < 1
    )
    with pytest.raises(ValueError, match="text variant"):
        measure_vitals(create_model("tiny", variant="text"), exs)


def test_the_saliency_can_start_on_the_scale_of_qk():
    from catmner_model.vitals import start_saliency_at_qk

    torch.manual_seed(0)
    model = create_model("tiny", WORDS, variant="cat", visual="caption").eval()  # gates at 0, as trained from
    exs = examples()
    before = measure_vitals(model, exs)
    multipliers = start_saliency_at_qk(model, exs)
    after = measure_vitals(model, exs)
    for i, (b, a) in enumerate(zip(before["layers"], after["layers"], strict=True)):
        assert a["qk_i2t"] == pytest.approx(b["qk_i2t"])  # the scale changes s only
        assert a["s_i2t"] == pytest.approx(b["qk_i2t"], rel=1e-4)  # mean s now = mean |QK^T|
        assert multipliers[i] == pytest.approx(b["qk_i2t"] / b["s_i2t"], rel=1e-4)
    with pytest.raises(ValueError, match="needs saliency_scale 'learned'"):
        start_saliency_at_qk(create_model("tiny", WORDS, variant="cat", saliency_scale="keys"), exs)
