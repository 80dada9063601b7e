"""The `catmner-bench` command line: `run EXPERIMENT`, `report DIR`, `records refresh DIR` and `speed-executors`.

Commands only parse options and call plain functions (`sweep.run_experiment`, `write_report`). Known failures
(`BenchError`, `CatmnerError`, `KbxError`, unusable files) are ``catmner-bench: error: ...`` on stderr and exit
code 1 through one handler, `_handled` (kb_expand's `cli_errors`, shared by the three CLIs); Ctrl-C is one line
and exit code 130; ``--debug`` (before or after the command) or ``CATMNER_DEBUG=1`` shows the traceback.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from kb_expand.cli_errors import handle_errors

app = typer.Typer(
    help="Reproduce the CAT-MNER paper's tables and figures; report them beside the paper's numbers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks instead of one-line errors.")]


_state = {"debug": False}  # `catmner-bench --debug ...` (set by the app's callback)


@app.callback()
def _main(debug: DebugOpt = False) -> None:
    _state["debug"] = debug


# the one error handler of every `catmner-bench` command (kb_expand.cli_errors, shared by the three CLIs): a
# known error is ``catmner-bench: error: <first line>`` and exit status 1, Ctrl-C ``catmner-bench:
# interrupted`` and 130 (finished runs are kept: the same command resumes); ``--debug`` before or after the
# command, or ``CATMNER_DEBUG=1``, shows the traceback instead
_handled = handle_errors(
    "catmner-bench", lambda: _state["debug"], " (finished runs are kept: the same command resumes)"
)


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _ints(value: str | None, option: str) -> tuple[int, ...] | None:
    from catmner_bench.errors import BenchError

    try:
        return tuple(int(s) for s in _csv(value) or ()) or None
    except ValueError:
        raise BenchError(f"{option} {value!r}: expected comma-separated integers") from None


def _seeds(value: str | None) -> tuple[int, ...] | None:
    return _ints(value, "--seeds")


@app.command("run")
@_handled
def run_cli(
    experiment: Annotated[
        str,
        typer.Argument(
            help="table1 | table2 | table3 | fig3 | fig4 | search | decisive | speed (several: comma-separated)"
        ),
    ],
    profile: Annotated[
        str, typer.Option(help="smoke (tests) | quick (CPU) | paper (GPU, Sec. 4.1)")
    ] = "quick",
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Benchmark output folder (records/, runs/).")
    ] = Path("runs/bench"),
    text_encoder: Annotated[str | None, typer.Option(help="HF name/path, 'minilm' or 'tiny'.")] = None,
    image_encoder: Annotated[
        str | None, typer.Option(help="efficientnet-lite0 | open_clip:<model>:<tag|ckpt> | tiny.")
    ] = None,
    seeds: Annotated[str | None, typer.Option(help="Comma-separated seeds (default: the profile's).")] = None,
    systems: Annotated[
        str | None, typer.Option(help="Comma-separated systems (default: all of the experiment).")
    ] = None,
    datasets: Annotated[str | None, typer.Option(help="Comma-separated: twitter2015,twitter2017.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the profile's span-model epochs.")] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Span models: stop a run after N validations in a row without a validation-F1 gain "
            "(--epochs is then the most it trains; default: the profile's, none). Part of the run key.",
        ),
    ] = None,
    alphas: Annotated[
        str | None,
        typer.Option(
            help="fig3, decisive: comma-separated training-set sizes (default: the profile's; quick: "
            "50,100,200,400 for fig3, 100,200 for decisive)."
        ),
    ] = None,
    samplings: Annotated[
        int | None,
        typer.Option(
            help="fig3, decisive: random samplings of each size (default: the profile's; quick: 3 for fig3, "
            "8 for decisive; the paper: 8). More samplings keep the finished ones."
        ),
    ] = None,
    rounds: Annotated[
        str | None,
        typer.Option(help="search: comma-separated rounds to run (default: every round; e.g. 3)."),
    ] = None,
    setting: Annotated[
        list[str] | None,
        typer.Option(
            help="search: run only the settings whose name starts with this (case-insensitive; repeat the "
            "option for several, e.g. --setting 'profile default' --setting '10 epochs'; default: every setting)."
        ),
    ] = None,
    max_train: Annotated[
        int | None, typer.Option(help="Use this many training tweets (default: the profile's).")
    ] = None,
    max_eval: Annotated[
        int | None, typer.Option(help="Use this many valid/test tweets (default: the profile's).")
    ] = None,
    labels_textual: Annotated[
        str | None, typer.Option(help="Textual-KB label words: kb source, build id or JSON.")
    ] = None,
    labels_multimodal: Annotated[
        str | None, typer.Option(help="Multimodal-KB label words: source, id or JSON.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder with twitter2015/ and twitter2017/.")] = None,
    image_dir: Annotated[Path | None, typer.Option(help="Folder with <dataset>_images/.")] = None,
    db: Annotated[
        str | None, typer.Option(help="kb store (default: $KBX_DB / $CATMNER_HOME/kb.sqlite).")
    ] = None,
    feature_cache: Annotated[Path | None, typer.Option(help="Grid-feature cache folder.")] = None,
    visual: Annotated[
        str | None,
        typer.Option(
            help="Span models' visual source: grid | caption | grid+caption (default: the profile's)."
        ),
    ] = None,
    captions: Annotated[
        Path | None, typer.Option(help="Caption file or folder (default: DATA_DIR/captions/).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: the profile's).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    executor: Annotated[
        str, typer.Option(help="local: one run after another in this process | ray: runs as Ray tasks.")
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="ray: 'auto' joins the cluster started on this machine, HOST:PORT the cluster of that head "
            "(default: start a Ray of this machine for the command)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(help="ray: runs at a time (default: as many as the cluster's CPUs/GPUs hold)."),
    ] = None,
    cpus_per_run: Annotated[
        int | None, typer.Option(help="ray: CPUs (torch threads) per run (default: --threads, else 1).")
    ] = None,
    gpus_per_run: Annotated[
        float | None, typer.Option(help="ray: GPUs per run (default: 1 under --profile paper, else 0).")
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(help="ray: reruns of a run whose worker or node died (it resumes; default 3)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Run nothing: list every planned run with what the command would do with it (finished, "
            "copy the same run of another experiment, score a saved model, resume, train) and its estimated "
            "minutes, from finished records of the same recipe in OUTPUT and in --estimate-from.",
        ),
    ] = False,
    estimate_from: Annotated[
        list[Path] | None,
        typer.Option(
            metavar="DIR", help="--dry-run: more records folders to estimate minutes from (repeatable)."
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Run experiments' runs (finished runs of the same command are skipped) and print a summary.

    EXPERIMENT may be several, comma-separated (table1,table2: Table 2's runs wait for the Table 1 models
    they reuse). A run that fails is listed in the summary with its error (details in
    OUTPUT/failed/EXPERIMENT/RUN.json) and the others go on; the exit status is then 1. --dry-run shows
    the plan and its estimated cost first."""
    from catmner_bench.errors import BenchError

    if estimate_from and not dry_run:
        raise BenchError("--estimate-from: only with --dry-run")
    made = make_executor(
        executor,
        ray_address=ray_address,
        workers=workers,
        cpus_per_run=cpus_per_run,
        gpus_per_run=gpus_per_run,
        max_retries=max_retries,
    )
    result = run(
        experiment,
        executor=made,
        dry_run=dry_run,
        estimate_from=estimate_from or (),
        profile=profile,
        output=output,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        seeds=_seeds(seeds),
        systems=_csv(systems),
        datasets=_csv(datasets),
        epochs=epochs,
        patience=patience,
        alphas=_ints(alphas, "--alphas"),
        samplings=samplings,
        rounds=_csv(rounds),
        setting=setting or None,
        max_train=max_train,
        max_eval=max_eval,
        labels_textual=labels_textual,
        labels_multimodal=labels_multimodal,
        data_dir=data_dir,
        image_dir=image_dir,
        db=db,
        feature_cache=feature_cache,
        visual=visual,
        captions=captions,
        threads=threads,
        quiet=quiet,
    )
    if dry_run:
        from catmner_bench.dryrun import workers_hint

        at_a_time = workers_hint(
            executor, workers, cpus_per_run or threads, gpus_per_run, ray_address, profile == "paper"
        )
        typer.echo(result["render"](at_a_time))
        return
    failed = result.get("failed") or []
    where = Path(result["output"]) / "records" / (experiment if "," not in experiment else "")
    typer.echo(
        f"{experiment}: {result['ran']} run(s) done, {result['skipped']} skipped (finished before)"
        + (f", {len(failed)} failed" if failed else "")
        + f"; records in {where}"
    )
    for f in failed[:FAILURES_SHOWN]:
        typer.echo(f"failed {f['run']}: {f['error']} ({f['failure']})", err=True)
    if len(failed) > FAILURES_SHOWN:
        typer.echo(f"... and {len(failed) - FAILURES_SHOWN} more under {result['output']}/failed", err=True)
    if failed:
        if debug or _state["debug"] or os.environ.get("CATMNER_DEBUG", "") not in ("", "0"):
            for f in failed:
                typer.echo(json.loads(Path(f["failure"]).read_text(encoding="utf-8"))["detail"], err=True)
        raise typer.Exit(1)


FAILURES_SHOWN = 10  # failed runs listed after a summary (all are in OUTPUT/failed/)


def make_executor(name: str, **options: Any) -> Any:
    """The executor `--executor NAME` names, with its options (ray's only under ray)."""
    from catmner_bench.errors import BenchError

    if name == "local":
        given = [k for k, v in options.items() if v is not None]
        if given:
            flags = ", ".join("--" + k.replace("_", "-") for k in given)
            raise BenchError(f"{flags}: only with --executor ray")
        from catmner_bench.sweep import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        from catmner_bench.ray_executor import RayExecutor

        return RayExecutor(
            options.get("ray_address"),
            workers=options.get("workers"),
            cpus_per_run=options.get("cpus_per_run"),
            gpus_per_run=options.get("gpus_per_run"),
            max_retries=3 if options.get("max_retries") is None else options["max_retries"],
        )
    raise BenchError(f"--executor {name!r}: choose local or ray")


def command_line(experiment: str, profile: str, output: Path, options: dict) -> str:
    """The `catmner-bench run` command equivalent to these arguments (stored in every record)."""
    argv = ["catmner-bench", "run", experiment, "--profile", profile, "--output", str(output)]
    for name, value in options.items():
        if value is None or value == () or value == []:
            continue
        if name == "setting":  # a repeated option: its values may hold commas
            argv += [a for v in value for a in ("--setting", str(v))]
            continue
        if isinstance(value, list | tuple):
            value = ",".join(str(v) for v in value)
        argv += [f"--{name.replace('_', '-')}", str(value)]
    return shlex.join(argv)


def run(
    experiment: str,
    *,
    profile: str,
    output: Path,
    quiet: bool = False,
    executor: Any = None,
    dry_run: bool = False,
    estimate_from: Sequence[Path] = (),
    **options: object,
) -> dict:
    """Resolve the profile and run the experiment(s) (comma-separated) through ``executor`` (default: the
    local loop): the plain function behind `catmner-bench run`. Returns the sweep's summary; ``dry_run``:
    runs nothing and returns {"plan": [PlannedRun], "render": workers -> Markdown} (`catmner_bench.dryrun`)."""
    from catmner_bench.profiles import resolve_profile
    from catmner_bench.runner import BenchError, RunContext
    from catmner_bench.sweep import run_experiment

    try:
        prof = resolve_profile(
            profile,
            text_encoder=options.get("text_encoder"),
            image_encoder=options.get("image_encoder"),
            labels_textual=options.get("labels_textual"),
            labels_multimodal=options.get("labels_multimodal"),
            epochs=options.get("epochs"),
            seeds=options.get("seeds"),
            n_train=options.get("max_train"),
            n_eval=options.get("max_eval"),
            visual=options.get("visual"),
            num_threads=options.get("threads"),
            patience=options.get("patience"),
            alphas=options.get("alphas"),
            samplings=options.get("samplings"),
        )
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    # a --text-encoder directory whose configs ask to run their own code is refused once, before any run
    # (every run would be refused the same way; hf_safety.py)
    from catmner_model.hf_safety import refuse_remote_code
    from catmner_model.text_encoder import encoder_path

    refuse_remote_code(encoder_path(prof.text_encoder))
    ctx = RunContext(
        output=Path(output),
        profile=prof,
        data_dir=options.get("data_dir"),
        image_dir=options.get("image_dir"),
        db=options.get("db"),
        feature_cache=options.get("feature_cache"),
        captions=options.get("captions"),
        quiet=quiet,
        command=command_line(experiment, profile, output, options),
        search_rounds=_rounds(options.get("rounds")),
        search_settings=_settings(options.get("setting")),
    )
    names = _csv(experiment) or [experiment]
    if dry_run:
        from catmner_bench.dryrun import dry_run as plan_only

        return plan_only(names, ctx, options.get("systems"), options.get("datasets"), estimate_from)
    return run_experiment(names, ctx, options.get("systems"), options.get("datasets"), executor)


def _rounds(names: Any) -> tuple[str, ...] | None:
    """The recipe-search rounds asked for (None: every round); BenchError naming the rounds there are."""
    if not names:
        return None
    from catmner_bench.errors import BenchError
    from catmner_bench.search_plan import SEARCH_ROUNDS

    known = [r.name for r in SEARCH_ROUNDS]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise BenchError(f"unknown search round(s) {', '.join(unknown)}: choose from {', '.join(known)}")
    return tuple(names)


def _settings(prefixes: Any) -> tuple[str, ...] | None:
    """The recipe-search setting-name prefixes asked for (None: every setting), lower-cased; BenchError when one
    starts no setting of any round, naming the settings there are."""
    if not prefixes:
        return None
    from catmner_bench.errors import BenchError
    from catmner_bench.search_plan import SEARCH_ROUNDS

    names = list(dict.fromkeys(name for r in SEARCH_ROUNDS for name, _ in r.settings))
    wanted = tuple(p.strip().lower() for p in prefixes)
    if not all(wanted):
        raise BenchError("--setting: an empty name would match every setting; leave the option out for all")
    unknown = [p for p in wanted if not any(n.lower().startswith(p) for n in names)]
    if unknown:
        raise BenchError(
            f"no search setting starts with {', '.join(map(repr, unknown))}: the settings are "
            + "; ".join(names)
        )
    return wanted


@app.command("report")
@_handled
def report_cli(
    directory: Annotated[Path, typer.Argument(help="A benchmark output folder (or its records/ folder).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where results.md and the PNGs go (default DIR/report).")
    ] = None,
    title: Annotated[str, typer.Option(help="Title of the Markdown report.")] = "CAT-MNER benchmark results",
    image_dir: Annotated[
        Path | None,
        typer.Option(
            help="Folder with <dataset>_images/ for Figure 4 when a record's image path is not found here."
        ),
    ] = None,
    search_doc: Annotated[
        Path | None,
        typer.Option(
            help="Also write the recipe-search table into this Markdown file, between its two marker lines "
            "(e.g. docs/model.md)."
        ),
    ] = None,
    debug: DebugOpt = False,
) -> None:
    """Render Markdown tables (ours beside the paper's) and PNG plots from the run records in DIR."""
    from catmner_bench.report import write_report

    result = write_report(directory, out, title=title, image_dir=image_dir, search_doc=search_doc)
    typer.echo(
        f"wrote {result['markdown']} ({result['n_records']} records, {len(result['figures'])} figure(s))"
    )


records_app = typer.Typer(help="Maintain run records.", no_args_is_help=True)
app.add_typer(records_app, name="records")


@records_app.command("refresh")
@_handled
def records_refresh_cli(
    directory: Annotated[Path, typer.Argument(help="A benchmark output folder (or its records/ folder).")],
    debug: DebugOpt = False,
) -> None:
    """Rewrite each record's recipe block (whether its config is current, whether it enters the verdicts, its
    saliency scale, its recipe-search settings) as the planner computes it now, after a recipe changed;
    records of schema 1 get theirs. Nothing else in a record changes."""
    from catmner_bench.recipes import refresh

    changed, total = refresh(directory)
    typer.echo(f"{directory}: {changed} of {total} record(s) rewritten")


@app.command("speed-executors")
@_handled
def speed_executors_cli(
    data_dir: Annotated[Path | None, typer.Option(help="Folder with twitter2015/ and twitter2017/.")] = None,
    runs: Annotated[int, typer.Option(help="Smoke runs per sweep (LM-SPAN, both datasets).")] = 4,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the figures here (JSON).")] = None,
    debug: DebugOpt = False,
) -> None:
    """Time a smoke sweep by the local loop and on a Ray of this machine with 1 and 2 workers: Ray's
    overhead per run and the speed-up of running runs side by side (Markdown on stdout)."""
    from catmner_bench.executor_speed import measure_executors, render

    res = measure_executors(data_dir, runs)
    if out is not None:
        out.write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    typer.echo(render(res))


def main() -> None:
    """Entry point of the `catmner-bench` script."""
    app()
