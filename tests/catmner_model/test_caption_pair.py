"""Caption (and PGIM knowledge) pieces as segment B of a sentence pair (caption_positions="pair"): positions
continue after the tweet's, token type B, the encoder's own embedding layer; the position table's end is
respected; models saved before the field existed load as "restart" and predict exactly as before.

Tiny random-init BERTs (MiniLM vocabulary), tweets made in memory, models saved to tmp_path.
"""

from __future__ import annotations

import json

import pytest
import torch
from catmner_model.batching import Example, pair_separator
from catmner_model.data import Tweet
from catmner_model.model import CatMner, create_model

WORDS = ["person", "city", "team"]


def tweet(text: str) -> Tweet:
    words = text.split()
    return Tweet("1", words, ["O"] * len(words), [])


def examples() -> list[Example]:
    grid = torch.linspace(-1, 1, 16 * 8).view(16, 8)
    return [
        Example(
            tweet("Kevin Durant plays in Oakland tonight"),
            grid,
            caption="a man playing basketball on a court",
        ),
        Example(tweet("RT @nba : what a game")),
        Example(
            tweet("Paris at night"), torch.linspace(1, -1, 16 * 8).view(16, 8), caption="a city at night"
        ),
    ]


class PositionLog:
    """Records the position ids each call of the encoder's position table gets."""

    def __init__(self, model: CatMner):
        self.calls: list[torch.Tensor] = []
        model.encoder.embeddings.position_embeddings.register_forward_hook(
            lambda _m, args, _out: self.calls.append(args[0].detach().clone())
        )

    def caption_call(self, batch_size: int) -> torch.Tensor:
        """The (B, L) position ids of the caption call (the text's and label words' calls are (1, n))."""
        (ids,) = [c for c in self.calls if c.shape[0] == batch_size]
        return ids


@pytest.mark.parametrize("visual", ["caption", "grid+caption"])
def test_a_caption_piece_never_gets_a_tweet_position(visual):
    torch.manual_seed(0)
    model = create_model("tiny", WORDS, variant="cat", visual=visual, image_feature_dim=8, gate_init_std=0.5)
    assert model.cfg.caption_positions == "pair"  # the default of new models
    model.eval()
    batch = model.collator()(examples())
    log = PositionLog(model)
    with torch.inference_mode():
        model(batch)
    pos = log.caption_call(len(batch))  # (B, L)
    n_text = batch.attention_mask.sum(1)  # real text tokens: [CLS] tweet [SEP]
    for b in range(len(batch)):
        real = batch.caption_mask[b] if batch.caption_mask is not None else torch.ones(1, dtype=torch.bool)
        real = real.clone()
        real[0] = True  # the first slot: the caption's first piece or the no-caption token
        got = pos[b, : len(real)][real]
        assert int(got.min()) == int(n_text[b]) > 0  # after the tweet's last position, never [CLS]'s 0
        assert torch.equal(got, n_text[b] + torch.arange(len(got)))  # consecutive, as segment B


def test_the_model_reads_tweet_and_caption_as_its_encoder_reads_the_pair():
    """MM over [tweet ; caption] with pair placement = the encoder itself over [CLS] tweet [SEP] caption [SEP]
    with token types 0/1 (joint softmax, no refinement): the text states agree."""
    torch.manual_seed(0)
    model = create_model("tiny", variant="mm", visual="caption").eval()
    collate = model.collator()
    for ex in (examples()[0], examples()[2]):
        batch = collate([ex])
        ids = torch.cat([batch.input_ids, batch.caption_ids], dim=1)  # (1, T + L)
        types = torch.cat([torch.zeros_like(batch.input_ids), torch.ones_like(batch.caption_ids)], dim=1)
        assert int(batch.caption_ids[0, -1]) == collate.pieces.sep_id
        with torch.inference_mode():
            ours, _ = model.encode(batch)
            theirs = model.encoder(input_ids=ids, token_type_ids=types).last_hidden_state
        T = batch.input_ids.shape[1]
        torch.testing.assert_close(ours, theirs[:, :T], atol=1e-5, rtol=1e-4)


def test_positions_stay_inside_the_table_when_tweet_and_caption_are_long():
    model = create_model("tiny", WORDS, variant="cat", visual="caption").eval()  # 128 position rows
    collate = model.collator()
    assert model.max_positions == 128
    assert collate.max_length == 128 - model.cfg.max_caption_pieces  # the caption's room is kept
    long = Example(tweet(" ".join(f"word{i}" for i in range(300))), caption=" ".join(["dog"] * 100))
    batch = collate([long, examples()[2]])
    assert batch.input_ids.shape[1] == collate.max_length and batch.stats["words_truncated"] > 0
    assert batch.caption_ids.shape[1] == model.cfg.max_caption_pieces
    log = PositionLog(model)
    with torch.inference_mode():
        model(batch)
    pos = log.caption_call(2)
    assert int(pos[0].max()) == 127  # the long tweet's caption ends on the table's last row
    # restart placement (old models) reserves nothing: the tweet keeps the whole max_length
    old = create_model("tiny", WORDS, variant="cat", visual="caption", caption_positions="restart")
    assert old.collator().max_length == 128
    with pytest.raises(ValueError, match="caption's room"):
        create_model("tiny", variant="mm", visual="caption", max_caption_pieces=127).collator()


def test_pair_separator_follows_the_tokenizers_pair_format(tmp_path):
    from transformers import RobertaTokenizerFast

    bert = create_model("tiny", variant="text").tokenizer
    assert pair_separator(bert) == []  # [CLS] A [SEP] B [SEP]: nothing more between the segments
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "a": 4, "Ġa": 5}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    roberta = RobertaTokenizerFast(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    assert pair_separator(roberta) == [2]  # <s> A </s></s> B </s>: one more </s> opens segment B


# golden logits of a seed-0 model computed by the code before caption_positions existed (commit d5f6760),
# every third value of logits[:, :3] and the sum over real spans
GOLDEN = {
    "caption": (
        [
            3.83746,
            -0.5982,
            0.05986,
            -0.26606,
            0.25079,
            3.94825,
            -0.35531,
            -0.00931,
            0.0137,
            0.3737,
            3.85582,
            -0.30723,
            0.27909,
            -0.00101,
            0.13655,
        ],
        204.7718,
    ),
    "grid+caption": (
        [
            3.4552,
            -0.11261,
            -0.39438,
            -0.0634,
            0.05093,
            3.68875,
            -0.11358,
            -0.54881,
            -0.29555,
            0.06253,
            3.80481,
            -0.06988,
            -0.29057,
            0.07824,
            0.28109,
        ],
        166.9351,
    ),
}


@pytest.mark.parametrize("visual", sorted(GOLDEN))
def test_an_old_model_loads_as_restart_and_predicts_as_before(tmp_path, visual):
    torch.manual_seed(0)
    model = create_model(
        "tiny",
        WORDS,
        variant="cat",
        visual=visual,
        image_feature_dim=8,
        gate_init_std=0.5,
        caption_positions="restart",
    )
    model.save_pretrained(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["config"].pop("caption_positions") == "restart"
    meta["config"].pop("softmax")
    meta["config"].pop("saliency_scale_init")
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))  # as saved before the fields existed
    loaded = CatMner.from_pretrained(tmp_path / "m")
    assert loaded.cfg.caption_positions == "restart" and loaded.cfg.softmax == "joint"
    batch = loaded.collator()(examples())
    with torch.inference_mode():
        logits = loaded(batch).logits
    values, total = GOLDEN[visual]
    torch.testing.assert_close(logits[:, :3].flatten()[::3], torch.tensor(values), atol=2e-4, rtol=0)
    assert float(logits[batch.span_mask].sum()) == pytest.approx(total, abs=5e-3)


def test_a_pair_model_saves_and_reloads_as_pair(tmp_path):
    torch.manual_seed(0)
    model = create_model("tiny", WORDS, variant="cat", visual="grid+caption", image_feature_dim=8).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = CatMner.from_pretrained(tmp_path / "m")
    assert loaded.cfg.caption_positions == "pair"
    batch = model.collator()(examples())
    with torch.inference_mode():
        torch.testing.assert_close(loaded(batch).logits, model(batch).logits)
