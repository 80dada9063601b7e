"""`catmner-bench run ... --dry-run`: every planned run with the action the sweep would take (finished, score a
saved model, resume, train) and minutes estimated from finished records; nothing is run or written."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path

from catmner_bench.cli import app
from catmner_bench.records import iter_records
from typer.testing import CliRunner


def files(root: Path) -> list[Path]:
    return sorted(root.rglob("*")) if root.exists() else []


def dry(args: list[str]) -> tuple[int, str]:
    res = CliRunner().invoke(app, ["run", *args, "--profile", "smoke", "--dry-run"])
    return res.exit_code, res.output


def plan_rows(text: str) -> dict[str, list[str]]:
    """{run name: [action, detail, est. min, records]} from the dry run's table."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("| run |"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_dry_run_of_a_finished_command_lists_every_run_as_finished(bench: dict) -> None:
    out = bench["output"]
    before = [(p, p.stat().st_mtime_ns) for p in files(out)]
    code, text = dry(["table1,table2", "--output", str(out), "--data-dir", str(bench["data"])])
    assert code == 0, text
    rows = plan_rows(text)
    n = bench["results"]["table1"]["ran"] + bench["results"]["table2"]["ran"]
    assert len(rows) == n and {r[0] for r in rows.values()} == {"finished"}
    assert f"{n} planned runs: {n} finished. Estimated 0 min" in text and text.rstrip().endswith(
        "Nothing was run."
    )
    assert [(p, p.stat().st_mtime_ns) for p in files(out)] == before  # nothing written, not even refreshed


def test_dry_run_estimates_from_records_and_shows_reuse_waits_and_resumes(
    bench: dict, tmp_path: Path
) -> None:
    src = bench["output"]
    out = tmp_path / "out"
    args = [
        "table1,table2",
        "--systems",
        "lm-span",
        "--datasets",
        "twitter2015,twitter2017",
        "--output",
        str(out),
    ]
    args += ["--data-dir", str(bench["data"]), "--estimate-from", str(src)]
    code, text = dry(args)
    assert code == 0, text
    rows = plan_rows(text)
    t1 = {name: r for name, r in rows.items() if name.startswith("table1/")}
    t2 = {name: r for name, r in rows.items() if name.startswith("table2/")}
    assert len(t1) == 2 and len(t2) == 2
    trained = {f"table1/{rec.run_id}": rec for _, rec in iter_records(src) if rec.spec.experiment == "table1"}
    for name, (action, detail, minutes, basis) in t1.items():
        # the same spec finished in the records folder: its wall time is the estimate
        assert action == "train" and detail == "" and basis == "1"
        assert minutes == f"{trained[name].wall_time_s / 60:.1f}"
    for name, (action, detail, *_) in t2.items():
        train = name.split("__")[1].split("-to-")[0]  # waits for its Table 1 run, planned in this command
        assert (
            action == "score" and detail.startswith(f"after table1/lm-span__{train}__s") and detail[6:] in t1
        )
    assert not out.exists()

    # a finished Table 1 run here (its model saved): Table 2 reuses it; a killed run resumes from its checkpoint
    done_name, other_name = sorted(t1)
    done_rec = trained[done_name]
    (out / "records" / "table1").mkdir(parents=True)
    shutil.copy(src / "records" / "table1" / f"{done_rec.run_id}.json", out / "records" / "table1")
    shutil.copytree(src / "runs" / "table1" / done_rec.run_id, out / "runs" / "table1" / done_rec.run_id)
    killed = out / "runs" / "table1" / other_name.split("/")[1]
    (killed / "ckpt-epoch-0001").mkdir(parents=True)
    (killed / "ckpt-epoch-0001" / "state.json").write_text(json.dumps({"epoch": 1}))
    (killed / "checkpoint.json").write_text(json.dumps({"dir": "ckpt-epoch-0001"}))
    code, text = dry(args)
    assert code == 0, text
    rows = plan_rows(text)
    assert rows[done_name][0] == "finished"
    epochs = trained[other_name].spec.config["epochs"]
    assert rows[other_name][:2] == ["resume", "after epoch 1"]
    assert rows[other_name][2] == f"{trained[other_name].wall_time_s * (epochs - 1) / epochs / 60:.1f}"
    reusing = [
        r for name, r in rows.items() if name.startswith("table2/lm-span__" + done_rec.spec.train_dataset)
    ]
    assert reusing[0][:2] == ["score", f"reuses table1/{done_rec.run_id}"]
    scored = [
        r.wall_time_s
        for _, r in iter_records(src)
        if r.extra.get("reused_model")
        and r.spec.system == "lm-span"
        and r.spec.test_dataset == reusing_test(done_rec.spec.train_dataset)
    ]
    assert reusing[0][2] == f"{statistics.median(scored) / 60:.1f}"
    assert "1 finished, 2 score, 1 resume" in text


def reusing_test(train: str) -> str:
    return "twitter2017" if train == "twitter2015" else "twitter2015"


def test_dry_run_of_a_new_recipe_scales_by_epochs_and_flags_unknowns(bench: dict, tmp_path: Path) -> None:
    src = bench["output"]
    args = [
        "table1",
        "--systems",
        "lm-span,mm",
        "--datasets",
        "twitter2017",
        "--epochs",
        "4",
        "--patience",
        "1",
    ]
    args += ["--output", str(tmp_path / "out"), "--data-dir", str(bench["data"]), "--estimate-from", str(src)]
    code, text = dry(args)
    assert code == 0, text
    for name, (action, _, minutes, basis) in plan_rows(text).items():
        system = name.split("/")[1].split("__")[0]
        recs = [
            r
            for _, r in iter_records(src)
            if r.spec.system == system
            and r.spec.train_dataset == "twitter2017"
            and r.spec.sample is None
            and not r.extra.get("reused_model")
            and r.spec.experiment != "fig4"  # its wall time holds the attention maps too
            and r.extra.get("valid_f1_by_epoch")
        ]
        per = statistics.median(r.wall_time_s / len(r.extra["valid_f1_by_epoch"]) for r in recs)
        assert action == "train" and basis == str(len(recs))
        assert minutes == f"≤ {per * 4 / 60:.1f}"  # an upper bound: early stopping may end it sooner
    # no record at all to go by
    code, text = dry(
        [
            "table1",
            "--systems",
            "lm-span",
            "--datasets",
            "twitter2017",
            "--output",
            str(tmp_path / "o2"),
            "--data-dir",
            str(bench["data"]),
        ]
    )
    assert (
        code == 0 and "| ? |" in text and "1 run(s) without a record to estimate from (not counted)" in text
    )


def test_dry_run_refuses_what_it_cannot_show(tmp_path: Path, shared_data: Path) -> None:
    res = CliRunner().invoke(app, ["run", "table1", "--profile", "smoke", "--estimate-from", str(tmp_path)])
    assert res.exit_code != 0 and "--estimate-from: only with --dry-run" in res.output
    code, text = dry(["speed", "--output", str(tmp_path / "o")])
    assert code != 0 and "speed measures in this process and plans no runs" in text
    code, text = dry(
        ["table1", "--output", str(tmp_path / "o"), "--estimate-from", str(tmp_path / "nowhere")]
    )
    assert code != 0 and f"--estimate-from {tmp_path / 'nowhere'}: no such folder" in text
    code, text = dry(["table1", "--output", str(tmp_path / "o"), "--data-dir", str(tmp_path / "nodata")])
    assert code != 0 and len(text.strip().splitlines()) == 1  # missing data: one line, as a real run says it
    assert not (tmp_path / "o").exists()


def test_estimates_take_medians_of_whole_trainings_scale_by_epochs_and_pack_lanes() -> None:
    """With known wall times: the median of whole trainings of the recipe (a copy, a resumed run, a reused
    model, a cross-dataset or Figure 4 run left out), per-epoch scaling where the recipe is new, scoring by
    experiment, and the longest-first packing of the lanes (a lower bound)."""
    from catmner_bench.dryrun import Estimates, PlannedRun, render, summary
    from recordkit import make_record

    cfg = {"kind": "span", "epochs": 3}
    curve = {"valid_f1_by_epoch": [1.0, 2.0, 3.0]}
    recs = [
        make_record("mm", "twitter2017", 1, config=cfg, extra=curve, wall_time_s=300),
        make_record("mm", "twitter2017", 2, config=cfg, extra=curve, wall_time_s=360),
        make_record("mm", "twitter2017", 3, config=cfg, extra=curve, wall_time_s=420),
        # not whole trainings of this recipe: never in the median
        make_record(
            "mm", "twitter2017", 4, config=cfg, extra={**curve, "same_run": {"run_id": "x"}}, wall_time_s=1
        ),
        make_record(
            "mm",
            "twitter2017",
            5,
            config=cfg,
            extra={**curve, "compute": {"resumed_after_epoch": 2}},
            wall_time_s=2,
        ),
        make_record("mm", "twitter2017", 6, config=cfg, experiment="fig4", extra=curve, wall_time_s=9000),
        make_record(
            "mm",
            "twitter2017",
            7,
            config=cfg,
            experiment="table2",
            test="twitter2015",
            extra=curve,
            wall_time_s=9000,
        ),
        # scoring a reused model: by experiment
        make_record(
            "mm",
            "twitter2017",
            1,
            config=cfg,
            experiment="table2",
            test="twitter2015",
            extra={"reused_model": {"run_id": "y"}},
            wall_time_s=30,
        ),
        make_record(
            "mm",
            "twitter2017",
            1,
            config=cfg,
            experiment="table3",
            extra={"reused_model": {"run_id": "z"}},
            wall_time_s=3,
        ),
    ]
    est = Estimates.from_records(recs)
    same = make_record("mm", "twitter2017", 9, config=cfg).spec
    assert est.minutes(same, "train") == (6.0, 3, False)  # median 360 s
    assert est.minutes(same, "resume", share=1 / 3) == (2.0, 3, False)
    longer = make_record("mm", "twitter2017", 9, config={"kind": "span", "epochs": 10, "patience": 2}).spec
    assert est.minutes(longer, "train") == (20.0, 3, True)  # 120 s an epoch x 10 epochs
    t2 = make_record("mm", "twitter2017", 9, config=cfg, experiment="table2", test="twitter2015").spec
    assert est.minutes(t2, "score") == (0.5, 1, False)
    other = make_record("lm-span", "twitter2017", 9, config=cfg).spec
    assert est.minutes(other, "train") == (None, 0, False)

    rows = [
        PlannedRun(same, "train", "", 10.0, 3),
        PlannedRun(same, "train", "", 6.0, 3),
        PlannedRun(same, "train", "", 5.0, 3),
        PlannedRun(same, "train", "", 3.0, 3),
        PlannedRun(longer, "train", "", 20.0, 3, scaled=True),
        PlannedRun(same, "copy", "same run as decisive/x", 0.0, 0),
        PlannedRun(other, "train", "", None, 0),
    ]
    s = summary(rows, 2)
    assert (s["minutes_sequential"], s["minutes_wall"], s["unknown"], s["copy"]) == (44.0, 23.0, 1, 1)
    assert summary(rows, None)["minutes_wall"] is None
    text = render(rows, 2)
    assert "| ≤ 20.0 | 3 |" in text and "at least 23 min with 2 at a time" in text
    assert "runs at a time unknown" in render(rows, None)


def test_a_damaged_record_is_passed_over_alone(tmp_path: Path) -> None:
    from catmner_bench.dryrun import Estimates
    from catmner_bench.records import write_record
    from recordkit import make_record

    cfg = {"kind": "span", "epochs": 3}
    for seed, secs in ((1, 60.0), (2, 180.0)):
        write_record(tmp_path, make_record("mm", "twitter2017", seed, config=cfg, wall_time_s=secs))
    (tmp_path / "records" / "table1" / "broken.json").write_text("{not json")
    est = Estimates.from_folders([tmp_path])
    assert est.minutes(make_record("mm", "twitter2017", 3, config=cfg).spec, "train") == (2.0, 2, False)


def test_dry_run_matches_the_run_when_a_waited_for_model_is_gone(tmp_path: Path, shared_data: Path) -> None:
    """Table 1 finished but its saved model deleted: Table 2's run cannot reuse it and trains; the dry run says
    so, and the real run does it."""
    out = tmp_path / "out"
    args = ["--profile", "smoke", "--systems", "lm-span", "--datasets", "twitter2017", "--seeds", "1"]
    args += ["-o", str(out), "--data-dir", str(shared_data), "-q"]
    assert CliRunner().invoke(app, ["run", "table1", *args]).exit_code == 0
    shutil.rmtree(out / "runs")
    res = CliRunner().invoke(app, ["run", "table1,table2", *args, "--dry-run"])
    assert res.exit_code == 0, res.output
    rows = plan_rows(res.output)
    (t2,) = [r for name, r in rows.items() if name.startswith("table2/lm-span__twitter2017-to-")]
    assert t2[0] == "train"  # not "score after table1/...": that run is finished, its model gone
    assert CliRunner().invoke(app, ["run", "table1,table2", *args]).exit_code == 0
    (rec,) = [
        r
        for _, r in iter_records(out)
        if r.spec.experiment == "table2" and r.spec.train_dataset == "twitter2017"
    ]
    assert rec.extra.get("reused_model") is None  # it trained, as the dry run said


def test_dry_run_does_not_call_a_run_on_changed_data_a_copy(tmp_path: Path, shared_data: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(shared_data / "twitter2017", data / "twitter2017")
    shutil.copytree(shared_data / "captions", data / "captions")
    out = tmp_path / "out"
    args = ["--profile", "smoke", "--systems", "lm-span", "--datasets", "twitter2017", "--seeds", "1"]
    args += ["--alphas", "4", "--samplings", "1", "-o", str(out), "--data-dir", str(data), "-q"]
    assert CliRunner().invoke(app, ["run", "decisive", *args]).exit_code == 0
    res = CliRunner().invoke(app, ["run", "fig3", *args, "--dry-run"])
    assert "1 planned runs: 1 copy" in res.output, res.output
    test = data / "twitter2017" / "test.txt"
    test.write_text(test.read_text(encoding="utf-8").replace("\tO\n", "\tB-PER\n", 1), encoding="utf-8")
    res = CliRunner().invoke(app, ["run", "fig3", *args, "--dry-run"])
    assert "1 planned runs: 1 train" in res.output, res.output
    assert CliRunner().invoke(app, ["run", "fig3", *args]).exit_code == 0
    (rec,) = [r for _, r in iter_records(out) if r.spec.experiment == "fig3"]
    assert rec.extra.get("same_run") is None  # trained, as the dry run said
