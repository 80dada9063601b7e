"""What an uncased encoder never sees: each word's original form, as features added to its first word piece.

This module owns the word-form features of `CatMnerConfig.case_features` and the character CNN that the
benchmarks' CNN-BiLSTM-CRF shares:

- ``shape``: one learned vector per word shape (lower, Title, ALLCAPS, mixed case, digits, @mention, #hashtag,
  URL, punctuation, ...), computed from the cased word;
- ``char``: a character CNN (Ma & Hovy 2016) over the cased word's characters (code points below 254, others
  one unknown id), max-pooled and projected to the encoder width.

Both are added to the input embedding of the word's first word piece, through projections initialised at zero,
so a fresh model computes exactly what the unmodified encoder does; they learn from the first step.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

CASE_FEATURES: tuple[str, ...] = ("none", "shape", "char", "shape+char")
SHAPES: tuple[str, ...] = (
    "pad",
    "lower",
    "title",
    "allcaps",
    "single-cap",
    "mixed-lower-first",
    "mixed-upper-first",
    "alnum",
    "digits",
    "mention",
    "hashtag-lower",
    "hashtag-cap",
    "url",
    "punct",
    "other",
)
SHAPE_INDEX = {s: i for i, s in enumerate(SHAPES)}
MAX_WORD_CHARS = 20  # characters of a word read by the char CNN (its first ones)
N_CHARS = 256  # char ids: 0 pad, 1 unknown (code point >= 254), else code point + 2


def word_shape(word: str) -> int:
    """The shape class of a cased word (index into SHAPES)."""
    low = word.lower()
    if low.startswith(("http://", "https://", "www.")):
        return SHAPE_INDEX["url"]
    if len(word) > 1 and word[0] == "@":
        return SHAPE_INDEX["mention"]
    if len(word) > 1 and word[0] == "#":
        return SHAPE_INDEX["hashtag-cap" if any(c.isupper() for c in word[1:]) else "hashtag-lower"]
    letters = [c for c in word if c.isalpha()]
    digits = any(c.isdigit() for c in word)
    if not letters:
        if digits:
            return SHAPE_INDEX["digits"]
        return SHAPE_INDEX["punct"] if all(not c.isalnum() for c in word) else SHAPE_INDEX["other"]
    if digits:
        return SHAPE_INDEX["alnum"]
    upper = [c.isupper() for c in letters]
    if all(upper):
        return SHAPE_INDEX["single-cap" if len(letters) == 1 else "allcaps"]
    if not any(upper):
        return SHAPE_INDEX["lower"]
    if upper[0] and not any(upper[1:]):
        return SHAPE_INDEX["title"]
    return SHAPE_INDEX["mixed-upper-first" if upper[0] else "mixed-lower-first"]


def char_ids(word: str, max_chars: int = MAX_WORD_CHARS) -> list[int]:
    """Character ids of a cased word (its first ``max_chars`` characters)."""
    return [ord(c) + 2 if ord(c) < N_CHARS - 2 else 1 for c in word[:max_chars]] or [1]


def word_form_tensors(
    words_per_tweet: Sequence[Sequence[str]], width: int, with_chars: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(B, W) shape ids (0 = padding) and, if asked, (B, W, L) char ids of the kept words of each tweet."""
    B = len(words_per_tweet)
    shapes = torch.zeros((B, width), dtype=torch.long)
    chars = None
    if with_chars:
        L = max([len(char_ids(w)) for ws in words_per_tweet for w in ws] or [1])
        chars = torch.zeros((B, width, L), dtype=torch.long)
    for b, words in enumerate(words_per_tweet):
        for i, w in enumerate(words):
            shapes[b, i] = word_shape(w)
            if chars is not None:
                ids = char_ids(w)
                chars[b, i, : len(ids)] = torch.tensor(ids)
    return shapes, chars


class CharCNN(nn.Module):
    """Characters of each word -> max-pooled CNN features (Ma & Hovy 2016): embedding, one convolution of
    width 3, max over the word's characters (padding excluded)."""

    def __init__(self, n_chars: int, char_dim: int, filters: int, dropout: float) -> None:
        super().__init__()
        self.emb = nn.Embedding(n_chars, char_dim, padding_idx=0)
        self.conv = nn.Conv1d(char_dim, filters, kernel_size=3, padding=1)
        self.drop = nn.Dropout(dropout)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:
        """chars (B, T, L) char ids -> (B, T, filters)."""
        B, T, L = chars.shape
        x = self.drop(self.emb(chars.view(B * T, L)))  # (B*T, L, char_dim)
        h = self.conv(x.transpose(1, 2))  # (B*T, filters, L)
        h = h.masked_fill((chars.view(B * T, 1, L) == 0), -1e4)
        return h.max(dim=2).values.clamp_min(-1.0).view(B, T, -1)  # (B, T, filters)


class WordForm(nn.Module):
    """Word-form features -> (B, W, D) additions to the first word piece of each word (zero at init)."""

    def __init__(self, kind: str, width: int, dropout: float, char_dim: int = 30, filters: int = 50) -> None:
        super().__init__()
        if kind not in CASE_FEATURES or kind == "none":
            raise ValueError(f"case_features must be one of {', '.join(CASE_FEATURES[1:])}, got {kind!r}")
        parts = kind.split("+")
        self.shape = nn.Embedding(len(SHAPES), width, padding_idx=0) if "shape" in parts else None
        if self.shape is not None:
            nn.init.zeros_(self.shape.weight)
        self.chars = CharCNN(N_CHARS, char_dim, filters, dropout) if "char" in parts else None
        self.char_proj = nn.Linear(filters, width) if self.chars is not None else None
        if self.char_proj is not None:
            nn.init.zeros_(self.char_proj.weight)
            nn.init.zeros_(self.char_proj.bias)

    def forward(self, shapes: torch.Tensor, chars: torch.Tensor | None) -> torch.Tensor:
        """shapes (B, W), chars (B, W, L) or None -> (B, W, D), zero at padding words."""
        out = 0
        if self.shape is not None:
            out = out + self.shape(shapes)
        if self.chars is not None and chars is not None:
            out = out + self.char_proj(self.chars(chars))
        return out * (shapes != 0)[..., None].to(torch.float32)
