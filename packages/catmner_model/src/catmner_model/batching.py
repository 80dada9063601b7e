"""Turning tweets (+ optional image grid features) into padded model batches.

This module owns: the `Example` the model consumes, word-piece tokenization with the index of the first subword
of every word, the truncation policy for long tweets, span enumeration (all spans up to ``max_span_len`` words)
and the gold label of every span, padded to the batch's own length (never a fixed 128).

Letters in shape comments: B batch, T text tokens, I visual tokens, S spans, F image feature width.

Truncation policy (one rule, applied to every tweet): each word keeps at most ``max_word_pieces`` word pieces
(its first pieces; the first one is what the span head reads), a URL (``http://``, ``https://``, ``www.``) at
most ``max_url_pieces`` (a ``http://t.co/...`` link is ~16 pieces of noise and a third of all Twitter-2015
tokens; no entity word has more than 6 pieces in Twitter-2015/2017); then whole words are kept in order while
``[CLS] + pieces + [SEP]`` fits ``max_length`` tokens. Dropped words get no span, so they are never predicted;
gold entities touching them are counted in ``Batch.stats["gold_truncated"]``. Gold entities longer than
``max_span_len`` words cannot be represented by any span; they are counted in ``Batch.stats["gold_too_long"]``.
Words that tokenize to nothing (control characters, U+FE0F ...) are encoded as the unknown token so every word
has a first subword.

Second segments (caption_positions="pair"): a caption (and PGIM's knowledge) is segment B of a sentence pair,
opened by the encoder's pair separator (`pair_separator`) and closed by [SEP]; its positions continue after the
text's. So that every caption piece has a row in the encoder's position table, the text (tweet and knowledge)
is capped at ``min(model_max_length, position rows) - (pair separator + max_caption_pieces)`` tokens: the tweet
is truncated by the rule above within that cap, the knowledge fills what is left. With "restart" (models saved
before the field) nothing is reserved and the caption has its own positions.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from catmner_model.data import LABELS, Entity, Tweet
from catmner_model.errors import CatmnerError
from catmner_model.visual_sources import kinds

if TYPE_CHECKING:  # pragma: no cover
    from catmner_model.config import CatMnerConfig

LABEL_INDEX: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
IGNORE_INDEX = -100  # label of padding spans (ignored by the loss)
URL_RE = re.compile(r"^(https?://|www\.)", re.IGNORECASE)


@dataclass
class Example:
    """One model input: a tweet (only ``tokens`` and, for training, ``entities`` are read) and its image."""

    tweet: Tweet  # the words; gold entities when training/evaluating
    image_features: torch.Tensor | None = None  # (I, F) frozen grid features, None = no/unreadable image
    image_file: str | None = None  # the image file, read at collation by models that fine-tune their encoder
    caption: str | None = None  # the caption of the tweet's image (caption visual source), None = none
    visual: dict[str, Any] = field(default_factory=dict)  # inputs of other visual sources, by source name
    context: list[str] | None = None  # words of a second text segment after the tweet (PGIM knowledge)


@dataclass
class Batch:
    """A padded batch. Text is padded to the longest tweet of the batch, spans to the most spans of the batch.

    ``image_features`` is None when no example of the batch has an image (then the model uses only the
    learned no-image token, so an image-less batch costs one visual token, not 16). A model that fine-tunes
    its image encoder gets ``image_pixels`` (the encoder input of each grid cell) instead of features.
    """

    input_ids: torch.Tensor  # (B, T) word-piece ids: [CLS] pieces [SEP] pad...
    attention_mask: torch.Tensor  # (B, T) bool, True for real tokens
    word_index: torch.Tensor  # (B, W) token position of the first subword of each kept word (0 for padding)
    word_mask: torch.Tensor  # (B, W) bool, True for kept words
    span_start: torch.Tensor  # (B, S) first word of each span
    span_end: torch.Tensor  # (B, S) last word of each span (INCLUSIVE)
    span_mask: torch.Tensor  # (B, S) bool, True for real spans
    span_labels: torch.Tensor  # (B, S) index into LABELS, IGNORE_INDEX for padding spans
    image_features: torch.Tensor | None  # (B, I, F) or None when no example has an image
    image_mask: torch.Tensor  # (B,) bool, True where the example has image features
    tweets: list[Tweet] = field(default_factory=list)  # the source tweets, in batch order
    n_words: list[int] = field(default_factory=list)  # words kept per tweet after truncation
    stats: dict[str, int] = field(default_factory=dict)  # counters (see module docstring)
    image_pixels: torch.Tensor | None = None  # (B, I, 3, S, S) grid-cell pixels (fine-tuned image encoder)
    caption_ids: torch.Tensor | None = None  # (B, Lc) caption word pieces (caption source), None: no caption
    caption_mask: torch.Tensor | None = None  # (B, Lc) bool, True for real caption pieces
    token_type_ids: torch.Tensor | None = None  # (B, T) 1 on the second text segment, None without one
    word_shapes: torch.Tensor | None = None  # (B, W) shape id of each kept cased word (case_features)
    word_chars: torch.Tensor | None = None  # (B, W, L) char ids of each kept cased word (char features)
    visual: dict[str, Any] = field(default_factory=dict)  # pieces of other visual sources, by source name

    def __len__(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> Batch:
        """Move every tensor to ``device`` (returns a new Batch; metadata is shared)."""

        def move(x: Any) -> Any:
            if isinstance(x, torch.Tensor):
                return x.to(device, non_blocking=True)
            if isinstance(x, tuple):
                return tuple(move(v) for v in x)
            if isinstance(x, dict):
                return {k: move(v) for k, v in x.items()}
            return x

        return Batch(**{name: move(getattr(self, name)) for name in self.__dataclass_fields__})


_SPAN_CACHE: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}


def enumerate_spans(n_words: int, max_span_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All spans of 1..max_span_len words of a ``n_words``-word text, ordered by start then length.

    Returns (start, end) with ``end`` INCLUSIVE, each (S,) long; S = 0 for an empty text.
    """
    key = (n_words, max_span_len)
    if key not in _SPAN_CACHE:
        start = torch.arange(n_words).unsqueeze(1)  # (W, 1)
        end = start + torch.arange(max_span_len).unsqueeze(0)  # (W, K)
        valid = end < n_words
        _SPAN_CACHE[key] = (start.expand_as(end)[valid].contiguous(), end[valid].contiguous())
    return _SPAN_CACHE[key]


def span_index(start: int, end_inclusive: int, n_words: int, max_span_len: int) -> int:
    """Position of span (start, end_inclusive) in `enumerate_spans(n_words, max_span_len)` order."""
    # spans starting before `start`: for each s < start, min(K, n - s) spans
    before = sum(min(max_span_len, n_words - s) for s in range(start))
    return before + (end_inclusive - start)


def _special_ids(tokenizer: Any) -> tuple[int, int, int, int]:
    """(cls, sep, pad, unk) ids; RoBERTa-style tokenizers use bos/eos as cls/sep."""
    cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    unk_id = tokenizer.unk_token_id if tokenizer.unk_token_id is not None else pad_id
    if cls_id is None or sep_id is None:
        raise ValueError(f"tokenizer {type(tokenizer).__name__} has no CLS/BOS or SEP/EOS token")
    return int(cls_id), int(sep_id), int(pad_id), int(unk_id)


class WordPieces:
    """Word -> word-piece ids, cached. Space-sensitive (byte-level BPE) tokenizers get a leading space, as a
    word inside a sentence would; words that tokenize to nothing become the unknown token."""

    def __init__(self, tokenizer: Any, max_word_pieces: int | None = None, max_url_pieces: int | None = None):
        self.tokenizer = tokenizer
        self.max_word_pieces = max_word_pieces
        self.max_url_pieces = max_url_pieces
        self.cls_id, self.sep_id, self.pad_id, self.unk_id = _special_ids(tokenizer)
        probe = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("hello", " hello")]
        self.prefix = " " if probe[0] != probe[1] else ""
        self._cache: dict[str, list[int]] = {}

    def __call__(self, words: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each word (each list non-empty, at most ``max_word_pieces`` long)."""
        missing = list(dict.fromkeys(w for w in words if w not in self._cache))
        if missing:
            encoded = self.tokenizer([self.prefix + w for w in missing], add_special_tokens=False)[
                "input_ids"
            ]
            for w, ids in zip(missing, encoded, strict=True):
                cap = self.max_url_pieces if self.max_url_pieces and URL_RE.match(w) else self.max_word_pieces
                ids = list(ids)[:cap] if cap else list(ids)
                self._cache[w] = ids or [self.unk_id]
        return [self._cache[w] for w in words]


def pair_separator(tokenizer: Any) -> list[int]:
    """The tokens a tokenizer's sentence-pair format puts between segment A's closing token and segment B
    (RoBERTa: one more </s>; BERT: none), read from the tokenizer's own encoding of a pair of unknown tokens."""
    unk = getattr(tokenizer, "unk_token", None)
    _, _, _, unk_id = _special_ids(tokenizer)
    if not unk:
        return []
    single, pair = tokenizer(unk)["input_ids"], tokenizer(unk, unk)["input_ids"]
    marks = [i for i, t in enumerate(pair) if t == unk_id]
    if len(marks) != 2 or single.count(unk_id) != 1:
        return []
    closing = single[single.index(unk_id) + 1 :]  # what closes segment A alone ([SEP])
    between = pair[marks[0] + 1 : marks[1]]  # what separates A from B ([SEP] or </s></s>)
    return between[len(closing) :] if between[: len(closing)] == closing else []


class Collator:
    """(list of Example) -> Batch, padded to the batch's own length.

    ``max_length`` (tokens incl. [CLS]/[SEP]) defaults to ``cfg.max_length`` capped by the tokenizer's
    ``model_max_length``; see the module docstring for the truncation policy. With ``image_cells`` (image
    file -> ``(I, 3, S, S)`` cell pixels or None when unusable) images are read from ``Example.image_file``
    into ``Batch.image_pixels``, for models that run their own image encoder.
    """

    def __init__(
        self,
        tokenizer: Any,
        cfg: CatMnerConfig,
        image_cells: Callable[[str], torch.Tensor | None] | None = None,
        max_positions: int | None = None,
    ):
        self.cfg = cfg
        self.image_cells = image_cells
        self.pieces = WordPieces(tokenizer, cfg.max_word_pieces, cfg.max_url_pieces)
        limit = getattr(tokenizer, "model_max_length", None) or 512
        limit = limit if limit < 100_000 else 512  # "very large" sentinel of tokenizers without a limit
        self.max_length = min(cfg.max_length or limit, limit)
        self.max_span_len = cfg.max_span_len
        self.kinds = kinds(cfg.visual)  # the visual sources: each collates its own batch pieces
        self.max_caption_pieces = cfg.max_caption_pieces
        self.use_context = cfg.text_context is not None
        self.max_context_pieces = cfg.max_context_pieces
        # caption_positions="pair": segment B pieces start with the encoder's pair separator (RoBERTa's extra
        # </s>; nothing for BERT), and the caption's positions continue after the text: the text keeps room
        # for the longest caption inside the encoder's position table (see the module docstring)
        self.pair = getattr(cfg, "caption_positions", "restart") == "pair"
        self.pair_prefix = pair_separator(tokenizer) if self.pair else []
        if self.pair:
            limit = min(limit, max_positions or limit)
            if cfg.uses_caption:
                limit -= len(self.pair_prefix) + self.max_caption_pieces
            self.max_length = min(self.max_length, limit)
        if self.max_length < 3:
            raise CatmnerError(
                f"max_length must be at least 3 tokens, got {self.max_length}"
                + (
                    " (after the caption's room in the position table)"
                    if self.pair and cfg.uses_caption
                    else ""
                )
            )
        self.limit = limit
        self.case_features = getattr(cfg, "case_features", "none")
        self._caption_cache: dict[str, list[int]] = {}

    def caption_pieces(self, caption: str) -> list[int]:
        """Word pieces of a caption, capped at ``max_caption_pieces`` - 1, then [SEP] (as segment B of a pair);
        with caption_positions="pair", after the encoder's pair separator (`pair_separator`)."""
        ids = self._caption_cache.get(caption)
        if ids is None:
            tok = self.pieces.tokenizer(caption, add_special_tokens=False)["input_ids"]
            ids = self.pair_prefix + list(tok)[: self.max_caption_pieces - 1] + [self.pieces.sep_id]
            self._caption_cache[caption] = ids
        return ids

    def context_pieces(self, words: Sequence[str], room: int) -> list[int]:
        """Word pieces of a second segment, at most ``min(max_context_pieces, room)`` including a final [SEP]
        (and, with caption_positions="pair", the encoder's pair separator before them)."""
        budget = min(self.max_context_pieces, room) - 1 - len(self.pair_prefix)
        if budget < 1 or not words:
            return []
        out: list[int] = []
        for word_ids in self.pieces(words):
            if len(out) + len(word_ids) > budget:
                break
            out.extend(word_ids)
        return self.pair_prefix + out + [self.pieces.sep_id] if out else []

    def encode_words(self, words: Sequence[str]) -> tuple[list[int], list[int]]:
        """Token ids ([CLS] pieces [SEP]) and the first-subword position of each KEPT word (truncation)."""
        ids = [self.pieces.cls_id]
        first: list[int] = []
        budget = self.max_length - 1  # room left for the final [SEP]
        for word_ids in self.pieces(words):
            if len(ids) + len(word_ids) > budget:
                break
            first.append(len(ids))
            ids.extend(word_ids)
        ids.append(self.pieces.sep_id)
        return ids, first

    def __call__(self, examples: Sequence[Example]) -> Batch:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        B = len(examples)
        encoded = [self.encode_words(ex.tweet.tokens) for ex in examples]
        n_first = [len(ids) for ids, _ in encoded]  # tokens of the tweet segment ([CLS] pieces [SEP])
        if self.use_context:
            encoded = [
                (ids + self.context_pieces(ex.context or [], self.limit - len(ids)), first)
                for ex, (ids, first) in zip(examples, encoded, strict=True)
            ]
        T = max(len(ids) for ids, _ in encoded)
        W = max(1, max(len(first) for _, first in encoded))
        input_ids = torch.full((B, T), self.pieces.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((B, T), dtype=torch.bool)
        word_index = torch.zeros((B, W), dtype=torch.long)
        word_mask = torch.zeros((B, W), dtype=torch.bool)
        spans = [enumerate_spans(len(first), self.max_span_len) for _, first in encoded]
        S = max(1, max(len(s) for s, _ in spans))
        span_start = torch.zeros((B, S), dtype=torch.long)
        span_end = torch.zeros((B, S), dtype=torch.long)
        span_mask = torch.zeros((B, S), dtype=torch.bool)
        span_labels = torch.full((B, S), IGNORE_INDEX, dtype=torch.long)
        stats = {"gold": 0, "gold_too_long": 0, "gold_truncated": 0, "words_truncated": 0, "spans": 0}
        for b, (ex, (ids, first), (start, end)) in enumerate(zip(examples, encoded, spans, strict=True)):
            n = len(first)
            input_ids[b, : len(ids)] = torch.tensor(ids)
            attention_mask[b, : len(ids)] = True
            word_index[b, :n] = torch.tensor(first, dtype=torch.long)
            word_mask[b, :n] = True
            s = len(start)
            span_start[b, :s], span_end[b, :s], span_mask[b, :s] = start, end, True
            span_labels[b, :s] = LABEL_INDEX["O"]
            stats["spans"] += s
            stats["words_truncated"] += len(ex.tweet.tokens) - n
            for ent in ex.tweet.entities:
                stats["gold"] += 1
                if ent.end > n:
                    stats["gold_truncated"] += 1
                elif ent.end - ent.start > self.max_span_len:
                    stats["gold_too_long"] += 1
                else:
                    idx = span_index(ent.start, ent.end - 1, n, self.max_span_len)
                    span_labels[b, idx] = LABEL_INDEX[ent.type]
        word_shapes = word_chars = None
        if self.case_features != "none":
            from catmner_model.wordform import word_form_tensors

            kept = [ex.tweet.tokens[: len(first)] for ex, (_, first) in zip(examples, encoded, strict=True)]
            word_shapes, word_chars = word_form_tensors(kept, W, "char" in self.case_features.split("+"))
        token_type_ids = None
        if self.use_context:
            token_type_ids = torch.zeros((B, T), dtype=torch.long)
            for b, ((ids, _), n0) in enumerate(zip(encoded, n_first, strict=True)):
                token_type_ids[b, n0 : len(ids)] = 1
        visual: dict[str, Any] = {}
        pieces: dict[str, Any] = {"image_mask": torch.zeros(B, dtype=torch.bool), "image_features": None}
        for kind in self.kinds:
            for key, value in kind.collate(self, examples).items():
                if key == "stats":
                    stats.update(value)
                elif key in Batch.__dataclass_fields__:
                    pieces[key] = value
                else:
                    visual[key] = value
        return Batch(
            input_ids=input_ids,
            attention_mask=attention_mask,
            word_index=word_index,
            word_mask=word_mask,
            span_start=span_start,
            span_end=span_end,
            span_mask=span_mask,
            span_labels=span_labels,
            tweets=[ex.tweet for ex in examples],
            n_words=[len(first) for _, first in encoded],
            stats=stats,
            token_type_ids=token_type_ids,
            word_shapes=word_shapes,
            word_chars=word_chars,
            visual=visual,
            **pieces,
        )


def to_device(batch: Any, device: torch.device | str) -> Any:
    """Move a Batch to ``device`` (its own ``.to`` if it has one)."""
    if torch.device(device).type == "cpu":
        return batch
    if hasattr(batch, "to"):
        return batch.to(device)
    if dataclasses.is_dataclass(batch):
        changes = {
            f.name: getattr(batch, f.name).to(device)
            for f in dataclasses.fields(batch)
            if isinstance(getattr(batch, f.name), torch.Tensor)
        }
        return dataclasses.replace(batch, **changes)
    return batch


def spans_to_entities(
    start: Sequence[int],
    end_inclusive: Sequence[int],
    labels: Sequence[int],
    scores: Sequence[float] | None = None,
) -> list[Entity]:
    """Spans with a non-O label -> Entities (end exclusive), in the given order."""
    out = []
    for i, (s, e, y) in enumerate(zip(start, end_inclusive, labels, strict=True)):
        if y > 0:
            out.append(
                Entity(int(s), int(e) + 1, LABELS[int(y)], None if scores is None else float(scores[i]))
            )
    return out
