"""Prediction timings: batched tweets/s and one-tweet latency of every system and precision in this warm
process (`measure_prediction`; catmner through `Predictor` on the saved model directory), and the start-up of
a fresh `catmner predict MODEL --text ...` process (`measure_startup`)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from catmner_bench.speed.flops import Clock
from catmner_bench.speed.sizes import DATASET, SYSTEM_LABELS, SpeedSize


def measure_prediction(
    ctx: Any,
    systems: dict[str, Any],
    model_dirs: dict[str, Path],
    test: list[Any],
    precisions: list[str],
    size: SpeedSize,
) -> list[dict[str, Any]]:
    """Batched tweets/s and one-tweet latency of every system and precision (wall and process CPU time),
    alternating over rounds. catmner: one `Predictor` per precision on the saved model directory."""
    from catmner_model import PREDICT_BATCH_SIZE, PredictInput, Predictor

    from catmner_bench.runner import log

    batched_tweets, single_tweets = test[: size.predict_tweets], test[: size.single_tweets]
    # (system, precision) -> (predict a list of tweets in batches, predict one tweet)
    runners: dict[tuple[str, str], tuple[Callable[[], Any], Callable[[int], Any]]] = {}
    files = _image_files(ctx)
    for key, path in model_dirs.items():
        system = systems[key]
        for prec in precisions:
            predictor = Predictor(path, device=system.device, feature_cache=ctx.feature_cache, precision=prec)
            inputs = []
            for i, t in enumerate(test):
                image = files[i % len(files)] if predictor.config.uses_grid and files else None
                caption = system.test_examples[i].caption
                inputs.append(PredictInput(tokens=list(t.tokens), image=image, caption=caption))

            def batched(pr: Any = predictor, inp: list[Any] = inputs) -> Any:
                _clear_caches(pr)
                return pr.predict(inp[: len(batched_tweets)], batch_size=PREDICT_BATCH_SIZE)

            def single(i: int, pr: Any = predictor, inp: list[Any] = inputs) -> Any:
                if i == 0:
                    _clear_caches(pr)
                return pr.predict([inp[i]])

            runners[(key, prec)] = (batched, single)
    hf = systems["hf"]
    for prec in precisions:
        runners[("hf", prec)] = (
            lambda prec=prec: hf.predict(batched_tweets, PREDICT_BATCH_SIZE, prec),
            lambda i, prec=prec: hf.predict([single_tweets[i]], 1, prec),
        )
    keys = [(k, prec) for prec in precisions for k in [*model_dirs, "hf"]]
    for k in keys:  # warm-up
        runners[k][0]()
        runners[k][1](0)
    rates: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in keys}
    lat: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in keys}
    for r in range(size.predict_rounds):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            with Clock() as c:
                runners[k][0]()
            rates[k].append((len(batched_tweets) / c.wall, len(batched_tweets) / max(c.cpu, 1e-9)))
            for i in range(len(single_tweets)):
                with Clock() as c:
                    runners[k][1](i)
                lat[k].append((c.wall, c.cpu))
        log(ctx, f"speed: prediction round {r + 1}/{size.predict_rounds}")
    rows = []
    for k, prec in keys:
        ms = sorted(1000 * w for w, _ in lat[(k, prec)])
        rows.append(
            {
                "system": k,
                "label": SYSTEM_LABELS[k],
                "precision": prec,
                "batched_tweets_per_s": statistics.median(w for w, _ in rates[(k, prec)]),
                "batched_tweets_per_cpu_s": statistics.median(c for _, c in rates[(k, prec)]),
                "batched_tweets": len(batched_tweets),
                "batch_size": PREDICT_BATCH_SIZE,
                "one_tweet_ms_median": statistics.median(ms),
                "one_tweet_ms_mean": statistics.fmean(ms),
                "one_tweet_ms_p95": ms[int(0.95 * (len(ms) - 1))],
                "one_tweet_cpu_ms_median": statistics.median(1000 * c for _, c in lat[(k, prec)]),
                "one_tweet_count": len(ms),
            }
        )
    return rows


def _image_files(ctx: Any) -> list[str]:
    """The tweet image files of Twitter-2015 here, sorted (the grid system's prediction cycles over them, as
    its training examples cycle over their features)."""
    from catmner_model import image_path, resolve_image_dir

    images = resolve_image_dir(ctx.image_dir, ctx.data_dir)
    if images is None:
        return []
    files = sorted((Path(images) / f"{DATASET}_images").glob("*.jpg"))
    return [str(f) for f in files if image_path(DATASET, f.stem, images) is not None]


def _clear_caches(predictor: Any) -> None:
    """Forget the word pieces of earlier calls, so repeated timings tokenise like a first pass."""
    collate = predictor.collate
    collate.pieces._cache.clear()
    collate._caption_cache.clear()


def measure_startup(model_dir: Path, tweet: Any, ctx: Any, runs: int) -> dict[str, Any]:
    """Wall seconds from starting `catmner predict MODEL --text ... --caption ...` to its first output line,
    and of a bare `python -c "import torch"` for comparison."""
    exe = shutil.which("catmner", path=str(Path(sys.executable).parent)) or shutil.which("catmner")
    base = [exe] if exe else [sys.executable, "-c", "from catmner_model.cli import main; main()"]
    caption = "a photo of people"
    cmd = [*base, "predict", str(model_dir), "--text", " ".join(tweet.tokens), "--caption", caption]
    env = dict(os.environ)
    times, imports, output = [], [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
        first = proc.stdout.readline() if proc.stdout else ""
        times.append(time.perf_counter() - t0)
        rest, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            return {"error": (err or "").strip().splitlines()[-1:] or ["failed"], "command": cmd[:2]}
        output = (first + rest).strip()
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, env=env)
        imports.append(time.perf_counter() - t0)
    return {
        "command": "catmner predict MODEL --text TWEET --caption CAPTION",
        "first_output_s": times,
        "first_output_s_median": statistics.median(times),
        "python_import_torch_s": imports,
        "python_import_torch_s_median": statistics.median(imports),
        "output_is_json": bool(output) and output.startswith("["),
    }
