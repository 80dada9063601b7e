"""UMT (umt.py) on tiny random-initialised configs: shapes through every block, the conversion matrix, the CRF
against brute force, the visual gate at its extremes, the loss, and train -> save -> load -> evaluate ->
predict through the real CLI on real tweets."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path

import pytest
import torch
from catmner_model.batching import Example
from catmner_model.cli import app
from catmner_model.crf import CRF
from catmner_model.data import load_split
from catmner_model.families import create_model, load_pretrained
from catmner_model.umt import BETA, SPAN_TAGS, TAGS, Umt, conversion_matrix
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
F_DIM = 24  # the tiny config's grid-feature width


@pytest.fixture(autouse=True)
def _env(tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CATMNER_DATA", str(DATA))
    monkeypatch.delenv("CATMNER_DEBUG", raising=False)
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tweets():
    return [t for t in load_split("twitter2017", "train", DATA) if t.entities and len(t.tokens) < 30][:4]


def umt(visual: str) -> Umt:
    torch.manual_seed(0)
    return create_model("tiny", family="umt", variant="mm", visual=visual)


def examples(tweets, visual: str, with_visual=(True, False, True, False)):
    out = []
    for t, has in zip(tweets, with_visual, strict=True):
        feats = torch.randn(16, F_DIM) if has and visual == "grid" else None
        caption = "a man holding a trophy in a stadium" if has and visual == "caption" else None
        out.append(Example(t, image_features=feats, caption=caption))
    return out


@pytest.mark.parametrize("visual", ["grid", "caption"])
def test_shapes_through_every_block(tweets, visual):
    model = umt(visual).eval()
    batch = model.collator()(examples(tweets, visual))
    B, T = batch.input_ids.shape
    W = batch.word_mask.shape[1]
    D = model.encoder.config.hidden_size
    text, caption = model.encode_text(batch)
    assert text.shape == (B, T, D)
    v1, v2, vmask = model.visual(batch, caption)
    n_vis = 16 if visual == "grid" else batch.caption_ids.shape[1]
    assert v1.shape == v2.shape == (B, n_vis, D) and vmask.shape == (B, n_vis)
    assert vmask[:, 0].all() and not vmask[1, 1:].any()  # no image / caption: the no-image token only
    main = model.main_self(text, text, batch.attention_mask)
    cross = model.text_image(main, v1, vmask)
    image_text = model.image_text(v2, main, batch.attention_mask)
    final = model.text_text(main, image_text, vmask)
    assert main.shape == cross.shape == final.shape == (B, T, D) and image_text.shape == (B, n_vis, D)
    assert model.fuse(final, cross).shape == (B, T, 2 * D)
    mixed, aux = model.emissions(batch)
    assert mixed.shape == (B, T, len(TAGS)) and aux.shape == (B, T, len(SPAN_TAGS))
    out = model(batch, labels=True)
    assert out.emissions.shape == (B, W, len(TAGS)) and out.loss.shape == () and torch.isfinite(out.loss)
    # a batch without any image / caption carries one visual token
    bare = model.collator()(examples(tweets, visual, (False,) * 4))
    v1, _, vmask = model.visual(bare, model.encode_text(bare)[1])
    assert v1.shape == (B, 1, D) and vmask.all()
    assert [len(e) >= 0 for e in model.decode(model(bare), bare)] == [True] * 4


def test_umt_reads_the_caption_as_a_sequence_of_its_own(tweets):
    """CAT-MNER's default caption placement (segment B of a pair, issue 28) is not UMT's: a UMT model keeps
    "restart" (its saved config says so), its caption pieces carry no pair separator and its caption embedding
    has its own positions."""
    model = umt("caption")
    assert model.cfg.caption_positions == "restart" and model.visual.caption.placement == "restart"
    collate = model.collator()
    assert collate.pair_prefix == [] and not collate.pair
    tok = collate.pieces.tokenizer("a man", add_special_tokens=False)["input_ids"]
    assert collate.caption_pieces("a man") == [*tok, collate.pieces.sep_id]


def test_conversion_matrix_values():
    m = conversion_matrix()
    assert m.shape == (3, 9) and SPAN_TAGS == ("O", "B", "I")
    expected = torch.zeros(3, 9)
    expected[0, TAGS.index("O")] = 1
    for t in ("PER", "LOC", "ORG", "MISC"):
        expected[1, TAGS.index(f"B-{t}")] = 0.25
        expected[2, TAGS.index(f"I-{t}")] = 0.25
    assert torch.equal(m, expected)
    assert torch.equal(umt("caption").conversion, expected)  # what the model mixes with (not saved)


def _path_score(crf, emissions, path):
    s = crf.start[path[0]] + emissions[0, path[0]]
    for t in range(1, len(path)):
        s = s + crf.transitions[path[t - 1], path[t]] + emissions[t, path[t]]
    return s + crf.end[path[-1]]


def test_crf_decoding_likelihood_and_marginals_match_brute_force():
    torch.manual_seed(3)
    crf = CRF(3)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    emissions = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    tags = torch.tensor([[0, 1, 2, 2, 0], [2, 1, 0, 0, 0]])
    paths = crf.decode(emissions, mask)
    marg = crf.marginals(emissions, mask)
    nll = []
    for b, n in enumerate((5, 3)):
        every = list(itertools.product(range(3), repeat=n))
        scores = torch.stack([_path_score(crf, emissions[b], p) for p in every])
        assert tuple(paths[b]) == every[int(scores.argmax())]
        probs = (scores - scores.logsumexp(0)).exp().detach()
        for t in range(n):
            for k in range(3):
                want = sum(float(q) for p, q in zip(every, probs, strict=True) if p[t] == k)
                assert abs(float(marg[b, t, k]) - want) < 1e-5
        nll.append(scores.logsumexp(0) - _path_score(crf, emissions[b], tags[b, :n].tolist()))
    assert torch.allclose(crf(emissions, tags, mask), torch.stack(nll).mean(), atol=1e-5)


def test_visual_gate_at_its_extremes():
    model = umt("caption")
    D = model.encoder.config.hidden_size
    final, cross = torch.randn(2, 3, D), torch.randn(2, 3, D)
    with torch.no_grad():
        model.gate.weight.zero_()
        model.gate.bias.fill_(50.0)  # g = 1: the image-aware text passes whole
        assert torch.allclose(model.fuse(final, cross), torch.cat([final, cross], -1))
        model.gate.bias.fill_(-50.0)  # g = 0: the visual half is shut
        assert torch.allclose(model.fuse(final, cross), torch.cat([final, torch.zeros_like(cross)], -1))
        model.gate.bias.zero_()  # g = 1/2
        assert torch.allclose(model.fuse(final, cross)[..., D:], cross / 2)


def test_loss_is_main_crf_plus_half_the_auxiliary_crf(tweets):
    model = umt("grid").eval()
    batch = model.collator()(examples(tweets, "grid"))
    out = model(batch, labels=True)
    tags, span = model.word_tags(batch, out.word_mask.shape[1])
    gold = tweets[0].tags[: batch.n_words[0]]
    assert [TAGS[k] for k in tags[0, : batch.n_words[0]]] == gold
    assert [SPAN_TAGS[k] for k in span[0, : batch.n_words[0]]] == [t[0] for t in gold]
    want = model.crf(out.emissions, tags, out.word_mask) + BETA * model.aux_crf(
        out.aux_emissions, span, out.word_mask
    )
    assert torch.allclose(out.loss, want)
    assert BETA == 0.5


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("catmner: error: "), result.stderr
    return lines[0]


def test_train_save_load_evaluate_predict_through_the_cli(tmp_path):
    runner = CliRunner()
    out = tmp_path / "run"
    args = ["train", "--model", "umt", "--dataset", "twitter2017", "--visual", "caption"]
    args += ["--text-encoder", "tiny", "--epochs", "1", "--max-train", "8", "--max-eval", "6", "--lr", "1e-3"]
    args += ["--batch-size", "4", "--data-dir", str(DATA), "--output", str(out), "--quiet", "--threads", "1"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["model_config"]["family"] == "umt" and record["config"]["model"] == "umt"
    assert record["config"]["labels"] is None and record["n_tweets"] == {"train": 8, "valid": 6, "test": 6}
    assert isinstance(load_pretrained(out / "model"), Umt)

    ev = runner.invoke(
        app,
        ["evaluate", str(out / "model"), "--dataset", "twitter2017", "--data-dir", str(DATA)]
        + ["--max-tweets", "6", "--json", "--quiet"],
    )
    assert ev.exit_code == 0, ev.output
    scored = json.loads(ev.stdout)
    assert scored["lenient"]["f1"] == pytest.approx(record["metrics"]["test"]["lenient"]["f1"])
    assert scored["captions"]["with_caption"] > 0

    pred = runner.invoke(
        app, ["predict", str(out / "model"), "--text", "Messi scores for Barcelona", "--caption", "a player"]
    )
    assert pred.exit_code == 0, pred.output
    entities = json.loads(pred.stdout)
    assert all(set(e) == {"text", "type", "start", "end", "score"} for e in entities)
    assert all(0 <= e["start"] < e["end"] <= 4 and 0 < e["score"] <= 1 for e in entities)

    # what UMT cannot do is one line, before any work
    for extra, needle in (
        (["--visual", "grid+caption"], "--visual grid or caption"),
        (["--labels", "textual"], "uses no label words"),
        (["--variant", "cat"], "CAT-MNER variant"),
    ):
        bad = runner.invoke(
            app, [*args[:5], *extra, "--output", str(tmp_path / "bad"), "--data-dir", str(DATA)]
        )
        assert needle in one_error_line(bad)
