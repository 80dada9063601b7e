"""`--executor ray` against a real Ray of this machine (started once for the module, 2 CPUs, loopback only, no
dashboard): a sweep runs two runs at a time and writes the records `--executor local` writes (same scores, same
training losses for the same seeds), Table 2's runs wait for the Table 1 models they reuse, a rerun skips
everything, a worker killed with SIGKILL mid-run is retried and the run resumes from its checkpoint, and a
failing run fails alone. Select them with ``-m ray``."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest
from catmner_bench.cli import app, run
from catmner_bench.records import BenchRecord, iter_records
from typer.testing import CliRunner

pytestmark = pytest.mark.ray

SWEEP = dict(profile="smoke", systems=["lm-span"], quiet=True)  # x 2 datasets, table1 and table2


@pytest.fixture(scope="module")
def ray_local():
    """A Ray of this machine for the module's tests (2 CPUs; its session folder under a short /tmp path:
    Ray's socket paths are limited to ~100 characters), shut down after them."""
    from catmner_bench.ray_executor import start_local_ray

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray = start_local_ray(num_cpus=2, temp_dir=temp, quiet=True)
    try:
        assert ray.cluster_resources()["CPU"] == 2
        yield ray
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def by_run(output: Path) -> dict[str, BenchRecord]:
    return {p.stem: r for p, r in iter_records(output)}


def losses(output: Path, rec: BenchRecord) -> list[float]:
    """The training loss of every epoch, from the run's trainer log (the model it reused, for a reuse)."""
    src = rec.extra.get("reused_model")
    exp, run_id = ("table1", src["run_id"]) if src else (rec.spec.experiment, rec.run_id)
    log = json.loads((output / "runs" / exp / run_id / "log.json").read_text())
    return [e["loss"] for e in log["epochs"]]


def interval(rec: BenchRecord) -> tuple[datetime.datetime, datetime.datetime]:
    c = rec.extra["compute"]
    return datetime.datetime.fromisoformat(c["started"]), datetime.datetime.fromisoformat(c["ended"])


@pytest.fixture(scope="module")
def sweeps(ray_local, tmp_path_factory, shared_data: Path) -> dict:
    """The same sweep (table1 + table2, LM-SPAN, both datasets: 2 trained runs and 2 that reuse them) through
    the local loop and through Ray with 2 workers."""
    from catmner_bench.ray_executor import RayExecutor

    base = tmp_path_factory.mktemp("ray_sweeps")
    out = {"local": base / "local", "ray": base / "ray", "data": shared_data}
    out["local_result"] = run("table1,table2", output=out["local"], data_dir=shared_data, **SWEEP)
    out["ray_result"] = run(
        "table1,table2",
        output=out["ray"],
        data_dir=shared_data,
        executor=RayExecutor(workers=2),
        **SWEEP,
    )
    return out


def test_ray_sweep_writes_the_records_of_the_local_loop(sweeps: dict) -> None:
    local, ray = by_run(sweeps["local"]), by_run(sweeps["ray"])
    assert sweeps["ray_result"]["ran"] == sweeps["local_result"]["ran"] == 4
    assert sweeps["ray_result"]["failed"] == [] and sweeps["ray_result"]["executor"] == "ray"
    assert set(local) == set(ray) and len(ray) == 4
    for run_id, rec in ray.items():
        assert rec.run_key == local[run_id].run_key
        assert rec.metrics == local[run_id].metrics, run_id  # same scores for the same seeds
        assert losses(sweeps["ray"], rec) == losses(sweeps["local"], local[run_id])  # the same training
        assert rec.data["train"]["selection_sha256"] == local[run_id].data["train"]["selection_sha256"]
        command = local[run_id].extra["command"].replace(str(sweeps["local"]), str(sweeps["ray"]))
        assert rec.extra["command"] == command  # the same command (the output folder aside)
        c, lc = rec.extra["compute"], local[run_id].extra["compute"]
        assert c["executor"] == "ray" and lc["executor"] == "local"
        assert c["resources"] == {"CPU": 1, "GPU": 0} and c["node"] and c["node_ip"] == "127.0.0.1"
        assert c["pid"] != os.getpid() and lc["pid"] == os.getpid()  # a worker process ran it, not this one


def test_ray_sweep_runs_two_at_a_time(sweeps: dict) -> None:
    recs = list(by_run(sweeps["ray"]).values())
    spans = [interval(r) for r in recs]
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1 :] if a[0] < b[1] and b[0] < a[1]]
    assert overlapping, "no two runs ran side by side"
    for _, end in spans:  # never more than the 2 workers at once
        assert sum(s < end <= e for s, e in spans) <= 2
    assert len({r.extra["compute"]["pid"] for r in recs}) == 2  # two worker processes


def test_table2_waits_for_the_table1_models_it_reuses(sweeps: dict) -> None:
    recs = by_run(sweeps["ray"])
    t2 = [r for r in recs.values() if r.spec.experiment == "table2"]
    assert len(t2) == 2
    for r in t2:
        twin = recs[r.extra["reused_model"]["run_id"]]  # reused, not trained again
        assert twin.spec.experiment == "table1" and twin.spec.system == r.spec.system
        assert interval(twin)[1] <= interval(r)[0]  # started after its Table 1 run ended


def test_a_second_invocation_skips_everything(sweeps: dict) -> None:
    out = sweeps["ray"]
    before = {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")}
    args = ["run", "table1,table2", "--profile", "smoke", "--systems", "lm-span", "-o", str(out)]
    args += ["--data-dir", str(sweeps["data"]), "--executor", "ray", "--workers", "2", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "0 run(s) done, 4 skipped (finished before)" in res.output
    assert {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")} == before


def worker_running(name: str) -> int | None:
    """The pid of the Ray worker whose process title is ``ray::NAME`` (the task of that run), if any."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            title = cmdline.read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title == f"ray::{name}":
            return int(cmdline.parent.name)
    return None


def test_a_killed_worker_is_retried_and_the_run_resumes(ray_local, tmp_path: Path, shared_data: Path) -> None:
    from catmner_bench.experiments import plan
    from catmner_bench.profiles import resolve_profile
    from catmner_bench.ray_executor import RayExecutor
    from catmner_bench.runner import RunContext

    epochs = 30
    out = tmp_path / "out"
    opts = dict(profile="smoke", systems=["lm-span"], datasets=["twitter2017"], epochs=epochs, quiet=True)
    ctx = RunContext(output=out, profile=resolve_profile("smoke", epochs=epochs))
    (spec,) = plan("table1", ctx, ["lm-span"], ["twitter2017"])
    run_dir = out / "runs" / "table1" / spec.run_id
    killed: dict = {}

    def kill_after_first_checkpoint() -> None:  # SIGKILL the worker once its first epoch is checkpointed
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            if (run_dir / "checkpoint.json").exists() and (pid := worker_running(f"table1/{spec.run_id}")):
                os.kill(pid, signal.SIGKILL)
                killed["pid"] = pid
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=kill_after_first_checkpoint, daemon=True)
    watcher.start()
    result = run("table1", output=out, data_dir=shared_data, executor=RayExecutor(max_retries=2), **opts)
    watcher.join(5)
    assert killed, "the worker was never seen running with a checkpoint"
    assert result["ran"] == 1 and result["failed"] == []
    (rec,) = by_run(out).values()
    compute = rec.extra["compute"]
    assert compute["pid"] != killed["pid"]  # a new worker finished it
    assert 1 <= compute["resumed_after_epoch"] < epochs  # from the killed run's checkpoint, not afresh
    log = json.loads((run_dir / "log.json").read_text())
    assert [e["epoch"] for e in log["epochs"]] == list(range(1, epochs + 1))  # every epoch once


def test_a_failing_run_fails_alone(ray_local, tmp_path: Path, shared_data: Path) -> None:
    bad = tmp_path / "words.json"
    bad.write_text("{not json")  # CAT-MNER's label words cannot be read: its runs fail, LM-SPAN's do not
    out = tmp_path / "out"
    args = ["run", "table1", "--profile", "smoke", "--systems", "cat-textual,lm-span", "--datasets"]
    args += ["twitter2017", "--labels-textual", str(bad), "-o", str(out), "--data-dir", str(shared_data)]
    res = CliRunner().invoke(app, [*args, "--executor", "ray", "-q"])
    assert res.exit_code == 1, res.output
    assert "1 run(s) done, 0 skipped (finished before), 1 failed" in res.output
    assert "failed table1/cat-textual__twitter2017" in res.output and "Traceback" not in res.output
    (rec,) = by_run(out).values()
    assert rec.spec.system == "lm-span"  # the other run finished
    (failure,) = (out / "failed" / "table1").glob("cat-textual__*.json")
    data = json.loads(failure.read_text())
    assert str(bad) in data["error"] and data["compute"]["executor"] == "ray"
    assert "Traceback" in data["detail"]


def test_ray_options_are_checked(ray_local, tmp_path: Path, shared_data: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["run", "table1", "--profile", "smoke", "-o", str(tmp_path), "--workers", "2"])
    assert res.exit_code == 1 and "--workers: only with --executor ray" in res.output
    args = ["run", "table1", "--profile", "smoke", "-o", str(tmp_path), "--executor", "ray", "--data-dir"]
    args.append(str(shared_data))
    res = runner.invoke(app, [*args, "--gpus-per-run", "1"])  # this Ray has no GPU: refused, not left waiting
    assert res.exit_code == 1 and "0 GPUs" in res.output, res.output
    assert not (tmp_path / "records").exists()
