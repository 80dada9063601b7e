"""The sweep every executor shares (`catmner_bench.sweep`), through the local loop: runs wait for the Table 1
runs whose models they reuse whatever the order asked, a failing run fails alone (failure record, summary,
exit status 1), the progress line counts, records name where they ran and the report sums their compute."""

from __future__ import annotations

import io
import json
from pathlib import Path

from catmner_bench.cli import app
from catmner_bench.records import BenchRecord, iter_records
from recordkit import make_record
from typer.testing import CliRunner


def test_runs_that_reuse_a_table1_model_wait_for_it() -> None:
    from catmner_bench.profiles import resolve_profile
    from catmner_bench.runner import RunContext
    from catmner_bench.sweep import plan_sweep, prerequisites, run_name

    ctx = RunContext(output=Path("unused"), profile=resolve_profile("paper"))
    specs = plan_sweep(["table2", "table1", "fig3"], ctx)
    waits = prerequisites(specs)
    t2 = [s for s in specs if s.experiment == "table2"]
    systems = {s.system for s in t2}  # TEXT, MM, UMT, CAT-MNER: every one on 2 directions x 3 seeds
    assert len(t2) == len(systems) * 2 * 3 and len(systems) >= 3 and all(run_name(s) in waits for s in t2)
    for s in t2:
        twin = waits[run_name(s)]
        assert twin.startswith(f"table1/{s.system}__{s.train_dataset}__s{s.seed}__")
    assert not any(s.experiment in ("table1", "fig3") and run_name(s) in waits for s in specs)
    # without Table 1 in the sweep, Table 2 waits for nothing (it trains its own, or reuses a finished one)
    assert prerequisites(plan_sweep(["table2"], ctx)) == {}


def test_progress_line_counts_finished_running_failed() -> None:
    from catmner_bench.records import RunSpec
    from catmner_bench.sweep import Outcome, Progress

    spec = RunSpec("table1", "lm-span", "twitter2017", "twitter2017", 1, {"profile": "smoke"})
    stream = io.StringIO()
    p = Progress(4, stream=stream)
    p.start(spec)
    p.end(Outcome(spec, {"x": 1}, ran=True))
    p.end(Outcome(spec, {"x": 1}, ran=False), was_running=False)
    p.start(spec)
    p.end(Outcome(spec, error="ValueError: boom"))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("[........................] 0/4 finished (0 skipped), 1 running, 0 failed")
    assert lines[-1].startswith("[##################......] 2/4 finished (1 skipped), 0 running, 1 failed")
    assert lines[-1].endswith(f"FAILED table1/{spec.run_id}: ValueError: boom")


def test_local_sweep_runs_table1_first_and_a_failing_run_fails_alone(
    tmp_path: Path, shared_data: Path
) -> None:
    bad = tmp_path / "words.json"
    bad.write_text("{not json")  # CAT-MNER's label words cannot be read: its runs fail, LM-SPAN's do not
    out = tmp_path / "out"
    args = ["run", "table2,table1", "--profile", "smoke", "--systems", "cat-textual,lm-span", "--datasets"]
    args += [
        "twitter2017",
        "--labels-textual",
        str(bad),
        "-o",
        str(out),
        "--data-dir",
        str(shared_data),
        "-q",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    # Table 2 plans both directions: LM-SPAN 2017->2015 reuses Table 1's 2017 model (trained first, though
    # table2 was named first), 2015->2017 trains its own (no Table 1 run on 2015 here); CAT-MNER fails in each
    assert "table2,table1: 3 run(s) done, 0 skipped (finished before), 3 failed" in res.output
    assert "failed table1/cat-textual__twitter2017__s1__" in res.output and "Traceback" not in res.output
    recs = {r.run_id: r for _, r in iter_records(out)}
    assert {r.spec.system for r in recs.values()} == {"lm-span"}
    (t1,) = [r for r in recs.values() if r.spec.experiment == "table1"]
    reused = {r.spec.train_dataset: r.extra.get("reused_model") for r in recs.values() if r is not t1}
    assert reused["twitter2017"]["run_id"] == t1.run_id and reused["twitter2015"] is None
    failures = sorted((out / "failed").rglob("*.json"))
    assert [f.parent.name for f in failures] == ["table1", "table2", "table2"]
    data = json.loads(failures[0].read_text())
    assert (
        str(bad) in data["error"]
        and "Traceback" in data["detail"]
        and data["spec"]["system"] == "cat-textual"
    )
    compute = t1.extra["compute"]
    assert compute["executor"] == "local" and compute["resources"] == {"CPU": 1, "GPU": 0}
    assert compute["started"] < compute["ended"] and compute["resumed_after_epoch"] is None
    # the same command again: the finished runs are skipped, the failing ones tried (and failing) again
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1 and "0 run(s) done, 3 skipped (finished before), 3 failed" in res.output


def test_the_report_sums_the_compute_the_records_name() -> None:
    from catmner_bench.report.sections import compute_total

    def rec(wall: float, compute: dict | None) -> BenchRecord:
        return make_record("lm-span", wall_time_s=wall, extra={"compute": compute} if compute else {})

    recs = [
        rec(3600, {"executor": "ray", "node": "n1", "resources": {"CPU": 4, "GPU": 1}}),
        rec(1800, {"executor": "ray", "node": "n2", "resources": {"CPU": 2, "GPU": 0}}),
        rec(999, None),  # a record from before records named their resources
    ]
    text = compute_total(recs)
    assert "5.00 CPU-hours, 1.00 GPU-hours (the 2 runs whose records name their resources)" in text
    assert "on 2 node(s) (n1, n2), executor ray" in text
    assert compute_total(recs[2:]) == ""


def test_ray_options_need_the_ray_executor(tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["run", "table1", "--profile", "smoke", "-o", str(tmp_path), "--max-retries", "1"]
    )
    assert res.exit_code == 1 and "--max-retries: only with --executor ray" in res.output
    res = CliRunner().invoke(
        app, ["run", "table1", "--profile", "smoke", "-o", str(tmp_path), "--executor", "dask"]
    )
    assert res.exit_code == 1 and "--executor 'dask': choose local or ray" in res.output
    res = CliRunner().invoke(app, ["run", "speed,table1", "--profile", "smoke", "-o", str(tmp_path)])
    assert res.exit_code == 1 and "speed measures on its own" in res.output
