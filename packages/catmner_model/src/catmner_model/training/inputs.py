"""A run's inputs: the label words (through kb_expand), the splits (subsampled as configured), the visual
inputs of every tweet through the one `VisualSource` (grid features precomputed once, captions, PGIM
knowledge), and the seeded, length-bucketed batches of an epoch."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from catmner_model.data import Tweet, load_split, resolve_image_dir
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

    Grid: precompute the frozen grid features of every tweet image once (with ``finetune_image_encoder``
    there is no cache: the model encodes each batch's pixels itself). Caption: read the caption file. PGIM
    knowledge: align it to the tweets. Returns (source, examples per split, stats for the run log, the grid
    feature width F or None).
    """
    from catmner_model.visual import VisualSource, uses_caption, uses_grid

    visual = effective_visual(config)
    source = VisualSource(visual=visual, dataset=config.dataset)
    all_tweets = list({id(t): t for split in ("train", "valid", "test") for t in splits[split]}.values())
    use_grid = uses_grid(visual) and config.image_encoder not in ("none", "")
    stats: dict[str, Any] = {"visual": visual, "encoder": config.image_encoder if use_grid else None}
    feature_dim = _add_grid(config, source, all_tweets, info, progress, stats) if use_grid else None
    if uses_caption(visual):
        _add_captions(config, source, stats)
    if config.knowledge:
        _add_knowledge(config, source, splits, stats)
    examples = {split: source.examples(splits[split]) for split in ("train", "valid", "test")}
    if uses_caption(visual):
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


def _add_grid(
    config: TrainConfig,
    source: Any,
    all_tweets: list[Tweet],
    info: DistInfo,
    progress: bool,
    stats: dict[str, Any],
) -> int | None:
    """Give ``source`` the run's images (and the feature cache, precomputed once on rank 0, unless the image
    encoder is fine-tuned); image counts go into ``stats``. Returns the grid feature width F (None when
    fine-tuning: the model's own encoder decides it)."""
    from catmner_model.vision import FeatureCache, load_image_safely
    from catmner_model.visual import build_extractor, feature_cache_root

    feature_dim = None
    image_dir = resolve_image_dir(config.image_dir, config.data_dir)
    finetune = config.finetune_image_encoder
    extractor = None if finetune else build_extractor(config.image_encoder)
    source.image_dir, source.files = image_dir, finetune
    if extractor is not None:
        source.cache = FeatureCache(feature_cache_root(config.feature_cache), extractor, memory_items=2048)
        feature_dim = int(extractor.feature_dim)
    paths = source.image_paths(all_tweets)
    if source.cache is None:  # fine-tuning: decode each image once here, only to count the unusable ones
        n_unreadable = sum(1 for p in paths if not load_image_safely(p).ok) if info.is_main else None
    else:
        if info.is_main and paths:
            stats["precompute"] = source.cache.precompute(paths, progress=progress)
        barrier(info)
        n_unreadable = sum(1 for p in paths if source.cache.get(p) is None)
    stats.update(
        finetune=finetune,
        image_dir=str(image_dir) if image_dir else None,
        tweets=len(all_tweets),
        images_found=len(paths),
        tweets_without_image=len(all_tweets) - len({id(t) for t in all_tweets if source.image_paths([t])}),
        unreadable_images=n_unreadable,
    )
    return feature_dim


def _add_captions(config: TrainConfig, source: Any, stats: dict[str, Any]) -> None:
    """Give ``source`` the dataset's caption file (and the captioner for images without a caption)."""
    from catmner_model.visual import HFCaptioner, read_captions, resolve_captions

    if config.captions == "none":  # the caption path without content: every tweet gets the no-caption token
        source.captions = {}
        stats["caption_file"] = "none"
        return
    path = resolve_captions(config.dataset, config.captions, config.data_dir)
    source.captions = read_captions(path) if path is not None else {}
    if config.captioner:
        source.captioner = HFCaptioner(config.captioner)
        source.image_dir = source.image_dir or resolve_image_dir(config.image_dir, config.data_dir)
    stats["caption_file"] = str(path) if path is not None else None


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
