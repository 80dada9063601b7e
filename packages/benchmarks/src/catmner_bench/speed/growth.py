"""Cost growth of CAT-MNER (caption, fp32): one training step's time against words per tweet, caption word
pieces and the number of label words, timed in alternating rounds (`measure_growth`)."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable
from typing import Any

from catmner_bench.speed.flops import Clock
from catmner_bench.speed.sizes import SpeedSize
from catmner_bench.speed.systems import CatmnerSystem, Setting
from catmner_bench.speed.workload import label_word_set, synthetic_tweets


def _time_points(points: list[tuple[Any, Callable[[], Any]]], reps: int) -> dict[Any, tuple[float, float]]:
    """Median (wall, process CPU) seconds of each point's step over ``reps`` alternating rounds (after one
    warm-up each)."""
    for _, fn in points:
        fn()
    times: dict[Any, list[tuple[float, float]]] = {key: [] for key, _ in points}
    for r in range(reps):
        for key, fn in points[r % len(points) :] + points[: r % len(points)]:
            with Clock() as c:
                fn()
            times[key].append((c.wall, c.cpu))
    return {
        key: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v))
        for key, v in times.items()
    }


def measure_growth(
    ctx: Any,
    cat: CatmnerSystem,
    train: list[Any],
    lw: Any,
    base_words: list[str],
    size: SpeedSize,
    device: Any,
) -> dict[str, list[dict[str, Any]]]:
    """CAT-MNER (caption, fp32) step time against words per tweet, caption pieces and label words."""
    from catmner_model import Example

    setting = Setting("cat-caption", "fp32")
    bs = ctx.profile.batch_size
    captions = [ex.caption for ex in cat.train_examples if ex.caption] or ["a photo"]
    out: dict[str, list[dict[str, Any]]] = {}

    # words per tweet (real captions)
    pts, info = [], {}
    for w in size.tweet_words:
        exs = [
            Example(tweet=t, caption=captions[i % len(captions)])
            for i, t in enumerate(synthetic_tweets(train, w, bs))
        ]
        b = cat.collate(exs)
        info[w] = {"words": w, "text_tokens": int(b.input_ids.shape[1])}
        pts.append((w, lambda exs=exs: cat.train_steps([list(range(len(exs)))], setting, exs)))
    for w, t in _time_points(pts, size.growth_reps).items():
        info[w]["step_s"], info[w]["step_cpu_s"] = t
    out["tweet_words"] = [info[w] for w in size.tweet_words]

    # caption word pieces (the first training tweets; captions long enough, cut at P pieces)
    longest = max(size.caption_pieces)
    long_caption = " ".join(captions[:40])
    cap_sys = CatmnerSystem(
        "cat-caption", ctx, train, [], lw, device, overrides={"max_caption_pieces": longest}
    )
    tweets = [cap_sys.train_examples[i].tweet for i in range(min(bs, len(cap_sys.train_examples)))]
    pts, info = [], {}
    for n in size.caption_pieces:
        collate = type(cap_sys.collate)(
            cap_sys.model.tokenizer, dataclasses.replace(cap_sys.model.cfg, max_caption_pieces=n)
        )
        exs = [Example(tweet=t, caption=long_caption) for t in tweets]
        info[n] = {"caption_pieces": n, "text_tokens": int(collate(exs).input_ids.shape[1])}

        def step(exs: list[Any] = exs, collate: Any = collate) -> Any:
            old = cap_sys.collate
            cap_sys.collate = collate
            try:
                return cap_sys.train_steps([list(range(len(exs)))], setting, exs)
            finally:
                cap_sys.collate = old

        pts.append((n, step))
    for n, t in _time_points(pts, size.growth_reps).items():
        info[n]["step_s"], info[n]["step_cpu_s"] = t
    out["caption_pieces"] = [info[n] for n in size.caption_pieces]

    # label words (same tweets and captions)
    pts, info, keep = [], {}, []
    exs = [Example(tweet=t, caption=captions[i % len(captions)]) for i, t in enumerate(tweets)]
    for c in size.label_words:
        words = label_word_set(base_words, train, c)
        system = CatmnerSystem("cat-caption", ctx, train[:1], [], words, device)
        keep.append(system)
        info[c] = {"label_words": len(words), "label_pieces": int(system.model.label_mask.sum())}
        pts.append((c, lambda s=system: s.train_steps([list(range(len(exs)))], setting, exs)))
    for c, t in _time_points(pts, size.growth_reps).items():
        info[c]["step_s"], info[c]["step_cpu_s"] = t
    out["label_words"] = [info[c] for c in size.label_words]
    return out
