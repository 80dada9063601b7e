"""The run record: `RunRecord`, the typed, versioned document a finished run writes to ``OUTPUT/run.json``
(and `train` returns as JSON): schema, resolved configs, seed, metrics on valid and test, per-epoch log and
timings, image and truncation statistics, label words, data checksums, git commit, precision, environment."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any

from catmner_model.data import Tweet, resolve_data_dir
from catmner_model.provenance import environment_info, git_info, sha256_file
from catmner_model.training.config import TrainConfig, TrainError

RUN_RECORD_SCHEMA = (
    "catmner-run/1"  # the schema and its version; bump the number when a field changes meaning
)


@dataclass
class RunRecord:
    """The run record of a finished training run, as `catmner train` writes it to ``OUTPUT/run.json``.

    `to_json` is the file's content (keys in this order); `from_json` reads it back (the benchmarks read the
    trainer's result through it). Metrics per split are ``{"lenient": ..., "strict": ...}`` as
    `catmner_model.metrics` computes them; `scores` names them as the benchmark records do.
    """

    config: dict[str, Any]  # the resolved TrainConfig
    model_config: dict[str, Any]  # the resolved CatMnerConfig of the saved model
    seed: int
    dataset: str
    variant: str
    n_tweets: dict[str, int]  # per split
    best_epoch: int  # the epoch whose model was kept (best validation F1)
    metrics: dict[str, Any]  # {"valid"|"test": {"lenient": ..., "strict": ...}} of the best model
    epochs: list[dict[str, Any]]  # the per-epoch log
    seconds_per_epoch: list[float]
    train_seconds_per_epoch: list[float]
    peak_rss_mib: float
    image_stats: dict[str, Any]
    truncated: dict[str, Any]  # per split: tweets past max_length pieces and their words never predicted
    label_words: dict[str, Any] | None  # source, build id, checksum, sizes (None: no label words)
    data_checksums: dict[str, str | None]  # sha256 of each split file (None: passed in memory)
    git: dict[str, Any]  # commit and dirty flag
    world_size: int
    precision: str | None  # what "auto" meant on this hardware
    model_dir: str
    packages: dict[str, Any]  # versions of the packages that produce the result
    hardware: dict[str, Any]
    # the refinement's vital signs (vitals.py) of the kept model on the first validation tweets, as measured
    # after its epoch's validation (every validated epoch has its own in ``epochs``); None: text variant / off
    vitals: dict[str, Any] | None = None
    # early stopping (TrainConfig.patience): the last epoch trained, and why, where the run ended before its
    # configured epochs; None: it trained them all
    stopped_epoch: int | None = None
    stop_reason: str | None = None
    schema: str = field(default=RUN_RECORD_SCHEMA)

    def to_json(self) -> dict[str, Any]:
        """The record as written to run.json: ``schema`` first, then the fields in order."""
        d = dataclasses.asdict(self)
        return {"schema": d.pop("schema"), **d}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        """A record read from run.json (fields a record of this schema lacks are None)."""
        if data.get("schema") != RUN_RECORD_SCHEMA:
            raise TrainError(
                f"not a catmner run record of schema {RUN_RECORD_SCHEMA} (schema {data.get('schema')!r})"
            )
        return cls(**{f.name: data.get(f.name) for f in dataclasses.fields(cls) if f.name != "schema"})

    def scores(self, split: str) -> dict[str, Any]:
        """``{"conlleval": ..., "strict": ...}`` of a split: the trainer's lenient F1 is conlleval's counting."""
        m = self.metrics[split]
        return {"conlleval": m.get("conlleval", m.get("lenient")), "strict": m["strict"]}


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
    vitals: dict[str, Any] | None = None,
    stopped_epoch: int | None = None,
    stop_reason: str | None = None,
) -> RunRecord:
    """The run record of a finished run."""
    return RunRecord(
        config=dataclasses.asdict(config),
        model_config=dataclasses.asdict(model_config),
        seed=config.seed,
        dataset=config.dataset,
        variant=config.variant,
        n_tweets={k: len(v) for k, v in splits.items()},
        best_epoch=best_epoch,
        metrics=metrics,
        epochs=log,
        seconds_per_epoch=[e["seconds"] for e in log],
        train_seconds_per_epoch=[e["train_seconds"] for e in log],
        peak_rss_mib=round(peak_rss_mib(), 1),
        image_stats=image_stats,
        truncated=truncated,
        label_words=_label_words_info(label_words),
        data_checksums=_data_checksums(config, data),
        git=git_info(),
        world_size=world_size,
        precision=precision,
        model_dir=model_dir,
        vitals=vitals,
        stopped_epoch=stopped_epoch,
        stop_reason=stop_reason,
        **environment_info(),
    )


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
        out[split] = sha256_file(path) if path.exists() else None
    return out
