"""`catmner-bench run EXPERIMENT ... --dry-run`: what the command would do, run by run, and about how long it
would take, without running anything (no model is loaded, no record is written).

Each planned run gets one action, decided as the sweep would decide it (`catmner_bench.sweep`,
`catmner_bench.runner`):

- ``finished``: its record is in the output folder (the command skips it);
- ``copy``: another experiment made this very run (`runner.same_run`: Figure 3 and the decisive experiment
  share runs), whose record is copied;
- ``score``: it reuses a saved model (a finished Table 1 run of the same system, config and seed, or, for a
  Table 1 run, the recipe search's), or waits for a run of this command that will save it, and only scores it;
- ``resume``: a span run killed after epoch N resumes from its checkpoint;
- ``train``: it trains from the start.

Minutes are estimated from finished records, in the output folder and in any ``estimate_from`` folders: the
median wall time of the records that trained the same system, config and training-set size on the same data
(whole runs only: not a copy, a resumed run or a reused model; a score action: the records of the same
experiment that scored a reused model of that system on that test set); a resumed run, the share of its
epochs still to train. Those records ran where and beside what they ran (their ``extra["compute"]`` says), so
the estimate is as good as that likeness; a run with no such record is counted as unknown. The total for
several runs at a time packs the runs longest first and ignores waits: it is a lower bound.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catmner_bench.errors import BenchError
from catmner_bench.experiments import Experiment, experiment
from catmner_bench.markdown import md_table
from catmner_bench.recipes import refreshed
from catmner_bench.records import BenchRecord, RecordError, RunSpec, finished, read_record, record_files
from catmner_bench.runner import (
    SAME_RUNS,
    RunContext,
    load_data,
    reusable_model,
    same_run,
    searched_model,
    table1_twin,
)
from catmner_bench.sweep import checkpoint_epoch, plan_sweep, prerequisites, run_name
from catmner_bench.tweets import check_data, describe

ACTIONS = ("finished", "copy", "score", "resume", "train")


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    action: str  # one of ACTIONS
    detail: str  # what it reuses, copies, waits for or resumes after ("" for a plain train / finished run)
    minutes: float | None  # estimated wall minutes (0 for a finished run or a copy; None: no record to go by)
    basis: int  # how many records the estimate is the median of
    scaled: bool = False  # from other recipes' minutes per epoch, times this run's epochs


def _alpha(spec: RunSpec) -> int | None:
    return spec.sample.get("alpha") if spec.sample else None


def _train_key(spec: RunSpec) -> str:
    return json.dumps([spec.system, spec.train_dataset, spec.config, _alpha(spec)], sort_keys=True)


def _score_key(spec: RunSpec) -> str:
    return json.dumps([spec.experiment, spec.system, spec.train_dataset, spec.test_dataset])


def _epoch_key(spec: RunSpec) -> str:
    return json.dumps([spec.system, spec.train_dataset, _alpha(spec)])


def _whole_training(rec: BenchRecord) -> bool:
    """A record whose wall time is one whole training on its own data (and scoring): not a copy, not a reused
    model, not resumed partway, not scored on another dataset, not followed by an attention-map pass."""
    compute = rec.extra.get("compute") or {}
    return (
        not rec.extra.get("same_run")
        and not rec.extra.get("reused_model")
        and compute.get("resumed_after_epoch") is None
        and rec.spec.train_dataset == rec.spec.test_dataset
        and rec.spec.experiment != "fig4"
    )


@dataclass
class Estimates:
    """Wall seconds of finished records: whole trainings (`_whole_training`), by `_train_key`; runs that
    scored a reused model, by `_score_key`; and, for a recipe no record has, seconds per trained epoch of any
    recipe of the same system, training data and size (`_epoch_key`)."""

    trained: dict[str, list[float]]
    scored: dict[str, list[float]]
    per_epoch: dict[str, list[float]]

    @classmethod
    def from_records(cls, records: Sequence[BenchRecord]) -> Estimates:
        trained: dict[str, list[float]] = defaultdict(list)
        scored: dict[str, list[float]] = defaultdict(list)
        per_epoch: dict[str, list[float]] = defaultdict(list)
        seen: set[tuple[str, str]] = set()  # (experiment, run key): a record in two folders counts once
        for rec in records:
            if (rec.spec.experiment, rec.run_key) in seen or rec.wall_time_s is None:
                continue
            seen.add((rec.spec.experiment, rec.run_key))
            secs = float(rec.wall_time_s)
            if rec.extra.get("reused_model"):
                scored[_score_key(rec.spec)].append(secs)
            elif _whole_training(rec):
                trained[_train_key(rec.spec)].append(secs)
                curve = rec.extra.get("valid_f1_by_epoch")
                if isinstance(curve, list) and curve:  # the epochs it trained (early stopping ends some)
                    per_epoch[_epoch_key(rec.spec)].append(secs / len(curve))
        return cls(dict(trained), dict(scored), dict(per_epoch))

    @classmethod
    def from_folders(cls, folders: Sequence[Path]) -> Estimates:
        """From every readable record under the folders (a damaged file is passed over alone; `records
        refresh` names it)."""
        records = []
        for folder in folders:
            if not Path(folder).is_dir():
                continue
            for path in record_files(folder):
                try:
                    records.append(read_record(path))
                except RecordError:
                    continue
        return cls.from_records(records)

    def minutes(self, spec: RunSpec, action: str, share: float = 1.0) -> tuple[float | None, int, bool]:
        """(minutes, records it is the median of, scaled: from another recipe's time per epoch times this
        run's epochs, an upper bound where early stopping may end it sooner)."""
        secs = self.scored.get(_score_key(spec)) if action == "score" else self.trained.get(_train_key(spec))
        if secs:
            return statistics.median(secs) * share / 60, len(secs), False
        epochs = _epochs(spec)
        per = self.per_epoch.get(_epoch_key(spec)) if action != "score" and epochs else None
        if per:
            return statistics.median(per) * epochs * share / 60, len(per), True
        return None, 0, False


def _epochs(spec: RunSpec) -> int | None:
    epochs = spec.config.get("epochs")
    return int(epochs) if isinstance(epochs, int) and epochs > 0 else None


def _finished(ctx: RunContext, spec: RunSpec) -> BenchRecord | None:
    """A finished record as `catmner-bench run` will see it after refreshing schema-1 records (in memory)."""
    return finished(ctx.output, spec, read=refreshed)


def plan_actions(
    names: Sequence[str],
    ctx: RunContext,
    systems: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    estimate_from: Sequence[Path] = (),
    specs: Sequence[RunSpec] | None = None,
) -> list[PlannedRun]:
    """Every run the command plans (``specs``, when already planned), in plan order, with its action and
    estimated minutes, decided as `runner.run_spec` and `sweep.Sweep` will decide them."""
    specs = list(specs) if specs is not None else plan_sweep(names, ctx, systems, datasets)
    waits_for = prerequisites(specs)
    planned = {run_name(s): s for s in specs}
    est = Estimates.from_folders([ctx.output, *estimate_from])
    out = []
    for spec in specs:
        if _finished(ctx, spec) is not None:
            out.append(PlannedRun(spec, "finished", "", 0.0, 0))
            continue
        wait = waits_for.get(run_name(spec))
        # a wait only matters while the run waited for has not finished: once it has, the run decides as one
        # whose twin finished before the command (and trains where its model or data does not serve)
        if wait is not None and _finished(ctx, planned[wait]) is not None:
            wait = None
        if SAME_RUNS.get(spec.experiment) is not None:
            if same_run(ctx, spec) is not None:  # found: is it the same data? (load_data reads, memoised)
                data_info = {split: describe(t) for split, t in load_data(ctx, spec).items()}
                if (same := same_run(ctx, spec, data_info)) is not None:
                    detail = f"same run as {same.spec.experiment}/{same.run_id}"
                    out.append(PlannedRun(spec, "copy", detail, 0.0, 0))
                    continue
            elif wait is not None:
                out.append(PlannedRun(spec, "copy", f"after {wait}", 0.0, 0))
                continue
        detail, action, share = "", "train", 1.0
        # as `runner.run_spec` decides: a model scored on another dataset, or drawn, must still be saved
        need_model = (
            spec.train_dataset != spec.test_dataset
            or experiment(spec.experiment).after_train(ctx, spec) is not None
        )
        reused = reusable_model(ctx, spec, need_model=need_model) or searched_model(ctx, spec)
        if reused is not None:
            action, detail = "score", f"reuses {reused[0].spec.experiment}/{reused[0].run_id}"
        elif wait is not None and table1_twin(spec) is not None:
            action, detail = "score", f"after {wait}"
        elif (done := checkpoint_epoch(ctx.output / "runs" / spec.experiment / spec.run_id)) is not None:
            epochs = _epochs(spec)
            action, detail = "resume", f"after epoch {done}"
            share = max(0.0, (epochs - done) / epochs) if epochs else 1.0
        minutes, basis, scaled = est.minutes(spec, action, share)
        out.append(PlannedRun(spec, action, detail, minutes, basis, scaled))
    return out


def dry_run(
    names: Sequence[str],
    ctx: RunContext,
    systems: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    estimate_from: Sequence[Path] = (),
) -> dict[str, Any]:
    """What `sweep.run_experiment` would do, run by run, without doing it: {"plan": [PlannedRun], "summary":
    workers -> dict, "render": workers -> Markdown}. Unknown experiments and missing data fail as they would
    in a real run, before anything else."""
    if not names:
        raise BenchError("no experiment named")
    exps = [experiment(n) for n in names]
    measuring = [e.name for e in exps if type(e).measure is not Experiment.measure]
    if measuring:
        raise BenchError(
            f"{measuring[0]} measures in this process and plans no runs: --dry-run has nothing to show"
        )
    missing = [str(p) for p in estimate_from if not Path(p).is_dir()]
    if missing:
        raise BenchError(f"--estimate-from {missing[0]}: no such folder")
    specs = plan_sweep(list(names), ctx, systems, datasets)
    check_data(ctx.data_dir, [d for s in specs for d in (s.train_dataset, s.test_dataset)])
    rows = plan_actions(list(names), ctx, systems, datasets, estimate_from, specs)
    return {
        "plan": rows,
        "summary": lambda workers=1: summary(rows, workers),
        "render": lambda workers=1: render(rows, workers),
    }


def summary(rows: Sequence[PlannedRun], workers: int | None = 1) -> dict[str, Any]:
    """Counts by action, the estimated minutes one after another and, with ``workers`` runs at a time (None:
    unknown), packed longest first ignoring waits (a lower bound), and how many runs to do have no estimate."""
    todo = [r for r in rows if r.action not in ("finished", "copy")]
    known = sorted((r.minutes for r in todo if r.minutes is not None), reverse=True)
    wall = None
    if workers:
        lanes = [0.0] * workers
        for m in known:
            lanes[lanes.index(min(lanes))] += m
        wall = round(max(lanes), 1)
    return {
        "runs": len(rows),
        **{a: sum(r.action == a for r in rows) for a in ACTIONS},
        "minutes_sequential": round(sum(known), 1),
        "minutes_wall": wall,
        "workers": workers,
        "unknown": sum(r.minutes is None for r in todo),
    }


def _mark(r: PlannedRun) -> str:
    if not r.scaled:
        return ""
    return "≤ " if r.spec.config.get("patience") else "~ "


def render(rows: Sequence[PlannedRun], workers: int | None = 1) -> str:
    """The plan as a Markdown table (one row per run) and a closing line with the totals."""
    table = [
        [
            run_name(r.spec),
            r.action,
            r.detail,
            "-"
            if r.action in ("finished", "copy")
            else ("?" if r.minutes is None else _mark(r) + f"{r.minutes:.1f}"),
            str(r.basis) if r.basis else "",
        ]
        for r in rows
    ]
    s = summary(rows, workers)
    counts = ", ".join(f"{s[a]} {a}" for a in ACTIONS if s[a])
    at_a_time = (
        f"at least {s['minutes_wall']:.0f} min with {s['workers']} at a time"
        if s["minutes_wall"] is not None
        else "runs at a time unknown (a Ray cluster: give --workers)"
    )
    total = (
        f"{s['runs']} planned runs: {counts or 'none'}. Estimated {s['minutes_sequential']:.0f} min one after "
        f"another, {at_a_time}"
        + (f"; {s['unknown']} run(s) without a record to estimate from (not counted)" if s["unknown"] else "")
        + ". '~': no record of this recipe; its epochs times the minutes per epoch of the same system's other "
        "recipes on the same data ('≤': the most, as early stopping may end it sooner). Nothing was run."
    )
    header = ["run", "action", "detail", "est. min", "records"]
    return md_table(header, table) + "\n\n" + total if rows else total


def workers_hint(
    executor: str,
    workers: int | None,
    cpus_per_run: int | None,
    gpus_per_run: float | None,
    ray_address: str | None,
    paper_profile: bool,
) -> int | None:
    """Runs at a time the command would have: 1 for the local loop; for Ray, ``--workers``, else as many as
    this machine's CPUs (and GPUs: a run takes 1 under the paper profile unless ``--gpus-per-run``) hold at
    ``--cpus-per-run``; None for a cluster elsewhere (``--ray-address``: its size is not known here)."""
    if executor != "ray":
        return 1
    if workers:
        return workers
    if ray_address not in (None, "", "local"):
        return None
    fits = max(1, math.floor((os.cpu_count() or 1) / max(1, cpus_per_run or 1)))
    gpus = gpus_per_run if gpus_per_run is not None else (1.0 if paper_profile else 0.0)
    if gpus:
        import torch

        fits = min(fits, int(torch.cuda.device_count() // gpus))
    return max(1, fits)
