"""A sweep: every planned run of one or more experiments, run by an executor, with one progress line and
one summary whatever the executor.

This module owns what every executor shares (`catmner_bench.executors`: `LocalExecutor`, today's loop, and
`RayExecutor`): which runs wait for which (`prerequisites`: a run that reuses a Table 1 model waits for that
run when it is in the same sweep), skipping finished runs, running one run where the executor put it
(`execute_run`: `run_spec`, with a failure kept to that run: its error goes into its failure record
``<output>/failed/<experiment>/<run_id>.json`` and into the summary, the other runs go on), the progress line
(finished / running / failed, with a bar) and the summary `run_experiment` returns.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from catmner_model.atomic import atomic_write_json

from catmner_bench.errors import BenchError
from catmner_bench.experiments import Experiment, experiment
from catmner_bench.recipes import recipe_of, refresh
from catmner_bench.records import BenchRecord, RunSpec, finished
from catmner_bench.runner import SAME_RUNS, RunContext, now_iso, run_spec, table1_twin
from catmner_bench.tweets import check_data


def run_name(spec: RunSpec) -> str:
    """``experiment/run_id``: a run's name in progress lines, summaries and its files' paths."""
    return f"{spec.experiment}/{spec.run_id}"


def failure_path(output: str | Path, spec: RunSpec) -> Path:
    """Where a failed run's failure record lies (removed when the run later finishes)."""
    return Path(output) / "failed" / spec.experiment / f"{spec.run_id}.json"


@dataclass
class Outcome:
    """What became of one planned run: its record (finished now or before) or its error."""

    spec: RunSpec
    record: BenchRecord | None = None
    ran: bool = False  # trained / scored now (False: skipped, finished before; or failed)
    error: str | None = None  # one line: the run failed
    failure: str | None = None  # path of its failure record

    @property
    def failed(self) -> bool:
        return self.error is not None


def checkpoint_epoch(run_dir: Path) -> int | None:
    """The epoch of the last complete checkpoint in a span run's trainer directory (None: none there), read
    from its documented layout (``checkpoint.json`` names ``ckpt-epoch-NNNN/`` whose ``state.json`` holds
    "epoch"; see `catmner_model.training`): the epoch a run started now resumes after."""
    import json

    try:
        pointer = json.loads((run_dir / "checkpoint.json").read_text(encoding="utf-8"))
        state = json.loads((run_dir / str(pointer["dir"]) / "state.json").read_text(encoding="utf-8"))
        return int(state["epoch"])
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def record_failure(ctx: RunContext, spec: RunSpec, error: str, detail: str, compute: dict[str, Any]) -> Path:
    """Write a run's failure record (its error, the traceback or the executor's report, where it ran)."""
    path = failure_path(ctx.output, spec)
    atomic_write_json(
        path,
        {
            "run_id": spec.run_id,
            "run_key": spec.key,
            "spec": spec.to_json(),
            "error": error,
            "detail": detail,
            "compute": compute,
            "failed_at": now_iso(),
            "command": ctx.command,
        },
    )
    return path


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def execute_run(ctx: RunContext, spec: RunSpec, compute: dict[str, Any]) -> Outcome:
    """Run one planned run in this process (the executor chose where), as its experiment asks (`after_train`,
    test scored or not). A failure of the run itself is returned, with its failure record written, never
    raised: the sweep goes on. ``compute`` (executor, node, resources) goes into the record with the process
    id and, for a span run that resumes, the epoch it resumes after."""
    resumed = checkpoint_epoch(ctx.output / "runs" / spec.experiment / spec.run_id)
    compute = {**compute, "pid": os.getpid(), "resumed_after_epoch": resumed}
    try:
        e = experiment(spec.experiment)
        record, ran = run_spec(
            ctx,
            spec,
            recipe=recipe_of(spec),
            after_train=e.after_train(ctx, spec),
            score_test=e.scores_test,
            compute=compute,
        )
    except Exception as exc:  # noqa: BLE001 - a run fails alone: any error of it is recorded, the sweep goes on
        error = first_line(exc)
        path = record_failure(ctx, spec, error, traceback.format_exc(), compute)
        return Outcome(spec, error=error, failure=str(path))
    failure_path(ctx.output, spec).unlink(missing_ok=True)
    return Outcome(spec, record, ran)


def prerequisites(specs: Sequence[RunSpec]) -> dict[str, str]:
    """{run name: name of the run it waits for}: a run that reuses a Table 1 model (`runner.table1_twin`)
    waits for that Table 1 run when the sweep holds it (Table 2 on Table 1's models); then it reuses the model
    as it would reuse one finished by an earlier command. Likewise a run another experiment of the sweep also
    plans (`runner.SAME_RUNS`), after the first of the two, whose record it copies."""
    order = {run_name(s): i for i, s in enumerate(specs)}
    out = {}
    for i, s in enumerate(specs):
        twin = table1_twin(s)
        if twin is not None and run_name(twin) in order and run_name(twin) != run_name(s):
            out[run_name(s)] = run_name(twin)
        elif (other := SAME_RUNS.get(s.experiment)) is not None:
            # the same run planned by another experiment too (Figure 3 and the decisive experiment): the later
            # one in plan order waits and copies it
            same = run_name(dataclasses.replace(s, experiment=other))
            if order.get(same, i) < i:
                out[run_name(s)] = same
    return out


class Progress:
    """One line per change on stderr (not when quiet): a bar of the runs done, then finished (skipped),
    running and failed counts, and the run that changed."""

    WIDTH = 24

    def __init__(self, total: int, quiet: bool = False, stream: Any = None) -> None:
        self.total, self.quiet, self.stream = total, quiet, stream
        self.finished = self.skipped = self.running = self.failed = 0

    def line(self, what: str = "") -> str:
        done = self.finished + self.failed
        filled = round(self.WIDTH * done / self.total) if self.total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        counts = (
            f"{self.finished}/{self.total} finished ({self.skipped} skipped), {self.running} running, "
            f"{self.failed} failed"
        )
        return f"[{bar}] {counts}" + (f"  {what}" if what else "")

    def show(self, what: str) -> None:
        if not self.quiet:
            print(self.line(what), file=self.stream or sys.stderr, flush=True)

    def start(self, spec: RunSpec) -> None:
        self.running += 1
        self.show(f"started {run_name(spec)}")

    def end(self, outcome: Outcome, was_running: bool = True) -> None:
        self.running -= was_running
        if outcome.failed:
            self.failed += 1
            self.show(f"FAILED {run_name(outcome.spec)}: {outcome.error}")
        else:
            self.finished += 1
            self.skipped += not outcome.ran
            self.show(
                f"{'finished' if outcome.ran else 'skipped (finished before)'} {run_name(outcome.spec)}"
            )


@dataclass
class Sweep:
    """The runs of one command and their state, shared by the executors: which run is ready (its
    prerequisite ended; finished runs are skipped here, without starting them), which started, what came of
    each. An executor takes `ready` runs, calls `start` when it hands one out and `end` with its outcome."""

    ctx: RunContext
    specs: list[RunSpec]
    waits_for: dict[str, str] = field(default_factory=dict)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    unfinished: set[str] = field(default_factory=set)  # runs found without a record (not read again)
    progress: Progress | None = None

    def __post_init__(self) -> None:
        self.waits_for = self.waits_for or prerequisites(self.specs)
        self.progress = self.progress or Progress(len(self.specs), self.ctx.quiet)

    @property
    def pending(self) -> list[RunSpec]:
        return [s for s in self.specs if run_name(s) not in self.outcomes and run_name(s) not in self.started]

    def ready(self, limit: int | None = None) -> list[RunSpec]:
        """Up to ``limit`` runs to start now, in plan order: not started, their prerequisite ended. A finished
        run is skipped (its outcome recorded, its record read once) instead of returned; as that may end
        another run's wait, the plan is gone through again until nothing more is skipped."""
        out: list[RunSpec] = []
        chosen: set[str] = set()
        again = True
        while again:
            again = False
            for s in self.pending:
                name = run_name(s)
                if name in chosen:
                    continue
                if limit is not None and len(out) >= limit:
                    return out
                if name not in self.unfinished:
                    done = finished(self.ctx.output, s)
                    if done is not None:
                        self.end(Outcome(s, done, ran=False), was_running=False)
                        again = True
                        continue
                    self.unfinished.add(name)
                wait = self.waits_for.get(name)
                if wait is not None and wait not in self.outcomes:
                    continue
                out.append(s)
                chosen.add(name)
        return out

    def start(self, spec: RunSpec) -> None:
        self.started.add(run_name(spec))
        self.progress.start(spec)

    def end(self, outcome: Outcome, was_running: bool = True) -> None:
        name = run_name(outcome.spec)
        self.started.discard(name)
        self.outcomes[name] = outcome
        self.progress.end(outcome, was_running)

    def summary(self, names: Sequence[str]) -> dict[str, Any]:
        """{"experiment", "records", "ran", "skipped", "failed": [{"run", "error", "failure"}], "output"}."""
        outs = [self.outcomes[run_name(s)] for s in self.specs if run_name(s) in self.outcomes]
        return {
            "experiment": ",".join(names),
            "records": [o.record for o in outs if o.record is not None],
            "ran": sum(o.ran for o in outs),
            "skipped": sum(not o.ran and not o.failed for o in outs),
            "failed": [
                {"run": run_name(o.spec), "error": o.error, "failure": o.failure} for o in outs if o.failed
            ],
            "output": str(self.ctx.output),
        }


class Executor(Protocol):
    """Runs a sweep's runs: takes `Sweep.ready` runs, calls `Sweep.start` / `Sweep.end`, until none is left.
    `execute_run` is what runs one run wherever the executor puts it."""

    name: str

    def run(self, sweep: Sweep) -> None: ...


class LocalExecutor:
    """Today's loop: every run in this process, one after another, in plan order (a run waiting for another
    comes after it). Records say executor "local", this machine and the threads torch uses."""

    name = "local"

    def compute(self, ctx: RunContext) -> dict[str, Any]:
        import socket

        import torch

        threads = ctx.profile.num_threads or torch.get_num_threads()
        gpus = 1 if torch.cuda.is_available() else 0  # a run trains on the first GPU
        return {
            "executor": self.name,
            "node": socket.gethostname(),
            "resources": {"CPU": threads, "GPU": gpus},
        }

    def run(self, sweep: Sweep) -> None:
        compute = self.compute(sweep.ctx)
        while ready := sweep.ready(1):
            spec = ready[0]
            sweep.start(spec)
            sweep.end(execute_run(sweep.ctx, spec, compute))
        if sweep.pending:
            raise BenchError(f"{len(sweep.pending)} run(s) wait for a run that never ends")


def plan_sweep(
    names: Sequence[str],
    ctx: RunContext,
    systems: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
) -> list[RunSpec]:
    """The runs of the named experiments under the context's profile, in plan order (a run planned twice,
    e.g. by two experiments' shared settings, once)."""
    specs: dict[str, RunSpec] = {}
    for name in names:
        for s in experiment(name).plan(ctx, systems, datasets):
            specs.setdefault(run_name(s), s)
    return list(specs.values())


def run_experiment(
    names: str | Sequence[str],
    ctx: RunContext,
    systems: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    executor: Executor | None = None,
) -> dict[str, Any]:
    """Run (or skip, when finished) every planned run of one or more experiments through ``executor``
    (default `LocalExecutor`; an experiment that measures instead, speed, runs alone, in this process).
    Returns the sweep's summary (`Sweep.summary`); failed runs are listed there,
    not raised."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise BenchError("no experiment named")
    exps = [experiment(n) for n in names]  # unknown names fail here, before anything runs
    if (ctx.output / "records").is_dir():  # finished runs' recipe facts as the planner has them now (their
        refresh(ctx.output, strict=False)  # schema-1 records migrated, so they are skipped, not redone)
    measuring = [e for e in exps if type(e).measure is not Experiment.measure]  # speed: no planned runs
    if measuring:
        if len(exps) > 1:
            raise BenchError(f"{measuring[0].name} measures on its own: run it without other experiments")
        result = measuring[0].measure(ctx, recipe_of)
        return {**(result or {}), "failed": []}
    executor = executor or LocalExecutor()
    specs = plan_sweep(names, ctx, systems, datasets)
    check_data(
        ctx.data_dir, [d for s in specs for d in (s.train_dataset, s.test_dataset)]
    )  # not once per run
    sweep = Sweep(ctx, specs)
    t0 = time.perf_counter()
    executor.run(sweep)
    out = sweep.summary(names)
    out["executor"], out["wall_s"] = executor.name, round(time.perf_counter() - t0, 3)
    return out
