"""The visual layer: caption files, PGIM knowledge, the caption visual source in the model, the captioner, and
one code path (VisualSource) for grid, caption and none in train, evaluate, predict and the benchmarks.

Real captions and PGIM zips from the shared data; tiny random-init models; a tiny random BLIP saved to tmp_path.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from catmner_model.batching import Example
from catmner_model.data import load_split
from catmner_model.model import create_model
from catmner_model.visual import VisualSource, align_knowledge, read_pgim
from catmner_model.visual_caption import CaptionError, read_captions, resolve_captions

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
WORDS = ["person", "city", "team", "festival"]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------- caption files
@pytest.mark.parametrize("dataset", ["twitter2015", "twitter2017"])
def test_shared_caption_files_cover_every_tweet(dataset):
    path = resolve_captions(dataset, data_dir=DATA)
    assert path == DATA / "captions" / f"{dataset}_blip2.txt"
    caps = read_captions(path)
    empty = {
        ln.split(" :")[0][:-4]
        for ln in path.read_text(encoding="utf-8").splitlines()
        if not ln.split(" :", 1)[1].strip()
    }
    assert len(empty) == {"twitter2015": 2, "twitter2017": 0}[dataset]  # empty captions count as none
    for split in ("train", "valid", "test"):
        tweets = load_split(dataset, split, DATA)
        assert {t.imgid for t in tweets if t.imgid not in caps} <= empty
    assert all(c and c == " ".join(c.split()) for c in caps.values())


def test_caption_formats_and_resolution(tmp_path, monkeypatch):
    txt = tmp_path / "caps.txt"
    txt.write_text("\ufeff1001.jpg :a man holding a guitar\n\n1002.jpg :  two   dogs \n", encoding="utf-8")
    assert read_captions(txt) == {"1001": "a man holding a guitar", "1002": "two dogs"}
    jl = tmp_path / "caps.jsonl"
    jl.write_text('{"imgid": "1001", "caption": "a stage"}\n{"imgid": "1003.jpg", "caption": "x"}\n')
    assert read_captions(jl) == {"1001": "a stage", "1003": "x"}
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "twitter2017.jsonl").write_text(jl.read_text())
    assert resolve_captions("twitter2017", folder) == folder / "twitter2017.jsonl"
    monkeypatch.setenv("CATMNER_CAPTIONS", str(txt))
    assert resolve_captions("twitter2015", None, tmp_path) == txt
    monkeypatch.delenv("CATMNER_CAPTIONS")
    assert resolve_captions("twitter2015", None, tmp_path) is None  # no captions/ folder: none


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"1001.jpg :ok\n1002.jpg a caption without separator\n", ":2: expected '<IMGID>.jpg :<caption>'"),
        (b'1001.jpg :ok\n{"imgid": 5\n', ":2: not JSON"),
        (b'{"imgid": "1", "text": "no caption key"}\n', ":1: expected {"),
        (b"1001.jpg :one\n1001.jpg :another\n", ":2: second, different caption"),
        (b"\n\n", "no captions in the file"),
        (b"1001.jpg :caf\xe9\n", "not UTF-8"),
    ],
)
def test_malformed_caption_file_is_one_line_naming_file_and_line(tmp_path, content, message):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    with pytest.raises(CaptionError) as err:
        read_captions(bad)
    assert str(bad) in str(err.value) and message in str(err.value) and "\n" not in str(err.value)


def test_missing_caption_file_and_folder_without_one(tmp_path):
    with pytest.raises(CaptionError, match="caption file not found"):
        resolve_captions("twitter2015", tmp_path / "nope.txt")
    with pytest.raises(CaptionError, match="no caption file for twitter2015"):
        resolve_captions("twitter2015", tmp_path)


# ------------------------------------------------------------------------------------------ PGIM knowledge
def test_pgim_alignment_counts_the_missing_last_tweets():
    zip15 = DATA / "pgim" / "twitter2015_pgim.zip"
    for split, n in (("train", 4000), ("valid", 1000), ("test", 3257)):
        tweets = load_split("twitter2015", split, DATA)
        records = read_pgim(zip15, split)
        assert len(records) == n - 1  # the release drops the last tweet of every Twitter-2015 split
        knowledge = align_knowledge(tweets, records)
        missing = [i for i, k in enumerate(knowledge) if k is None]
        assert missing == [n - 1]
        assert all(k for k in knowledge[:-1])
    tweets17 = load_split("twitter2017", "test", DATA)
    k17 = align_knowledge(tweets17, read_pgim(DATA / "pgim" / "twitter2017_pgim.zip", "test"))
    assert all(k is not None for k in k17) and len(k17) == 723


def test_pgim_bad_zip_is_one_line(tmp_path):
    bad = tmp_path / "x.zip"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CaptionError, match="not a zip file"):
        read_pgim(bad, "train")


def test_knowledge_becomes_a_second_segment_outside_the_spans():
    tweets = load_split("twitter2017", "valid", DATA)[:4]
    model = create_model("tiny", variant="text", text_context="pgim")
    collate = model.collator()
    plain = collate([Example(t) for t in tweets])
    withk = collate([Example(t, context=["the", "band", "played", "in", "paris"] * 3) for t in tweets])
    assert plain.token_type_ids is not None and not plain.token_type_ids.any()
    assert withk.input_ids.shape[1] > plain.input_ids.shape[1]
    assert torch.equal(withk.span_start, plain.span_start) and torch.equal(withk.word_index, plain.word_index)
    assert int(withk.token_type_ids.sum()) == sum(int(m.sum()) for m in withk.attention_mask) - sum(
        int(m.sum()) for m in plain.attention_mask
    )
    with torch.inference_mode():
        assert not torch.allclose(model.eval()(plain).logits, model(withk).logits)


# ------------------------------------------------------------------------------------- caption in the model
def test_caption_tokens_are_visual_tokens_refined_like_grid_cells():
    tweets = load_split("twitter2017", "valid", DATA)[:3]
    caps = read_captions(DATA / "captions" / "twitter2017_blip2.txt")
    torch.manual_seed(0)
    model = create_model("tiny", WORDS, variant="cat", visual="caption", gate_init_std=0.5).eval()
    assert model.visual is None and model.caption is not None
    collate = model.collator()
    with_cap = [Example(t, caption=caps[t.imgid]) for t in tweets]
    batch = collate(with_cap)
    n_pieces = [len(collate.caption_pieces(caps[t.imgid])) for t in tweets]
    assert batch.caption_ids.shape == (3, max(n_pieces)) and batch.stats["captions"] == 3
    assert batch.caption_ids[0, n_pieces[0] - 1] == collate.pieces.sep_id  # segment B closes with [SEP]
    with torch.inference_mode():
        out = model(batch, output_attentions=True)
        assert out.attentions.shape[-1] == max(n_pieces)  # text -> caption-token attention
        # the caption changes the prediction; no caption at all: the one learned no-caption token
        none = collate([Example(t) for t in tweets])
        assert none.caption_ids is None
        out_none = model(none, output_attentions=True)
        assert out_none.attentions.shape[-1] == 1
        assert not torch.allclose(out.logits, out_none.logits)
        # one tweet without caption in a captioned batch computes what it computes alone
        mixed = model(collate([with_cap[0], Example(tweets[1])])).logits
        alone = model(collate([Example(tweets[1])])).logits
        S = int(none.span_mask[1].sum())
        assert torch.allclose(mixed[1, :S], alone[0, :S], atol=1e-5)
    # refinement acts on caption keys: other label words, other attention
    other = create_model("tiny", ["banana", "violin"], variant="cat", visual="caption", gate_init_std=0.5)
    other.load_state_dict(model.state_dict())
    with torch.inference_mode():
        assert not torch.allclose(other.eval()(batch).logits, out.logits)


def test_restart_caption_embedding_starts_as_the_lms_segment_b():
    model = create_model("tiny", variant="mm", visual="caption", caption_positions="restart")
    emb = model.encoder.embeddings
    L = model.cfg.max_caption_pieces
    assert torch.equal(model.caption.position.data, emb.position_embeddings.weight[:L])
    assert torch.equal(model.caption.modality.data, emb.token_type_embeddings.weight[1])


def test_grid_plus_caption_has_both_token_sets():
    tweets = load_split("twitter2017", "valid", DATA)[:2]
    model = create_model("tiny", WORDS, variant="cat", visual="grid+caption", image_feature_dim=8).eval()
    batch = model.collator()(
        [Example(t, image_features=torch.randn(16, 8), caption="a crowd at a concert") for t in tweets]
    )
    with torch.inference_mode():
        att = model(batch, output_attentions=True).attentions
    assert att.shape[-1] == 16 + batch.caption_ids.shape[1]


def test_visual_none_is_the_text_variant():
    with pytest.raises(ValueError, match="visual source 'none'"):
        create_model("tiny", variant="mm", visual="none")
    with pytest.raises(ValueError, match="unknown visual source"):
        create_model("tiny", variant="mm", visual="pixels")
    assert create_model("tiny", variant="text", visual="caption").caption is None


# ---------------------------------------------------------------------------------------------- captioner
@pytest.fixture(scope="module")
def tiny_blip(tmp_path_factory) -> Path:
    """A random-init BLIP captioning model (MiniLM vocabulary), saved like a Hugging Face checkpoint."""
    from catmner_model.text_encoder import minilm_path
    from transformers import (
        AutoTokenizer,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        BlipProcessor,
    )

    tok = AutoTokenizer.from_pretrained(str(minilm_path()))
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        encoder_hidden_size=32,
        bos_token_id=tok.cls_token_id,
        sep_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
        max_position_embeddings=64,
    )
    vision = dict(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tinyblip")
    BlipForConditionalGeneration(BlipConfig(text_config=text, vision_config=vision)).save_pretrained(out)
    BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok
    ).save_pretrained(out)
    return out


def test_captioner_writes_captions_for_tweets_without_one(tiny_blip):
    tweets = load_split("twitter2017", "train", DATA)
    have = {p.stem for p in (DATA / "tweet_images" / "twitter2017_images").glob("*.jpg")}
    with_image = [t for t in tweets if t.imgid in have][:2]
    without_image = next(t for t in tweets if t.imgid not in have)
    cfg = create_model("tiny", variant="mm", visual="caption").cfg
    src = VisualSource.for_model(
        cfg, dataset="twitter2017", data_dir=DATA, captions={}, captioner=str(tiny_blip)
    )
    exs = src.examples([*with_image, without_image])
    assert all(isinstance(e.caption, str) and e.caption for e in exs[:2])
    assert exs[2].caption is None  # no image, no caption: the no-caption token
    assert src.stats.captioned_by_model == 2 and src.stats.with_caption == 2
    # a caption given with the tweet wins over the captioner
    assert src.example(with_image[0], caption="given").caption == "given"


def test_captioner_that_cannot_load_is_one_line(tmp_path):
    from catmner_model.visual_caption import HFCaptioner

    with pytest.raises(CaptionError, match="cannot load the captioning model"):
        HFCaptioner(str(tmp_path))


# ------------------------------------------------------------------------------------------ one code path
@pytest.mark.parametrize("visual", ["grid", "caption", "none"])
def test_train_evaluate_predict_and_bench_share_the_visual_source(visual, tmp_path, monkeypatch):
    from catmner_bench.profiles import resolve_profile
    from catmner_bench.runner import RunContext, evaluate_model_dir
    from catmner_model.evaluate import evaluate_model
    from catmner_model.predict import Predictor
    from catmner_model.training.config import TrainConfig
    from catmner_model.training.loop import train

    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    calls: list[str] = []
    real = VisualSource.example

    def spy(self, tweet, *a, **k):
        calls.append(self.visual)
        return real(self, tweet, *a, **k)

    monkeypatch.setattr(VisualSource, "example", spy)
    tweets = load_split("twitter2017", "valid", DATA)[:6]
    variant = "text" if visual == "none" else "mm"
    config = TrainConfig(
        dataset="twitter2017",
        labels=None,
        text_encoder="tiny",
        image_encoder="tiny",
        variant=variant,
        visual="grid" if visual == "none" else visual,
        epochs=1,
        batch_size=3,
        data_dir=str(DATA),
        output=str(tmp_path / "run"),
        quiet=True,
        num_threads=1,
    )
    rec = train(config, data={"train": tweets, "valid": tweets, "test": tweets})
    names = () if visual == "none" else tuple(visual.split("+"))  # the model config lists its sources
    assert tuple(rec["model_config"]["visual"]) == names and calls and set(calls) == {visual}
    if visual == "caption":
        assert rec["image_stats"]["tweets_with_caption"] == 6
    calls.clear()
    res = evaluate_model(tmp_path / "run" / "model", "twitter2017", "valid", data_dir=DATA, max_tweets=5)
    assert calls == [visual] * 5
    if visual == "caption":
        assert res["captions"] == {"with_caption": 5, "without": 0}
    calls.clear()
    Predictor(tmp_path / "run" / "model").predict_text("Messi scores for Barcelona", caption="a soccer game")
    assert calls == [visual]
    calls.clear()
    ctx = RunContext(output=tmp_path / "bench", profile=resolve_profile("smoke"), data_dir=DATA)
    evaluate_model_dir(ctx, tmp_path / "run" / "model", "twitter2017", tweets[:4], "tiny")
    assert calls == [visual] * 4


def test_learned_saliency_scale_starts_at_keys_and_learns():
    tweets = load_split("twitter2017", "valid", DATA)[:3]
    torch.manual_seed(0)
    keys = create_model(
        "tiny", WORDS, variant="cat", visual="caption", gate_init_std=0.5, saliency_scale="keys"
    )
    learned = create_model(
        "tiny", WORDS, variant="cat", visual="caption", gate_init_std=0.5, saliency_scale="learned"
    )
    missing, unexpected = learned.load_state_dict(keys.state_dict(), strict=False)
    assert missing == ["saliency_log_scale"] and not unexpected
    batch = keys.collator()([Example(t, caption="a crowd at a football game") for t in tweets])
    keys.eval(), learned.eval()
    with torch.no_grad():
        assert torch.allclose(keys(batch).logits, learned(batch).logits, atol=1e-6)
    learned.train()
    learned(batch, labels=True).loss.backward()
    assert learned.saliency_log_scale.grad is not None and learned.saliency_log_scale.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="saliency_scale"):
        create_model("tiny", WORDS, saliency_scale="huge")


def test_predict_input_lines_without_caption_are_warned(tmp_path, monkeypatch):
    import subprocess
    import sys

    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    model = create_model("tiny", variant="mm", visual="caption")
    model.save_pretrained(tmp_path / "m")
    f = tmp_path / "in.jsonl"
    f.write_text(
        '{"text": "Messi scores", "caption": "a soccer player"}\n{"text": "Obama in Paris"}\n',
        encoding="utf-8",
    )
    res = subprocess.run(
        [sys.executable, "-c", "from catmner_model.cli import main; main()", "predict", str(tmp_path / "m")]
        + ["--input", str(f), "-q"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert f"warning: {f}:2: no caption: predicted with the no-caption token" in res.stderr
    assert len(res.stdout.splitlines()) == 2
