"""Speed and memory benchmark of training and prediction (`catmner bench-speed`).

Per variant (default TEXT and CAT) it runs the real `train()` for one epoch on a random subset of the training
split and extrapolates the training-pass time linearly to the full split (the per-step cost does not depend on
the subset: batches are length-bucketed the same way). With the CAT model it then times prediction one tweet
at a time and batched, on test tweets with cached or absent images. Peak resident memory is the process
maximum over everything above. The record is JSON (config, hardware, git commit, figures, targets).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from catmner_model.atomic import atomic_write_json
from catmner_model.provenance import environment_info, git_info

# the targets on a 2-core CPU machine
TARGETS = {
    "epoch_seconds_max": 240.0,
    "cat_over_text_max": 1.25,
    "peak_rss_mib_max": 4096.0,
    "predict_ms_per_tweet_max": 50.0,
    "batched_tweets_per_s_min": 100.0,
}


@dataclass
class BenchConfig:
    """What `bench_speed` measures and on which data."""

    dataset: str = "twitter2015"  # benchmark whose training split is timed
    labels: str | None = "textual"  # label words (source, build id or JSON file)
    db: str | None = None  # kb store for `labels`
    text_encoder: str | None = None  # None: offline MiniLM default
    image_encoder: str = "efficientnet-lite0"  # frozen grid-feature encoder
    variants: list[str] = field(
        default_factory=lambda: ["text", "cat"]
    )  # variants to time (cat last for predict)
    max_train: int = 400  # training tweets timed per variant, extrapolated to the full split
    max_eval: int = 100  # validation/test tweets scored inside the timed runs
    n_predict: int = 200  # test tweets for the prediction timings
    batch_size: int = 16  # training batch size
    predict_batch_size: int = 32  # batched prediction size (predict.PREDICT_BATCH_SIZE)
    seed: int = 42  # seed of the subset and the runs
    data_dir: str | None = None  # data folder (default $CATMNER_DATA)
    image_dir: str | None = None  # image folder (default $CATMNER_IMAGES or data_dir/tweet_images)
    output: str | None = None  # JSON record path (None: not written)
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    quiet: bool = False  # no progress bars


def bench_speed(config: BenchConfig) -> dict[str, Any]:
    """Run the benchmark and return its record (also written to ``config.output`` when set)."""
    from catmner_model.data import load_split, resolve_image_dir
    from catmner_model.predict import Predictor
    from catmner_model.train import (
        TrainConfig,
        peak_rss_mib,
        train,
    )

    if config.num_threads:
        torch.set_num_threads(config.num_threads)
    n_full = len(load_split(config.dataset, "train", config.data_dir))
    figures: dict[str, Any] = {"variants": {}}
    with tempfile.TemporaryDirectory(prefix="catmner-bench-") as tmp:
        model_dir = None
        for variant in config.variants:
            run_dir = Path(tmp) / variant
            tc = TrainConfig(
                dataset=config.dataset,
                labels=config.labels if variant in ("cat", "i2t", "t2i") else None,
                db=config.db,
                text_encoder=config.text_encoder,
                image_encoder=config.image_encoder,
                variant=variant,
                epochs=1,
                batch_size=config.batch_size,
                seed=config.seed,
                max_train=config.max_train,
                max_eval=config.max_eval,
                data_dir=config.data_dir,
                image_dir=config.image_dir,
                output=str(run_dir),
                num_threads=config.num_threads,
                quiet=config.quiet,
            )
            t0 = time.perf_counter()
            record = train(tc)
            total = time.perf_counter() - t0
            epoch = record["epochs"][0]
            n = record["n_tweets"]["train"]
            per_tweet = epoch["train_seconds"] / n
            figures["variants"][variant] = {
                "train_tweets_timed": n,
                "train_pass_seconds": epoch["train_seconds"],
                "seconds_per_tweet": per_tweet,
                "full_epoch_train_seconds_extrapolated": per_tweet * n_full,
                "train_pass_cpu_seconds": epoch["train_cpu_seconds"],
                "full_epoch_train_cpu_seconds_extrapolated": epoch["train_cpu_seconds"] / n * n_full,
                "valid_seconds_for_n": epoch["seconds"] - epoch["train_seconds"],
                "valid_tweets": record["n_tweets"]["valid"],
                "run_seconds_total": total,
                "image_stats": record["image_stats"],
            }
            model_dir = record["model_dir"]
        if "text" in figures["variants"] and "cat" in figures["variants"]:
            v = figures["variants"]
            figures["cat_over_text"] = v["cat"]["seconds_per_tweet"] / v["text"]["seconds_per_tweet"]
        if model_dir is not None:
            figures["predict"] = _time_prediction(
                Predictor(model_dir, device="cpu"), config, resolve_image_dir
            )
    figures["full_train_tweets"] = n_full
    figures["peak_rss_mib"] = peak_rss_mib()
    figures["load_average_1m_at_end"] = os.getloadavg()[0]  # other work on the machine skews wall times
    record = {
        "schema": "catmner-bench-speed/1",
        "config": dataclasses.asdict(config),
        "figures": figures,
        "targets": TARGETS,
        "checks": _checks(figures),
        "git": git_info(),
        **environment_info(),
    }
    if config.output:
        atomic_write_json(Path(config.output), record)
    return record


def _time_prediction(predictor: Any, config: BenchConfig, resolve_image_dir: Any) -> dict[str, Any]:
    """Latency one tweet at a time (features from the cache when the tweet has an image) and batched throughput."""
    from catmner_model.data import image_path, load_split
    from catmner_model.predict import PredictInput

    tweets = load_split(config.dataset, "test", config.data_dir)[: config.n_predict]
    images = resolve_image_dir(config.image_dir, config.data_dir)
    inputs = []
    for t in tweets:
        p = image_path(config.dataset, t.imgid, images, t.where) if images is not None else None
        inputs.append(PredictInput(tokens=t.tokens, image=str(p) if p else None))
    predictor.predict(inputs[:4])  # warm-up (lazy init, allocator)
    lat = []
    c0 = time.process_time()
    for item in inputs:
        t0 = time.perf_counter()
        predictor.predict([item])
        lat.append(time.perf_counter() - t0)
    one_cpu = time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    predictor.predict(inputs, batch_size=config.predict_batch_size)
    batched = time.perf_counter() - t0
    batched_cpu = time.process_time() - c0
    return {
        "tweets": len(inputs),
        "with_image": sum(1 for i in inputs if i.image),
        "one_at_a_time_ms_mean": 1000 * statistics.fmean(lat),
        "one_at_a_time_ms_median": 1000 * statistics.median(lat),
        "one_at_a_time_ms_p95": 1000 * sorted(lat)[int(0.95 * (len(lat) - 1))],
        "one_at_a_time_cpu_ms_mean": 1000 * one_cpu / len(inputs),
        "batched_tweets_per_s": len(inputs) / batched,
        "batched_tweets_per_cpu_s": len(inputs) / batched_cpu,
        "batch_size": config.predict_batch_size,
    }


def _checks(f: dict[str, Any]) -> dict[str, bool | None]:
    v = f["variants"]
    cat = v.get("cat", {}).get("full_epoch_train_seconds_extrapolated")
    pred = f.get("predict", {})
    return {
        "epoch_seconds": None if cat is None else cat <= TARGETS["epoch_seconds_max"],
        "cat_over_text": None
        if "cat_over_text" not in f
        else f["cat_over_text"] <= TARGETS["cat_over_text_max"],
        "peak_rss": f["peak_rss_mib"] < TARGETS["peak_rss_mib_max"],
        "predict_latency": None
        if not pred
        else pred["one_at_a_time_ms_mean"] <= TARGETS["predict_ms_per_tweet_max"],
        "batched_throughput": None
        if not pred
        else pred["batched_tweets_per_s"] >= TARGETS["batched_tweets_per_s_min"],
    }


def format_bench(record: dict[str, Any]) -> str:
    """Human summary of a bench-speed record."""
    f = record["figures"]
    lines = []
    for name, v in f["variants"].items():
        lines.append(
            f"{name:>5}: {v['train_pass_seconds']:.1f}s for {v['train_tweets_timed']} tweets -> "
            f"{v['full_epoch_train_seconds_extrapolated']:.0f}s per {f['full_train_tweets']}-tweet epoch "
            f"(CPU {v['full_epoch_train_cpu_seconds_extrapolated']:.0f} s; + validation "
            f"{v['valid_seconds_for_n']:.1f}s for {v['valid_tweets']} tweets)"
        )
    if "cat_over_text" in f:
        lines.append(f"cat / text per epoch: {f['cat_over_text']:.3f}")
    if "predict" in f:
        p = f["predict"]
        lines.append(
            f"predict: {p['one_at_a_time_ms_mean']:.1f} ms/tweet one at a time (median "
            f"{p['one_at_a_time_ms_median']:.1f}), {p['batched_tweets_per_s']:.0f} tweets/s batched"
        )
    lines.append(
        f"peak RSS: {f['peak_rss_mib']:.0f} MiB; load average at end {f['load_average_1m_at_end']:.1f}"
    )
    lines.append(
        "checks: "
        + ", ".join(
            f"{k}={'ok' if v else ('n/a' if v is None else 'MISSED')}" for k, v in record["checks"].items()
        )
    )
    return "\n".join(lines)
