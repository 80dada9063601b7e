"""`catmner-bench speed-executors`: what running a sweep on Ray costs and gains against the local loop.

One smoke sweep of ``runs`` runs (LM-SPAN on both datasets, seeds 1.., Table 1: every run trained, one thread
each) is run three times in this process, each into a fresh folder: by the local loop, then on a Ray of this
machine with 1 worker and with 2 workers (each Ray started for its sweep and stopped after it; the start and
stop are timed apart). Per configuration: the sweep's wall time, the runs' own wall time (the sum of their
records' ``wall_time_s``) and the time outside the runs per run; then the per-run overhead of Ray against
the local loop, (Ray 1-worker sweep - local sweep) / runs, which holds what Ray adds to each run (task
submission, results, and the imports of each fresh worker process, which the local loop pays once in this
process) but not its start, and the speed-up of 2 workers over 1.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from catmner_bench.records import iter_records


def _sweep(output: Path, data_dir: Path | None, runs: int, executor: Any) -> dict[str, Any]:
    from catmner_bench.profiles import resolve_profile
    from catmner_bench.runner import RunContext
    from catmner_bench.sweep import run_experiment

    seeds = tuple(range(1, (runs + 1) // 2 + 1))
    ctx = RunContext(
        output=output, profile=resolve_profile("smoke", seeds=seeds), data_dir=data_dir, quiet=True
    )
    t0 = time.perf_counter()
    result = run_experiment(["table1"], ctx, ["lm-span"], None, executor)
    wall = time.perf_counter() - t0
    recs = [r for _, r in iter_records(output)]
    if result["failed"] or len(recs) != 2 * len(seeds):
        raise RuntimeError(f"the measured sweep did not finish: {result['failed']}")
    own = sum(float(r["wall_time_s"]) for r in recs)
    return {
        "runs": len(recs),
        "sweep_s": round(wall, 2),
        "runs_s": round(own, 2),
        "outside_runs_per_run_s": round((wall - own) / len(recs), 3),
    }


def measure_executors(
    data_dir: Path | None = None, runs: int = 4, work: Path | None = None
) -> dict[str, Any]:
    """The figures of the module docstring as a dict (``work``: where the sweeps write; a temp folder)."""
    from catmner_bench.ray_executor import RayExecutor, start_local_ray
    from catmner_bench.sweep import LocalExecutor

    base = Path(work or tempfile.mkdtemp(prefix="catmner-executors-"))
    out: dict[str, Any] = {"runs": runs, "cpus": os.cpu_count(), "load_1min_start": os.getloadavg()[0]}
    out["local"] = _sweep(base / "local", data_dir, runs, LocalExecutor())
    for workers in (1, 2):
        temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        t0 = time.perf_counter()
        ray = start_local_ray(num_cpus=2, temp_dir=temp, quiet=True)
        started = time.perf_counter() - t0
        try:
            row = _sweep(base / f"ray{workers}", data_dir, runs, RayExecutor(workers=workers))
        finally:
            t0 = time.perf_counter()
            ray.shutdown()
            row |= {"ray_start_s": round(started, 2), "ray_stop_s": round(time.perf_counter() - t0, 2)}
        out[f"ray_{workers}_worker{'s' if workers > 1 else ''}"] = row
    n = out["local"]["runs"]
    out["ray_overhead_per_run_s"] = round((out["ray_1_worker"]["sweep_s"] - out["local"]["sweep_s"]) / n, 3)
    out["speedup_2_over_1_worker"] = round(
        out["ray_1_worker"]["sweep_s"] / out["ray_2_workers"]["sweep_s"], 2
    )
    out["load_1min_end"] = os.getloadavg()[0]
    return out


def render(res: dict[str, Any]) -> str:
    """The figures as a Markdown table and two sentences."""
    rows = [
        ("local loop", res["local"]),
        ("Ray, 1 worker", res["ray_1_worker"]),
        ("Ray, 2 workers", res["ray_2_workers"]),
    ]
    lines = [
        "| executor | sweep wall (s) | runs' own wall, summed (s) | outside the runs, per run (s) | "
        "Ray start / stop (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in rows:
        start = f"{r['ray_start_s']} / {r['ray_stop_s']}" if "ray_start_s" in r else "-"
        lines.append(f"| {name} | {r['sweep_s']} | {r['runs_s']} | {r['outside_runs_per_run_s']} | {start} |")
    lines += [
        "",
        f"{res['runs']} smoke runs; Ray's overhead against the local loop: {res['ray_overhead_per_run_s']} s "
        f"per run (Ray's start aside); 2 workers over 1: {res['speedup_2_over_1_worker']}x. "
        f"{res['cpus']} CPUs, load average {res['load_1min_start']:.2f} at the start, "
        f"{res['load_1min_end']:.2f} at the end.",
    ]
    return "\n".join(lines)
