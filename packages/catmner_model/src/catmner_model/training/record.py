"""The run record: the one JSON document a finished run writes to ``OUTPUT/run.json`` (and `train` returns):
schema, resolved configs, seed, metrics on valid and test, per-epoch log and timings, image and truncation
statistics, label words, data checksums, git commit, precision, environment."""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from typing import Any

from catmner_model.data import Tweet, resolve_data_dir
from catmner_model.provenance import environment_info, git_info
from catmner_model.training.config import TrainConfig

RUN_RECORD_SCHEMA = "catmner-run/1"


def run_record(
    config: TrainConfig,
    model_config: Any,
    splits: dict[str, list[Tweet]],
    data: dict[str, list[Tweet]] | None,
    *,
    best_epoch: int,
    metrics: dict[str, Any],
    log: list[dict[str, Any]],
    image_stats: dict[str, Any],
    truncated: dict[str, Any],
    label_words: Any | None,
    world_size: int,
    precision: str,
    model_dir: str,
) -> dict[str, Any]:
    """The run record of a finished run (key order is the record's: readers and diffs see it)."""
    return {
        "schema": RUN_RECORD_SCHEMA,
        "config": dataclasses.asdict(config),
        "model_config": dataclasses.asdict(model_config),
        "seed": config.seed,
        "dataset": config.dataset,
        "variant": config.variant,
        "n_tweets": {k: len(v) for k, v in splits.items()},
        "best_epoch": best_epoch,
        "metrics": metrics,
        "epochs": log,
        "seconds_per_epoch": [e["seconds"] for e in log],
        "train_seconds_per_epoch": [e["train_seconds"] for e in log],
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "image_stats": image_stats,
        "truncated": truncated,  # per split: tweets past max_length pieces and their words never predicted
        "label_words": _label_words_info(label_words),
        "data_checksums": _data_checksums(config, data),
        "git": git_info(),
        "world_size": world_size,
        "precision": precision,  # what "auto" meant on this hardware
        "model_dir": model_dir,
        **environment_info(),
    }


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB."""
    import resource

    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024.0 if sys.platform != "darwin" else kb / 2**20


def _label_words_info(lw: Any | None) -> dict[str, Any] | None:
    if lw is None:
        return None
    return {
        "source": getattr(lw, "source", None),
        "build_id": getattr(lw, "build_id", None),
        "checksum": getattr(lw, "checksum", None),
        "n_labels": len(lw.labels),
        "n_words": len(lw.words()),
    }


def _data_checksums(config: TrainConfig, data: dict[str, list[Tweet]] | None) -> dict[str, str | None]:
    """sha256 of each split file used (None for splits passed in memory)."""
    out: dict[str, str | None] = {}
    for split in ("train", "valid", "test"):
        if data and split in data:
            out[split] = None
            continue
        path = resolve_data_dir(config.data_dir) / config.dataset / f"{split}.txt"
        out[split] = hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None
    return out
