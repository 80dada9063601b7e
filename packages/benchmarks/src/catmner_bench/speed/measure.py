"""The speed experiment as one run: `run_speed_experiment` (skipped when the same run finished before) and
`measure`, which builds the systems, times their training steps in alternating rounds beside the matmul peak,
then the growth, prediction and start-up timings, and returns the run record with the figures in
``extra["speed"]`` (`checks` judges them against the issue's targets)."""

from __future__ import annotations

import dataclasses
import importlib
import math
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from catmner_bench.records import BenchRecord, Recipe, RunSpec, build_record, finished, write_record
from catmner_bench.speed.flops import Clock, count_flops, gemm_model_shapes, gemm_peak, precision_dtype
from catmner_bench.speed.growth import measure_growth
from catmner_bench.speed.hf_recipe import HFSystem
from catmner_bench.speed.prediction import measure_prediction, measure_startup
from catmner_bench.speed.sizes import DATASET, SIZES, SPEED_SCHEMA, SYSTEM_LABELS, TARGETS, SpeedSize
from catmner_bench.speed.systems import CatmnerSystem, Setting
from catmner_bench.speed.workload import quantile_batches


def load_label_words(ctx: Any, spec: str) -> Any:
    """The label words of ``spec`` (kb source, build id or JSON file), resolved as the trainer does."""
    from catmner_model import TrainConfig
    from catmner_model.training.inputs import load_label_words as resolve

    return resolve(TrainConfig(labels=spec, db=ctx.db, variant="cat"))


def speed_config(ctx: Any) -> dict[str, Any]:
    """The resolved config of the speed run (its run key): profile, encoders, sizes, threads, source commit."""
    from catmner_model.provenance import git_info

    p = ctx.profile
    git = git_info()
    cfg = {
        "kind": "speed",
        "profile": p.name,
        "text_encoder": p.text_encoder,
        "image_encoder": p.image_encoder,
        "labels": p.labels_textual,
        "batch_size": p.batch_size,
        "lr": p.lr,
        "encoder_lr": p.encoder_lr,
        "n_train": p.n_train,
        "n_eval": p.n_eval,
        "threads": p.num_threads,
        "size": dataclasses.asdict(SIZES[p.name]),
        "commit": git.get("commit"),
    }
    if git.get("dirty") is not False:  # uncommitted code: never "the same run" as an earlier one
        cfg["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return cfg


def run_speed_experiment(ctx: Any, recipe_of: Any) -> dict[str, Any]:
    """The `catmner-bench run speed` experiment: one record (skipped when the same run finished before);
    ``recipe_of(spec)``: its recipe facts (`catmner_bench.recipes.recipe_of`, passed in by the sweep)."""
    from catmner_bench.runner import log

    spec = RunSpec("speed", "speed", DATASET, DATASET, ctx.profile.seeds[0], speed_config(ctx))
    done = finished(ctx.output, spec)
    if done is not None:
        log(ctx, f"skip speed/{spec.run_id} (finished)")
        return {"experiment": "speed", "records": [done], "ran": 0, "skipped": 1, "output": str(ctx.output)}
    log(ctx, f"run  speed/{spec.run_id}")
    record = measure(ctx, spec, recipe_of(spec))
    write_record(ctx.output, record)
    s = record.extra["speed"]
    log(ctx, "done speed: " + "; ".join(f"{k} {'met' if v else 'missed'}" for k, v in s["checks"].items()))
    return {"experiment": "speed", "records": [record], "ran": 1, "skipped": 0, "output": str(ctx.output)}


# every catmner_model module a training run, its validation and a prediction execute
RUN_MODULES = (
    "catmner_model.training.loop",
    "catmner_model.evaluate",
    "catmner_model.metrics",
    "catmner_model.predict",
    "catmner_model.encoders",
    "catmner_model.feature_cache",
    "catmner_model.visual",
)


def preload() -> None:
    """Import every module of `RUN_MODULES` now (and what they import): a measurement that calls it first
    measures the code as it was when it started."""
    for name in RUN_MODULES:
        importlib.import_module(name)


def measure(ctx: Any, spec: RunSpec, recipe: Recipe, size: SpeedSize | None = None) -> BenchRecord:
    """Run every measurement and return the run record (see the package docstring), with its ``recipe``."""
    from catmner_model.precision import native_bf16
    from catmner_model.training.distributed import seed_everything

    from catmner_bench.records import environment
    from catmner_bench.runner import log
    from catmner_bench.tweets import describe

    t_start = time.perf_counter()
    # the code measured is the code at the start: record its git state and import every module now
    preload()
    environment()
    p = ctx.profile
    size = size or SIZES[p.name]
    if p.num_threads:
        torch.set_num_threads(p.num_threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    load_start = os.getloadavg()[0]
    full_train, train, test = read_tweets(ctx, size)
    lw = load_label_words(ctx, p.labels_textual)
    base_words = list(lw.words()) if hasattr(lw, "words") else list(lw)
    precisions = ["fp32"] + (["bf16"] if native_bf16(device) else [])

    steps_per_epoch = math.ceil(len(full_train) / p.batch_size)

    log(ctx, "speed: building the systems")
    seed_everything(p.seeds[0])
    systems: dict[str, Any] = {
        "lm-span": CatmnerSystem("lm-span", ctx, train, test, lw, device),
        "cat-caption": CatmnerSystem("cat-caption", ctx, train, test, lw, device),
        "cat-grid": CatmnerSystem("cat-grid", ctx, train, test, lw, device, fill_grid=True),
        "hf": HFSystem(ctx, train, device),
    }
    settings = timed_settings(systems, precisions, size)
    lengths, timed = epoch_sample(ctx, systems["cat-caption"], train, size)
    gemm, train_rows = time_training(ctx, systems, settings, timed, precisions, size, steps_per_epoch)

    log(ctx, "speed: cost growth")
    growth = measure_growth(ctx, systems["cat-caption"], train, lw, base_words, size, device)

    log(ctx, "speed: prediction")
    predict_rows, startup = time_prediction(ctx, systems, test, precisions, size)

    speed = {
        "schema": SPEED_SCHEMA,
        "conditions": conditions(device, load_start),
        "size": dataclasses.asdict(size),
        "epoch": {
            "dataset": DATASET,
            "train_tweets": len(full_train),
            "batch_size": p.batch_size,
            "steps": steps_per_epoch,
        },
        "timed_batches": timed_batches(timed["pieces"], lengths),
        "precisions": precisions,
        "gemm": gemm,
        "train": train_rows,
        "growth": growth,
        "predict": predict_rows,
        "startup": startup,
        "targets": TARGETS,
    }
    speed["checks"] = checks(speed)
    lw_info = {
        "source": getattr(lw, "source", None),
        "checksum": getattr(lw, "checksum", None),
        "n_words": len(base_words),
        "spec": p.labels_textual,
    }
    return build_record(
        spec,
        metrics={},
        data={"train": describe(train), "test": describe(test)},
        label_words=lw_info,
        wall_time_s=time.perf_counter() - t_start,
        recipe=recipe,
        extra={"command": ctx.command, "profile": p.to_json(), "speed": speed},
    )


def read_tweets(ctx: Any, size: SpeedSize) -> tuple[list[Any], list[Any], list[Any]]:
    """(the full Twitter-2015 training split, the profile's training subset, the test tweets predicted)."""
    from catmner_model import resolve_image_dir

    from catmner_bench.tweets import read_split, select

    full_train = read_split(DATASET, "train", ctx.data_dir)
    images = resolve_image_dir(ctx.image_dir, ctx.data_dir)
    train = select(full_train, DATASET, ctx.profile.n_train, images)
    test = read_split(DATASET, "test", ctx.data_dir)[: max(size.predict_tweets, size.single_tweets)]
    return full_train, train, test


def timed_settings(systems: dict[str, Any], precisions: list[str], size: SpeedSize) -> list[Setting]:
    """Every system at every precision, then CAT-MNER (caption, fp32) with each speed change undone."""
    settings = [Setting(s, prec) for prec in precisions for s in systems]
    if size.before_after:
        settings.append(Setting("cat-caption", "fp32", fused_adamw=False))
        settings.append(Setting("cat-caption", "fp32", batching="words"))
        settings.append(Setting("cat-caption", "fp32", packing=False))
    return settings


def epoch_sample(
    ctx: Any, cat: CatmnerSystem, train: list[Any], size: SpeedSize
) -> tuple[dict[str, list[int]], dict[str, list[list[int]]]]:
    """(tweet lengths, timed batches), each by batching ("pieces", "words"): the batches of a real epoch
    (seeded, length-bucketed as the trainer does: by word pieces; "words" as it did before) and a
    representative sample of them; every system steps through the same tweets."""
    from catmner_model.training.distributed import DistInfo
    from catmner_model.training.inputs import epoch_batches, example_lengths

    p = ctx.profile
    lengths = {
        "pieces": example_lengths(cat.train_examples, cat.collate),
        "words": [len(t.tokens) for t in train],
    }
    timed = {}
    for how, lens in lengths.items():
        epoch = epoch_batches(lens, p.batch_size, p.seeds[0], 0, DistInfo())
        timed[how] = quantile_batches(epoch, lens, size.train_batches)
    return lengths, timed


def time_prediction(
    ctx: Any, systems: dict[str, Any], test: list[Any], precisions: list[str], size: SpeedSize
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(prediction rows, start-up figures): the catmner systems are saved to a temporary folder and loaded
    from there, as a user loads them."""
    from catmner_bench.runner import log

    with tempfile.TemporaryDirectory(prefix="catmner-speed-") as tmp:
        model_dirs = {k: s.save(Path(tmp) / k) for k, s in systems.items() if isinstance(s, CatmnerSystem)}
        predict_rows = measure_prediction(ctx, systems, model_dirs, test, precisions, size)
        log(ctx, "speed: start-up of `catmner predict --text`")
        startup = measure_startup(model_dirs["cat-caption"], test[0], ctx, size.startup_runs)
    return predict_rows, startup


def time_training(
    ctx: Any,
    systems: dict[str, Any],
    settings: list[Setting],
    timed: dict[str, list[list[int]]],
    precisions: list[str],
    size: SpeedSize,
    steps_per_epoch: int,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(matmul peaks per precision, one training row per setting): the GEMM peak at the start, the FLOPs of a
    step, a warm-up step of every setting, ``size.rounds`` alternating rounds of the timed batches, the GEMM
    peak at the end and the matmul rate at the encoder's own shapes."""
    from catmner_bench.runner import log

    gemm = {
        prec: {"start": gemm_peak(size.gemm_n, size.gemm_reps, precision_dtype(prec))} for prec in precisions
    }

    # FLOPs per step (fp32 forward + backward; bf16 does the same operations)
    log(ctx, "speed: counting FLOPs")
    flops, padded = {}, {}
    for key, how in sorted({(s.system, s.batching) for s in settings}):  # (packing: the same FLOPs counted)
        system, batches = systems[key], timed[how]
        flops[(key, how)] = count_flops(
            lambda s=system, b=batches, k=key: s.train_steps(b, Setting(k, "fp32"))
        ) / len(batches)
        padded[(key, how)] = system.padded_tokens(batches)
    for s in settings:  # warm-up: one step of every setting (allocator, oneDNN primitives, autocast)
        systems[s.system].train_steps(timed[s.batching][:1], s)

    n_steps = size.train_batches
    log(ctx, f"speed: timing {len(settings)} settings x {size.rounds} rounds x {n_steps} steps")
    walls: dict[str, list[float]] = {s.name: [] for s in settings}
    cpus: dict[str, list[float]] = {s.name: [] for s in settings}
    losses: dict[str, float] = {}
    for r in range(size.rounds):
        order = settings[r % len(settings) :] + settings[: r % len(settings)]
        for s in order:
            batches = timed[s.batching]
            with Clock() as c:
                losses[s.name] = systems[s.system].train_steps(batches, s)
            walls[s.name].append(c.wall / len(batches))
            cpus[s.name].append(c.cpu / len(batches))
    for prec in precisions:
        gemm[prec]["end"] = gemm_peak(size.gemm_n, size.gemm_reps, precision_dtype(prec))
        gemm[prec]["gflops_best"] = max(gemm[prec][w]["gflops_best"] for w in ("start", "end"))
        gemm[prec]["gflops_per_cpu_s_best"] = max(
            gemm[prec][w]["gflops_per_cpu_s_best"] for w in ("start", "end")
        )

    enc_cfg = getattr(systems["cat-caption"].model.encoder, "config", None)
    if enc_cfg is not None and hasattr(enc_cfg, "intermediate_size"):  # the model's own matmul shapes
        m_rows = max(1, round(padded[("cat-caption", "pieces")][1]))  # real positions per step
        for prec in precisions:
            gemm[prec]["model_shapes"] = gemm_model_shapes(
                m_rows, enc_cfg.hidden_size, enc_cfg.intermediate_size, 20, precision_dtype(prec)
            )
    times = {"walls": walls, "cpus": cpus, "losses": losses, "flops": flops, "padded": padded}
    return gemm, [train_row(s, times, gemm, steps_per_epoch) for s in settings]


def train_row(
    s: Setting, times: dict[str, Any], gemm: dict[str, Any], steps_per_epoch: int
) -> dict[str, Any]:
    """The record row of one training setting from its per-round step times (``times``: walls, cpus, losses
    by setting name; flops, padded by (system, batching))."""
    walls, cpus = times["walls"], times["cpus"]
    hf_name = Setting("hf", s.precision).name
    ratios = [a / b for a, b in zip(walls[s.name], walls[hf_name], strict=True)]
    step = statistics.median(walls[s.name])
    step_cpu = statistics.median(cpus[s.name])
    f = times["flops"][(s.system, s.batching)]
    peak = gemm[s.precision]
    padded = times["padded"][(s.system, s.batching)]
    return {
        "system": s.system,
        "label": SYSTEM_LABELS[s.system],
        "precision": s.precision,
        "change": s.change,
        "optimizer": "AdamW (fused)" if s.fused_adamw else "AdamW (for-loop)",
        "batching": s.batching,
        "step_s": step,
        "step_s_rounds": walls[s.name],
        "step_cpu_s": step_cpu,
        "epoch_s": step * steps_per_epoch,
        "epoch_cpu_s": step_cpu * steps_per_epoch,
        "ratio_to_hf": statistics.median(ratios),
        "ratio_to_hf_rounds": ratios,
        "gflop_per_step": f / 1e9,
        "gflops": f / step / 1e9,
        "gflops_per_cpu_s": f / step_cpu / 1e9,
        "peak_fraction": f / step / 1e9 / peak["gflops_best"],
        "peak_fraction_cpu": (f / step_cpu / 1e9) / peak["gflops_per_cpu_s_best"],
        "padded_tokens_per_step": padded[0],
        "real_tokens_per_step": padded[1],
        "loss": times["losses"][s.name],
    }


def conditions(device: torch.device, load_start: float) -> dict[str, Any]:
    """The machine and its load during the run (the 1-minute load average at its start and now)."""
    from catmner_model.precision import cpu_flags, native_bf16

    flags = cpu_flags()
    return {
        "device": str(device),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "bf16_cpu_flags": sorted(f for f in flags if "bf16" in f),
        "native_bf16": native_bf16(device),
        "load_average_1m_start": load_start,
        "load_average_1m_end": os.getloadavg()[0],
        "python": platform.python_version(),
    }


def timed_batches(batches: list[list[int]], lengths: dict[str, list[int]]) -> dict[str, Any]:
    """How many tweets the timed batches hold, and their mean words and word pieces beside the epoch's."""
    return {
        "n": len(batches),
        "tweets": sum(len(b) for b in batches),
        "mean_words_timed": statistics.fmean(lengths["words"][i] for b in batches for i in b),
        "mean_words_epoch": statistics.fmean(lengths["words"]),
        "mean_pieces_timed": statistics.fmean(lengths["pieces"][i] for b in batches for i in b),
        "mean_pieces_epoch": statistics.fmean(lengths["pieces"]),
    }


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def checks(speed: dict[str, Any]) -> dict[str, bool | None]:
    """The issue's targets against this record (best precision of each figure; None when not measured)."""
    t = speed["targets"]
    cat = [r for r in speed["train"] if r["system"] == "cat-caption" and not r.get("change")]
    pred = [r for r in speed["predict"] if r["system"] == "cat-caption"]
    best_train = [r for r in speed["train"] if r["system"] == "cat-caption"]
    return {
        "cat_caption_epoch": min(r["epoch_s"] for r in cat) <= t["cat_caption_epoch_s_max"] if cat else None,
        "cat_caption_over_hf": min(r["ratio_to_hf"] for r in cat) <= t["cat_caption_over_hf_max"]
        if cat
        else None,
        "batched_throughput": max(r["batched_tweets_per_s"] for r in pred) >= t["batched_tweets_per_s_min"]
        if pred
        else None,
        "one_tweet_latency": min(r["one_tweet_ms_median"] for r in pred) <= t["one_tweet_ms_max"]
        if pred
        else None,
        "peak_fraction": max(r["peak_fraction"] for r in best_train) >= t["peak_fraction_min"]
        if best_train
        else None,
    }
