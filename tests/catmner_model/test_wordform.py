"""Case-aware word features for uncased encoders: word shapes, the shared character CNN, zero-start, and that
the model then tells "Paris" from "paris" although the uncased tokenizer gives both the same pieces."""

from __future__ import annotations

import pytest
import torch
from catmner_model.batching import Example
from catmner_model.data import Tweet
from catmner_model.model import create_model
from catmner_model.wordform import SHAPES, CharCNN, char_ids, word_shape


@pytest.mark.parametrize(
    ("word", "shape"),
    [
        ("paris", "lower"),
        ("Paris", "title"),
        ("NASA", "allcaps"),
        ("I", "single-cap"),
        ("iPhone", "mixed-lower-first"),
        ("McDonald", "mixed-upper-first"),
        ("B2B", "alnum"),
        ("2017", "digits"),
        ("@nytimes", "mention"),
        ("#rip", "hashtag-lower"),
        ("#RIPKobe", "hashtag-cap"),
        ("http://t.co/x1", "url"),
        ("...", "punct"),
        ("@", "punct"),
    ],
)
def test_word_shapes(word, shape):
    assert SHAPES[word_shape(word)] == shape


def test_char_ids_keep_case_and_cap_length():
    assert char_ids("Ab") != char_ids("ab")
    assert len(char_ids("x" * 50)) == 20 and char_ids("😀") == [1]


def test_benchmarks_share_the_char_cnn():
    from catmner_bench import baselines

    assert baselines.CharCNN is CharCNN


def _tweet(words):
    return Tweet(imgid="1", tokens=words, tags=["O"] * len(words), entities=[])


@pytest.mark.parametrize("kind", ["shape", "char", "shape+char"])
def test_case_features_start_as_the_plain_model_then_see_case(kind):
    torch.manual_seed(0)
    plain = create_model("tiny", variant="text")
    cased = create_model("tiny", variant="text", case_features=kind)
    missing, unexpected = cased.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(k.startswith("word_form.") for k in missing) and not unexpected
    upper, lower = _tweet(["Obama", "visits", "Paris"]), _tweet(["obama", "visits", "paris"])
    b_up, b_low = cased.collator()([Example(upper)]), cased.collator()([Example(lower)])
    assert torch.equal(b_up.input_ids, b_low.input_ids)  # the uncased tokenizer cannot tell them apart
    plain.eval(), cased.eval()
    with torch.no_grad():
        assert torch.allclose(plain(b_up).logits, cased(b_up).logits, atol=1e-6)  # zero at the start
    cased.train()
    opt = torch.optim.SGD(cased.parameters(), lr=0.5)
    target = torch.zeros_like(b_up.span_labels)
    target[b_up.span_mask] = 0
    target[0, 0] = 1  # "Obama" is PER
    for _ in range(3):
        opt.zero_grad()
        cased(b_up, labels=target).loss.backward()
        opt.step()
    cased.eval()
    with torch.no_grad():
        assert not torch.allclose(cased(b_up).logits, cased(b_low).logits, atol=1e-4)
