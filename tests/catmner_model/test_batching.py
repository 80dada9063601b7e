"""Batching: word pieces, first-subword indices, truncation, span enumeration and gold span labels."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from catmner_model.batching import (
    IGNORE_INDEX,
    LABELS,
    Collator,
    Example,
    enumerate_spans,
    span_index,
    spans_to_entities,
)
from catmner_model.config import CatMnerConfig
from catmner_model.data import Entity, Tweet, load_split, tags_to_entities
from catmner_model.text_encoder import load_tokenizer

DATA = Path(os.environ.get("CATMNER_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("tiny")


@pytest.fixture(scope="module")
def tweets() -> list[Tweet]:
    return load_split("twitter2015", "train", DATA)[:40]


def make_tweet(tokens: list[str], tags: list[str] | None = None) -> Tweet:
    tags = tags or ["O"] * len(tokens)
    return Tweet(imgid="x", tokens=tokens, tags=tags, entities=tags_to_entities(tags))


def test_enumerate_spans_matches_brute_force_and_span_index():
    for n in (0, 1, 3, 9):
        for k in (1, 2, 8):
            start, end = enumerate_spans(n, k)
            brute = [(i, j) for i in range(n) for j in range(i, min(n, i + k))]
            assert list(zip(start.tolist(), end.tolist(), strict=True)) == brute
            for pos, (i, j) in enumerate(brute):
                assert span_index(i, j, n, k) == pos


def test_first_subword_index_points_at_each_word_first_piece(tokenizer, tweets):
    cfg = CatMnerConfig(text_encoder="tiny", max_word_pieces=None, max_url_pieces=None)
    batch = Collator(tokenizer, cfg)([Example(t) for t in tweets[:10]])
    for b, t in enumerate(tweets[:10]):
        assert batch.n_words[b] == len(t.tokens)
        ids = batch.input_ids[b]
        assert ids[0] == tokenizer.cls_token_id
        for w, word in enumerate(t.tokens):
            pieces = tokenizer(word, add_special_tokens=False)["input_ids"] or [tokenizer.unk_token_id]
            pos = int(batch.word_index[b, w])
            assert ids[pos : pos + len(pieces)].tolist() == pieces
        n_tok = int(batch.attention_mask[b].sum())
        assert ids[n_tok - 1] == tokenizer.sep_token_id
        assert not batch.attention_mask[b, n_tok:].any()


def test_padded_to_batch_length_not_fixed(tokenizer, tweets):
    cfg = CatMnerConfig(text_encoder="tiny")
    collate = Collator(tokenizer, cfg)
    short = [make_tweet(["hi", "Bob"]), make_tweet(["ok"])]
    batch = collate([Example(t) for t in short])
    assert batch.input_ids.shape == (2, 4)  # [CLS] hi bob [SEP]
    assert batch.attention_mask.sum(1).tolist() == [4, 3]
    assert batch.span_start.shape[1] == 3  # (0,0) (0,1) (1,1)
    assert batch.span_mask.sum(1).tolist() == [3, 1]
    long = collate([Example(t) for t in tweets[:10]])
    assert long.input_ids.shape[1] == int(long.attention_mask.sum(1).max())


def test_gold_span_labels_reproduce_entities(tokenizer, tweets):
    cfg = CatMnerConfig(text_encoder="tiny", max_span_len=8)
    batch = Collator(tokenizer, cfg)([Example(t) for t in tweets])
    assert batch.stats["gold"] == sum(len(t.entities) for t in tweets) > 0
    assert batch.stats["gold_too_long"] == batch.stats["gold_truncated"] == 0
    for b, t in enumerate(tweets):
        m = batch.span_mask[b]
        assert (batch.span_labels[b][~m] == IGNORE_INDEX).all()
        got = spans_to_entities(batch.span_start[b][m], batch.span_end[b][m], batch.span_labels[b][m])
        assert sorted(e.key for e in got) == sorted(e.key for e in t.entities)


def test_empty_tweet_and_words_without_pieces(tokenizer):
    cfg = CatMnerConfig(text_encoder="tiny")
    batch = Collator(tokenizer, cfg)(
        [Example(make_tweet([])), Example(make_tweet(["\ufe0f", "Paris"], ["O", "B-LOC"]))]
    )
    assert batch.n_words == [0, 2]
    assert batch.attention_mask.sum(1).tolist() == [2, 4]  # [CLS][SEP] ; [CLS] [UNK] paris [SEP]
    assert int(batch.input_ids[1, 1]) == tokenizer.unk_token_id
    assert not batch.span_mask[0].any() and (batch.span_labels[0] == IGNORE_INDEX).all()
    assert LABELS[int(batch.span_labels[1, span_index(1, 1, 2, cfg.max_span_len)])] == "LOC"


def test_truncation_policy_and_counters(tokenizer):
    words = ["word"] * 20 + ["Paris"]
    tags = ["O"] * 20 + ["B-LOC"]
    cfg = CatMnerConfig(text_encoder="tiny", max_length=12, max_span_len=2)
    long_ent = make_tweet(["New", "York", "City", "now"], ["B-LOC", "I-LOC", "I-LOC", "O"])
    batch = Collator(tokenizer, cfg)([Example(make_tweet(words, tags)), Example(long_ent)])
    assert batch.input_ids.shape[1] == 12
    assert batch.n_words[0] == 10  # [CLS] + 10 one-piece words + [SEP]
    assert batch.stats["words_truncated"] == 11
    assert batch.stats["gold_truncated"] == 1  # Paris was cut off
    assert batch.stats["gold_too_long"] == 1  # a 3-word entity with max_span_len = 2
    assert (batch.span_labels[1][batch.span_mask[1]] == 0).all()  # counted, not mislabelled


def test_url_and_word_piece_caps(tokenizer):
    url = "http://t.co/Z3neVBQ7vF"
    assert len(tokenizer(url, add_special_tokens=False)["input_ids"]) > 10
    cfg = CatMnerConfig(text_encoder="tiny", max_word_pieces=3, max_url_pieces=2)
    batch = Collator(tokenizer, cfg)([Example(make_tweet(["#HappyBirthdayMaggieSmith", url, "x"]))])
    assert batch.word_index[0].tolist() == [1, 4, 6]
    assert batch.input_ids.shape[1] == 1 + 3 + 2 + 1 + 1


def test_image_features_batching(tokenizer, tweets):
    cfg = CatMnerConfig(text_encoder="tiny", image_feature_dim=8)
    collate = Collator(tokenizer, cfg)
    feats = torch.randn(16, 8)
    batch = collate([Example(tweets[0], feats), Example(tweets[1], None)])
    assert batch.image_mask.tolist() == [True, False]
    assert batch.image_features.shape == (2, 16, 8)
    assert torch.equal(batch.image_features[0], feats) and not batch.image_features[1].any()
    assert collate([Example(tweets[0]), Example(tweets[1])]).image_features is None
    text_only = Collator(tokenizer, CatMnerConfig(text_encoder="tiny", variant="text"))
    assert text_only([Example(tweets[0], feats)]).image_features is None
    with pytest.raises(ValueError, match="image features of tweet"):
        collate([Example(tweets[0], feats), Example(tweets[1], torch.randn(16, 9))])


def test_spans_to_entities_end_exclusive():
    ents = spans_to_entities([0, 2], [1, 2], [1, 0], [0.9, 0.1])
    assert ents == [Entity(0, 2, "PER")] and ents[0].score == pytest.approx(0.9)
