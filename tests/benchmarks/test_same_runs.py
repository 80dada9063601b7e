"""Figure 3 and the decisive experiment share runs (`runner.SAME_RUNS`): a spec both plan is trained once; the
other experiment copies its record, naming it, when the data it read are the same."""

from __future__ import annotations

import json
from pathlib import Path

from catmner_bench.cli import app
from catmner_bench.records import iter_records
from typer.testing import CliRunner


def test_fig3_copies_the_decisive_runs_it_shares_and_a_joint_sweep_trains_each_once(
    tmp_path: Path, shared_data: Path
) -> None:
    out = tmp_path / "out"
    base = ["--profile", "smoke", "--systems", "lm-span", "--datasets", "twitter2017", "-o", str(out)]
    base += ["--data-dir", str(shared_data), "--seeds", "1", "-q"]
    res = CliRunner().invoke(app, ["run", "decisive", *base])
    assert res.exit_code == 0, res.output
    decisive = {(r.spec.sample["alpha"], r.spec.sample["index"]): r for _, r in iter_records(out)}
    assert len(decisive) == 4  # smoke: alphas 4, 8 x 2 samplings

    # the dry run sees the copies before they are made
    res = CliRunner().invoke(app, ["run", "fig3", *base, "--dry-run"])
    assert res.exit_code == 0 and "4 planned runs: 4 copy. Estimated 0 min" in res.output, res.output

    # a leftover checkpoint of one of them (a fig3 run killed before): nothing trains, so nothing resumes
    name = next(line.split(" | ")[0].strip("| ") for line in res.output.splitlines() if "| fig3/" in line)
    stale = out / "runs" / name
    (stale / "ckpt-epoch-0001").mkdir(parents=True)
    (stale / "ckpt-epoch-0001" / "state.json").write_text(json.dumps({"epoch": 1}))
    (stale / "checkpoint.json").write_text(json.dumps({"dir": "ckpt-epoch-0001"}))

    res = CliRunner().invoke(app, ["run", "fig3", *base])
    assert res.exit_code == 0 and "fig3: 4 run(s) done" in res.output, res.output
    fig3 = [r for _, r in iter_records(out) if r.spec.experiment == "fig3"]
    assert len(fig3) == 4
    for r in fig3:
        src = decisive[(r.spec.sample["alpha"], r.spec.sample["index"])]
        assert r.extra["same_run"]["run_id"] == src.run_id and r.extra["same_run"]["experiment"] == "decisive"
        assert r.extra["same_run"]["wall_time_s"] == src.wall_time_s and r.metrics == src.metrics
        assert r.extra["valid_f1_by_epoch"] == src.extra["valid_f1_by_epoch"]
        assert r.spec.config == src.spec.config and r.spec.seed == src.spec.seed
        assert r.extra["compute"]["resumed_after_epoch"] is None
    assert not list((out / "runs").glob("fig3/*/model"))  # nothing trained
    # more samplings add runs (sampling i: seed 1 + i) and keep the finished ones; --alphas picks sizes
    res = CliRunner().invoke(app, ["run", "fig3", *base, "--samplings", "3", "--alphas", "8,16", "--dry-run"])
    assert res.exit_code == 0 and "6 planned runs: 2 finished, 4 train" in res.output, res.output
    assert "fig3/lm-span__twitter2017__a16-2__s3__" in res.output
    res = CliRunner().invoke(app, ["run", "fig3", *base, "--samplings", "0"])
    assert res.exit_code == 1 and "--samplings must be at least 1, got 0" in res.output

    # both in one sweep, into a fresh folder: Figure 3 (first in plan order) trains, decisive copies after it
    out2 = tmp_path / "out2"
    both = [a if a != str(out) else str(out2) for a in base]
    res = CliRunner().invoke(app, ["run", "fig3,decisive", *both])
    assert res.exit_code == 0 and "fig3,decisive: 8 run(s) done" in res.output, res.output
    recs = [r for _, r in iter_records(out2)]
    copies = [r for r in recs if r.extra.get("same_run")]
    assert len(copies) == 4 and {r.spec.experiment for r in copies} == {"decisive"}
    assert sorted(p.name for p in (out2 / "runs").iterdir()) == ["fig3"]


def test_a_run_on_other_data_is_not_the_same_run(tmp_path: Path, shared_data: Path) -> None:
    """same_run compares what each split read (file checksums and tweet counts): a record made on other data is
    not copied."""
    from catmner_bench.profiles import resolve_profile
    from catmner_bench.runner import RunContext, same_run
    from catmner_bench.sweep import plan_sweep

    out = tmp_path / "out"
    args = ["run", "decisive", "--profile", "smoke", "--systems", "lm-span", "--datasets", "twitter2017"]
    args += ["-o", str(out), "--data-dir", str(shared_data), "--seeds", "1", "-q"]
    assert CliRunner().invoke(app, args).exit_code == 0
    ctx = RunContext(output=out, profile=resolve_profile("smoke", seeds=(1,)), data_dir=shared_data)
    spec = plan_sweep(["fig3"], ctx, ["lm-span"], ["twitter2017"])[0]
    src = same_run(ctx, spec)
    assert src is not None and src.spec.experiment == "decisive"
    same = json.loads(json.dumps(src.data))
    same["train"]["files"] = {"elsewhere/train.txt": next(iter(src.data["train"]["files"].values()))}
    assert same_run(ctx, spec, same).run_id == src.run_id  # the same files read from another folder
    other = json.loads(json.dumps(src.data))
    other["train"]["n_tweets"] += 1
    assert same_run(ctx, spec, other) is None
    changed = json.loads(json.dumps(src.data))
    changed["test"]["files"] = {k: "0" * 64 for k in changed["test"]["files"]}
    assert same_run(ctx, spec, changed) is None
