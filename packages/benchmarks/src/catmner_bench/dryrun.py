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
median wall time of the records of the same system, training data, config and training-set size (a score
action: of the records that scored a reused model of that system on that dataset); a resumed run, the share
of its epochs still to train. Those records ran where and beside what they ran (their ``extra["compute"]``
says), so the estimate is as good as that likeness; a run with no such record is counted as unknown.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from catmner_bench.errors import BenchError
from catmner_bench.experiments import Experiment, experiment
from catmner_bench.markdown import md_table
from catmner_bench.records import RecordError, RunSpec, finished, iter_records
from catmner_bench.runner import SAME_RUNS, RunContext, reusable_model, same_run, searched_model
from catmner_bench.sweep import checkpoint_epoch, plan_sweep, prerequisites, run_name
from catmner_bench.tweets import check_data

ACTIONS = ("finished", "copy", "score", "resume", "train")


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    action: str  # one of ACTIONS
    detail: str  # what it reuses, waits for or resumes after ("" for a plain train / finished run)
    minutes: float | None  # estimated wall minutes (0 for a finished run; None: no record to go by)
    basis: int  # how many records the estimate is the median of
    scaled: bool = False  # from other recipes' minutes per epoch, times this run's epochs


def _train_key(spec: RunSpec) -> str:
    alpha = spec.sample.get("alpha") if spec.sample else None
    return json.dumps([spec.system, spec.train_dataset, spec.config, alpha], sort_keys=True)


def _score_key(spec: RunSpec) -> tuple[str, str]:
    return spec.system, spec.test_dataset


def _epoch_key(spec: RunSpec) -> str:
    alpha = spec.sample.get("alpha") if spec.sample else None
    return json.dumps([spec.system, spec.train_dataset, alpha], sort_keys=True)


@dataclass
class Estimates:
    """Wall seconds of finished records: runs that trained, by `_train_key`; runs that scored a reused model,
    by (system, test dataset); and, for a recipe no record has, seconds per trained epoch of any recipe of the
    same system, training data and size (`_epoch_key`)."""

    trained: dict[str, list[float]]
    scored: dict[tuple[str, str], list[float]]
    per_epoch: dict[str, list[float]]

    @classmethod
    def from_folders(cls, folders: Sequence[Path]) -> Estimates:
        trained: dict[str, list[float]] = defaultdict(list)
        scored: dict[tuple[str, str], list[float]] = defaultdict(list)
        per_epoch: dict[str, list[float]] = defaultdict(list)
        seen: set[tuple[str, str]] = (
            set()
        )  # (experiment, run key): a record copied to two folders counts once
        for folder in folders:
            if not Path(folder).is_dir():
                continue
            try:
                records = list(iter_records(folder))
            except RecordError:
                continue  # a damaged record elsewhere does not stop an estimate; `records check` names it
            for _, rec in records:
                if (rec.spec.experiment, rec.run_key) in seen or rec.wall_time_s is None:
                    continue
                seen.add((rec.spec.experiment, rec.run_key))
                if rec.extra.get("same_run"):
                    continue  # a copy took no time
                if rec.extra.get("reused_model"):
                    scored[_score_key(rec.spec)].append(float(rec.wall_time_s))
                else:
                    trained[_train_key(rec.spec)].append(float(rec.wall_time_s))
                    curve = rec.extra.get("valid_f1_by_epoch")
                    if isinstance(curve, list) and curve:  # epochs it trained (early stopping ends some)
                        per_epoch[_epoch_key(rec.spec)].append(float(rec.wall_time_s) / len(curve))
        return cls(dict(trained), dict(scored), dict(per_epoch))

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


def plan_actions(
    names: Sequence[str],
    ctx: RunContext,
    systems: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    estimate_from: Sequence[Path] = (),
) -> list[PlannedRun]:
    """Every run the command plans, in plan order, with its action and estimated minutes."""
    specs = plan_sweep(names, ctx, systems, datasets)
    waits_for = prerequisites(specs)
    est = Estimates.from_folders([ctx.output, *estimate_from])
    out = []
    for spec in specs:
        if finished(ctx.output, spec) is not None:
            out.append(PlannedRun(spec, "finished", "", 0.0, 0))
            continue
        wait = waits_for.get(run_name(spec))
        if (same := same_run(ctx, spec)) is not None:
            out.append(PlannedRun(spec, "copy", f"same run as {same.spec.experiment}/{same.run_id}", 0.0, 0))
            continue
        if wait is not None and wait.split("/")[0] == SAME_RUNS.get(spec.experiment):
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
        elif wait is not None:
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
    specs_names = list(names)
    rows = plan_actions(specs_names, ctx, systems, datasets, estimate_from)
    check_data(ctx.data_dir, [d for r in rows for d in (r.spec.train_dataset, r.spec.test_dataset)])
    return {
        "plan": rows,
        "summary": lambda workers=1: summary(rows, workers),
        "render": lambda workers=1: render(rows, workers),
    }


def summary(rows: Sequence[PlannedRun], workers: int = 1) -> dict[str, Any]:
    """Counts by action, the estimated minutes (one after another, and spread over ``workers`` runs at a time
    by a greedy longest-first schedule), and how many runs to do have no estimate."""
    todo = [r for r in rows if r.action not in ("finished", "copy")]
    known = sorted((r.minutes for r in todo if r.minutes is not None), reverse=True)
    lanes = [0.0] * max(1, workers)
    for m in known:
        lanes[lanes.index(min(lanes))] += m
    return {
        "runs": len(rows),
        **{a: sum(r.action == a for r in rows) for a in ACTIONS},
        "minutes_sequential": round(sum(known), 1),
        "minutes_wall": round(max(lanes), 1),
        "workers": max(1, workers),
        "unknown": sum(r.minutes is None for r in todo),
    }


def _mark(r: PlannedRun) -> str:
    if not r.scaled:
        return ""
    return "≤ " if r.spec.config.get("patience") else "~ "


def render(rows: Sequence[PlannedRun], workers: int = 1) -> str:
    """The plan as a Markdown table (one row per run) and a closing line with the totals."""
    table = [
        [
            run_name(r.spec),
            r.action,
            r.detail,
            "-" if r.action == "finished" else ("?" if r.minutes is None else _mark(r) + f"{r.minutes:.1f}"),
            str(r.basis) if r.basis else "",
        ]
        for r in rows
    ]
    s = summary(rows, workers)
    counts = ", ".join(f"{s[a]} {a}" for a in ACTIONS if s[a])
    total = (
        f"{s['runs']} planned runs: {counts or 'none'}. Estimated {s['minutes_sequential']:.0f} min one after "
        f"another, about {s['minutes_wall']:.0f} min with {s['workers']} at a time"
        + (f"; {s['unknown']} run(s) without a record to estimate from (not counted)" if s["unknown"] else "")
        + ". '~': no record of this recipe; its epochs times the minutes per epoch of the same system's other "
        "recipes on the same data ('≤': the most, as early stopping may end it sooner). Nothing was run."
    )
    header = ["run", "action", "detail", "est. min", "records"]
    return md_table(header, table) + "\n\n" + total if rows else total


def workers_hint(executor: str, workers: int | None, cpus_per_run: int | None, cpus: int | None) -> int:
    """Runs at a time the command would have: 1 for the local loop; for Ray, ``--workers`` or as many as the
    machine's CPUs hold at ``--cpus-per-run``."""
    if executor != "ray":
        return 1
    if workers:
        return workers
    return max(1, math.floor((cpus or 1) / max(1, cpus_per_run or 1)))
