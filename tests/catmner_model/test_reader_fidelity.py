"""Tokens are what a reader sees, and lines are split where a reader sees a line break (issue 25): zero-width,
BOM and control characters never become or join tokens in the CoNLL, caption and PGIM readers, and every
reader splits lines on \\n (and \\r\\n) only, never at U+2028 / U+0085 / form feed as str.splitlines does."""

from __future__ import annotations

import zipfile

import pytest
from catmner_model.data import DataError, read_conll, split_lines, visible
from catmner_model.metrics import read_predictions, write_predictions
from catmner_model.visual import read_pgim
from catmner_model.visual_caption import read_captions


def test_split_lines_only_at_newline():
    assert split_lines("a\u2028b\x85c\x0cd\x1ce\r\nf\ng\n") == ["a\u2028b\x85c\x0cd\x1ce", "f", "g"]
    assert split_lines("") == [] and split_lines("\n") == [""]


def test_visible_drops_invisible_keeps_whitespace():
    assert visible("Obama\u200b Paris\ufeff \u200b Lon\u00addon\x07\u2028x") == "Obama Paris  London\u2028x"
    assert visible("plain text") == "plain text"


def test_conll_invisible_tokens_dropped_and_stripped(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes(
        "IMGID:1\nObama\u200b\tB-PER\n\u200b\tO\nvisits\tO\n\ufeffParis\tB-LOC\n\u00ad\tO\n\n".encode()
    )
    (tweet,) = read_conll(f)
    assert tweet.tokens == ["Obama", "visits", "Paris"]
    assert [(e.start, e.end, e.type) for e in tweet.entities] == [(0, 1, "PER"), (2, 3, "LOC")]


def test_conll_invisible_token_inside_an_entity_is_one_line(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes("IMGID:1\nNew\tB-LOC\n\u200b\tI-LOC\n".encode())
    with pytest.raises(DataError, match=r"x\.txt:3: empty token \(or only invisible characters\)"):
        read_conll(f)


def test_conll_line_separators_inside_a_token_are_not_line_breaks(tmp_path):
    f = tmp_path / "x.txt"
    f.write_bytes("IMGID:1\nab\tO\r\nc\x85d\tB-PER\ne\tO\n".encode())
    with pytest.raises(DataError, match=r"x\.txt:3: token 'c\\x85d' holds whitespace \(U\+0085\)"):
        read_conll(f)  # was: "x.txt:3: expected 'token<TAB>tag', got 1 column(s)" (the line split at U+0085)
    f.write_bytes("IMGID:1\nab\tO\r\nParis\tB-LOC\u2028\ne\tO\n".encode())
    (tweet,) = read_conll(f)  # a separator after the tag is trailing whitespace of the line
    assert tweet.tokens == ["ab", "Paris", "e"] and tweet.tags == ["O", "B-LOC", "O"]


def test_predictions_file_with_dropped_invisible_tokens_reads_back(tmp_path):
    gold = tmp_path / "gold.txt"
    gold.write_bytes("IMGID:1\nObama\tB-PER\n\u200b\tO\nParis\tB-LOC\n\nIMGID:2\nLondon\tB-LOC\n".encode())
    tweets = read_conll(gold)
    out = tmp_path / "pred.txt"
    write_predictions(out, tweets, [t.entities for t in tweets])
    back, preds = read_predictions(out)
    assert [t.tokens for t in back] == [["Obama", "Paris"], ["London"]]
    assert preds == [t.entities for t in tweets]
    # a file of the same shape still holding the invisible line (token, gold, pred) reads the same
    raw = tmp_path / "raw.txt"
    raw.write_bytes("IMGID:1\nObama\tB-PER\tB-PER\n\u200b\tO\tO\nParis\tB-LOC\tO\n".encode())
    _, preds = read_predictions(raw)
    assert [(e.start, e.end, e.type) for e in preds[0]] == [(0, 1, "PER")]


def test_captions_keep_u2028_inside_a_line(tmp_path):
    f = tmp_path / "c.txt"
    f.write_bytes(
        '1.jpg :a dog\u2028on a\u200b beach\n{"imgid": "2", "caption": "x\\u2028y\u0085z"}\n'.encode()
    )
    assert read_captions(f) == {"1": "a dog on a beach", "2": "x y z"}


def test_pgim_tokens_read_as_the_conll_reader_reads_them(tmp_path):
    z = tmp_path / "k.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("train.txt", "Obama\u200b\tB-PER\n\u200b\tO\nParis\tB-LOC\n<EOS>\tX\nleader\tX\n\n")
    assert read_pgim(z, "train") == [(("Obama", "Paris"), ["leader"])]
