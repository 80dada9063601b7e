"""A run's inputs: the label words (through kb_expand), the splits (subsampled as configured), the visual
inputs of every tweet through the one `VisualSource` (grid features precomputed once, captions, PGIM
knowledge), and the seeded, length-bucketed batches of an epoch."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from catmner_model.data import Tweet, load_split
from catmner_model.training.config import LABEL_WORD_VARIANTS, TrainConfig, TrainError, effective_visual
from catmner_model.training.distributed import DistInfo, barrier


def load_label_words(config: TrainConfig) -> Any | None:
    """The LabelWords of ``config.labels`` (None when the variant needs none and none were given)."""
    if config.labels is None or config.labels == "":
        if config.variant in LABEL_WORD_VARIANTS:
            raise TrainError(f"variant {config.variant!r} refines attention with label words: pass --labels")
        return None
    from kb_expand import load_label_words as kb_load

    lw = kb_load(config.labels, db=config.db)
    if not lw.words():
        raise TrainError(f"label-word set {config.labels!r} is empty: build or choose another one (--labels)")
    return lw


def _subsample(tweets: list[Tweet], n: int | None, seed: int) -> list[Tweet]:
    if n is None or n >= len(tweets):
        return tweets
    idx = sorted(random.Random(seed).sample(range(len(tweets)), n))
    return [tweets[i] for i in idx]


def load_splits(config: TrainConfig, data: dict[str, list[Tweet]] | None = None) -> dict[str, list[Tweet]]:
    """train / valid / test tweets of ``config.dataset`` (or the given ``data``), subsampled as configured."""
    splits: dict[str, list[Tweet]] = {}
    for split in ("train", "valid", "test"):
        tweets = (data or {}).get(split)
        if tweets is None:
            tweets = load_split(config.dataset, split, config.data_dir)
        splits[split] = list(tweets)
    splits["train"] = _subsample(splits["train"], config.max_train, config.seed)
    if config.max_eval is not None:
        splits["valid"] = splits["valid"][: config.max_eval]
        splits["test"] = splits["test"][: config.max_eval]
    for split, tweets in splits.items():
        empty = [t for t in tweets if not t.tokens]
        if empty:
            raise TrainError(f"{empty[0].path}:{empty[0].line}: empty tweet in the {split} split")
    if not splits["train"]:
        raise TrainError("no training tweets")
    return splits


def prepare_visual(
    config: TrainConfig, splits: dict[str, list[Tweet]], info: DistInfo, progress: bool
) -> tuple[Any, dict[str, list[Any]], dict[str, Any], int | None]:
    """The run's `VisualSource` and the model inputs of every split, built once.

    The source is `VisualSource.for_model` of the run's model config, as in evaluation and prediction. Grid:
    the frozen grid features of every tweet image are precomputed once (on rank 0) into the feature cache
    (with ``finetune_image_encoder`` there is none: the model encodes each batch's pixels itself). Caption: the
    caption file (and the captioner). PGIM knowledge: aligned to the tweets. Returns (source, examples per
    split, stats for the run log, the grid feature width F or None).
    """
    from catmner_model.feature_cache import FeatureCache, feature_cache_root
    from catmner_model.training.config import build_model_config
    from catmner_model.visual import VisualSource
    from catmner_model.visual_grid import build_extractor

    visual = effective_visual(config)
    all_tweets = list({id(t): t for split in ("train", "valid", "test") for t in splits[split]}.values())
    use_grid = "grid" in visual and config.image_encoder not in ("none", "")
    finetune = config.finetune_image_encoder
    extractor = build_extractor(config.image_encoder) if use_grid and not finetune else None
    feature_dim = int(extractor.feature_dim) if extractor is not None else None
    cache = None
    if extractor is not None:
        cache = FeatureCache(feature_cache_root(config.feature_cache), extractor, memory_items=2048)
    source = VisualSource.for_model(
        build_model_config(config, feature_dim),
        dataset=config.dataset,
        data_dir=config.data_dir,
        image_dir=config.image_dir,
        captions=config.captions,
        captioner=config.captioner,
        feature_cache=config.feature_cache,
        image_encoder=config.image_encoder if use_grid else None,
        finetune=finetune,
        cache=cache,
    )
    stats: dict[str, Any] = {"visual": source.visual, "encoder": config.image_encoder if use_grid else None}
    if use_grid:
        _grid_stats(source, all_tweets, info, progress, stats)
    if "caption" in visual:
        stats["caption_file"] = (
            "none" if config.captions == "none" else str(source.caption_file) if source.caption_file else None
        )
    if config.knowledge:
        _add_knowledge(config, source, splits, stats)
    examples = {split: source.examples(splits[split]) for split in ("train", "valid", "test")}
    if "caption" in visual:
        unique = {id(ex.tweet): ex for v in examples.values() for ex in v}.values()  # each tweet once
        n = len(unique)
        with_caption = sum(ex.caption is not None for ex in unique)
        stats.update(
            tweets=stats.get("tweets", len(all_tweets)),
            tweets_with_caption=with_caption,
            tweets_without_caption=n - with_caption,
            captioned_by_model=source.stats.captioned_by_model,
        )
    stats.setdefault("tweets", len(all_tweets))
    return source, examples, stats, feature_dim


def _grid_stats(
    source: Any, all_tweets: list[Tweet], info: DistInfo, progress: bool, stats: dict[str, Any]
) -> None:
    """Precompute the grid features of the run's images once (rank 0; none when the image encoder is
    fine-tuned) and put the image counts into ``stats``."""
    from catmner_model.images import load_image_safely

    paths = source.image_paths(all_tweets)
    if source.cache is None:  # fine-tuning: decode each image once here, only to count the unusable ones
        n_unreadable = sum(1 for p in paths if not load_image_safely(p).ok) if info.is_main else None
    else:
        if info.is_main and paths:
            stats["precompute"] = source.cache.precompute(paths, progress=progress)
        barrier(info)
        n_unreadable = sum(1 for p in paths if source.cache.get(p) is None)
    image_dir = source.image_dir
    stats.update(
        finetune=source.files,
        image_dir=str(image_dir) if image_dir else None,
        tweets=len(all_tweets),
        images_found=len(paths),
        tweets_without_image=len(all_tweets) - len({id(t) for t in all_tweets if source.image_paths([t])}),
        unreadable_images=n_unreadable,
    )


def _add_knowledge(
    config: TrainConfig, source: Any, splits: dict[str, list[Tweet]], stats: dict[str, Any]
) -> None:
    """Align PGIM's knowledge (the second text segment) to the tweets of every split."""
    from catmner_model.visual import read_pgim, resolve_pgim

    zpath = resolve_pgim(config.dataset, config.data_dir)
    stats["knowledge_file"] = str(zpath)
    missing = {}
    for split in ("train", "valid", "test"):
        missing[split] = source.add_knowledge(splits[split], read_pgim(zpath, split))
    stats["tweets_without_knowledge"] = missing


def epoch_batches(
    lengths: Sequence[int], batch_size: int, seed: int, epoch: int, info: DistInfo, bucket_size: int = 50
) -> list[list[int]]:
    """This rank's batches (lists of example indices) for one epoch.

    The epoch permutation comes from a DistributedSampler seeded with ``seed`` and ``epoch`` (identical on all
    ranks; each rank takes its shard, padded so that all ranks get the same number of examples). Within a
    rank, examples are cut into buckets of ``bucket_size`` batches, sorted by length inside a bucket (so a batch
    pads little) and the batches are shuffled with a generator seeded by (seed, epoch, rank).
    """
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(
        range(len(lengths)), num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    order = list(sampler)
    chunk = max(1, batch_size * bucket_size)
    batches: list[list[int]] = []
    for i in range(0, len(order), chunk):
        bucket = sorted(order[i : i + chunk], key=lambda j: lengths[j])
        batches.extend(bucket[k : k + batch_size] for k in range(0, len(bucket), batch_size))
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch * 1009 + info.rank)
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[p] for p in perm]


def example_lengths(examples: Sequence[Any], collate: Any) -> list[int]:
    """The text length of each example in word pieces (what a batch pads to; `epoch_batches` sorts by it).

    Word counts would pad a quarter of the text positions of Twitter-2015 batches (a URL is ~16 pieces, an
    emoji one); word pieces pad ~2%. A second text segment (PGIM knowledge) counts too."""
    out = []
    for ex in examples:
        ids, _ = collate.encode_words(ex.tweet.tokens)
        if getattr(collate, "use_context", False):
            ids = ids + collate.context_pieces(ex.context or [], collate.limit - len(ids))
        out.append(len(ids))
    return out
