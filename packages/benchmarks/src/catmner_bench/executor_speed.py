"""`catmner-bench speed-executors`: what running a sweep on Ray costs and gains against the local loop.

One smoke sweep of ``runs`` runs (LM-SPAN on both datasets, seeds 1.., Table 1: every run trained, one thread
each) is run by the local loop (in this process), then on a Ray of this machine with 1 worker and with 2
workers (each Ray started for its two sweeps and stopped after them; start and stop timed apart), each twice
into fresh folders: "cold" (the first: the processes import torch and catmner in their first run, the local
loop in this process, each Ray worker in its own) and "warm" (the same again in the same processes). Per sweep:
its wall time, the runs' own wall time (the sum of their records' ``wall_time_s``) and the time outside the
runs per run; then the per-run overhead of Ray against the local loop, (Ray 1-worker sweep - local sweep) /
runs, and the speed-up of 2 workers over 1.
"""

from __future__ import annotations

import os
import shutil
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
    own = sum(float(r.wall_time_s) for r in recs)
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
    local = LocalExecutor()
    out["local"] = {w: _sweep(base / f"local-{w}", data_dir, runs, local) for w in ("cold", "warm")}
    for workers in (1, 2):
        temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        t0 = time.perf_counter()
        ray = start_local_ray(num_cpus=2, temp_dir=temp, quiet=True)
        started = time.perf_counter() - t0
        try:
            ex = RayExecutor(workers=workers)
            rows = {w: _sweep(base / f"ray{workers}-{w}", data_dir, runs, ex) for w in ("cold", "warm")}
        finally:
            t0 = time.perf_counter()
            ray.shutdown()
            rows["start_s"], rows["stop_s"] = round(started, 2), round(time.perf_counter() - t0, 2)
            shutil.rmtree(temp, ignore_errors=True)
        out[f"ray_{workers}"] = rows
    n = out["local"]["cold"]["runs"]
    for w in ("cold", "warm"):
        out[f"ray_overhead_per_run_s_{w}"] = round(
            (out["ray_1"][w]["sweep_s"] - out["local"][w]["sweep_s"]) / n, 3
        )
        out[f"speedup_2_over_1_worker_{w}"] = round(
            out["ray_1"][w]["sweep_s"] / out["ray_2"][w]["sweep_s"], 2
        )
    out["load_1min_end"] = os.getloadavg()[0]
    if work is None:
        shutil.rmtree(base, ignore_errors=True)
    return out


def render(res: dict[str, Any]) -> str:
    """The figures as a Markdown table and a sentence."""
    lines = [
        "| executor | processes | sweep wall (s) | runs' own wall, summed (s) | outside the runs, per run (s) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, name in (("local", "local loop"), ("ray_1", "Ray, 1 worker"), ("ray_2", "Ray, 2 workers")):
        for w in ("cold", "warm"):
            r = res[key][w]
            lines.append(f"| {name} | {w} | {r['sweep_s']} | {r['runs_s']} | {r['outside_runs_per_run_s']} |")
    lines += [
        "",
        f"{res['runs']} smoke runs a sweep. Ray's overhead against the local loop, per run: "
        f"{res['ray_overhead_per_run_s_cold']} s with fresh processes, {res['ray_overhead_per_run_s_warm']} s "
        f"warm; 2 workers over 1: {res['speedup_2_over_1_worker_cold']}x fresh, "
        f"{res['speedup_2_over_1_worker_warm']}x warm. Starting / stopping Ray: {res['ray_1']['start_s']} / "
        f"{res['ray_1']['stop_s']} s and {res['ray_2']['start_s']} / {res['ray_2']['stop_s']} s. {res['cpus']} "
        f"CPUs, load average {res['load_1min_start']:.2f} at the start, {res['load_1min_end']:.2f} at the end.",
    ]
    return "\n".join(lines)
