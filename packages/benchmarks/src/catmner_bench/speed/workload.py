"""The work that is timed: a representative sample of an epoch's batches (`quantile_batches`), tweets of a
given length (`synthetic_tweets`) and label-word sets of a given size (`label_word_set`) for the growth
timings."""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any


def quantile_batches(batches: Sequence[Sequence[int]], lengths: Sequence[int], k: int) -> list[list[int]]:
    """``k`` of an epoch's batches at evenly spaced quantiles of their total length (a representative sample)."""
    order = sorted(range(len(batches)), key=lambda b: (sum(lengths[i] for i in batches[b]), b))
    if k >= len(order):
        return [list(batches[b]) for b in order]
    picks = [order[min(len(order) - 1, int((j + 0.5) * len(order) / k))] for j in range(k)]
    return [list(batches[b]) for b in picks]


def frequent_words(tweets: Sequence[Any], exclude: set[str], n: int) -> list[str]:
    """The ``n`` most frequent alphabetic words (3+ letters, lower-cased) of ``tweets`` not in ``exclude``."""
    counts = collections.Counter(
        w.lower()
        for t in tweets
        for w in t.tokens
        if w.isalpha() and len(w) >= 3 and w.lower() not in exclude
    )
    return [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def label_word_set(base: Sequence[str], tweets: Sequence[Any], n: int) -> list[str]:
    """``n`` label words: the first of ``base``, then frequent training words (for the growth timing)."""
    words = list(dict.fromkeys(base))[:n]
    return words + frequent_words(tweets, set(words), n - len(words))


def synthetic_tweets(tweets: Sequence[Any], n_words: int, count: int) -> list[Any]:
    """``count`` tweets of exactly ``n_words`` real words (consecutive training tokens), no entities."""
    from catmner_model import Tweet

    stream = [w for t in tweets for w in t.tokens]
    out = []
    for i in range(count):
        start = (i * n_words) % max(1, len(stream) - n_words)
        words = stream[start : start + n_words]
        out.append(
            Tweet(imgid=tweets[i % len(tweets)].imgid, tokens=words, tags=["O"] * len(words), entities=[])
        )
    return out
