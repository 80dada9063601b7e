"""The `kbx` command line: each command parses options and calls a plain function from build/report."""

from __future__ import annotations

import json
import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from . import cli_errors
from .cli_errors import handle_errors
from .sources import SOURCE_NAMES

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Expand entity labels into related words (kb store).",
)

DbOpt = Annotated[
    Path | None, typer.Option("--db", help="Store file (default: $KBX_DB, else $CATMNER_HOME/kb.sqlite).")
]


SourceName = StrEnum("SourceName", {name: name for name in SOURCE_NAMES})  # the choices of --source


class Format(StrEnum):
    json = "json"
    csv = "csv"
    markdown = "markdown"


_state = {"debug": False}

# the one error handler of every `kbx` command (cli_errors, shared by the three CLIs): a known error is
# ``kbx: error: <first line>`` and exit status 1, Ctrl-C ``kbx: interrupted`` and 130; ``kbx --debug``,
# CATMNER_DEBUG=1 (or the older KBX_DEBUG=1) shows the traceback instead
handled = handle_errors("kbx", lambda: _state["debug"], " (the store is unchanged by the unfinished build)")


@app.callback()
def _main(debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False) -> None:
    _state["debug"] = debug


@app.command()
@handled
def build(
    source: Annotated[
        SourceName, typer.Option("--source", "-s", help="Knowledge source.")
    ] = SourceName.textual,
    vg: Annotated[
        Path | None,
        typer.Option("--vg", help="Visual Genome relationships.json / scene_graphs.json (.gz/.zip)."),
    ] = None,
    conceptnet_dump: Annotated[
        Path | None,
        typer.Option(
            "--conceptnet-dump",
            help="ConceptNet assertions CSV (.gz ok); default $KBX_CONCEPTNET_DUMP, else the REST API.",
        ),
    ] = None,
    vectors: Annotated[
        Path | None,
        typer.Option(
            "--vectors", help="word2vec .bin/text, GloVe text or X.npy+X.words.json (default GloVe 6B-50d)."
        ),
    ] = None,
    trust_pickle: Annotated[
        bool,
        typer.Option("--trust-pickle", help="Allow a gensim .kv --vectors file (a pickle: it can run code)."),
    ] = False,
    top_k: Annotated[int | None, typer.Option("--top-k", "-k", help="Words per label (default 10).")] = None,
    scheme: Annotated[
        Path | None, typer.Option("--scheme", help="Label scheme JSON (default: packaged scheme).")
    ] = None,
    db: DbOpt = None,
    conceptnet_url: Annotated[
        str, typer.Option("--conceptnet-url", help="ConceptNet REST API root.")
    ] = "https://api.conceptnet.io",
    relatedwords_url: Annotated[
        str, typer.Option("--relatedwords-url", help="Related Words service root.")
    ] = "https://relatedwords.org",
    timeout: Annotated[float, typer.Option("--timeout", help="HTTP timeout in seconds.")] = 10.0,
    retries: Annotated[int, typer.Option("--retries", help="HTTP retries after a failed attempt.")] = 3,
    rate_limit: Annotated[
        float, typer.Option("--rate-limit", help="Minimum seconds between HTTP requests.")
    ] = 1.0,
    offline: Annotated[
        bool, typer.Option("--offline", help="Answer web sources from the cache only.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Build anew even if an identical build is in the store.")
    ] = False,
) -> None:
    """Expand every label of the scheme from one source and store it as a new build (an identical earlier
    build - same inputs, parameters and kb-expand code - is reused instead, unless --force)."""
    from .build import BuildConfig, run_build
    from .web import HttpConfig

    cfg = BuildConfig(
        source=source.value, top_k=top_k, scheme=str(scheme) if scheme else None, vg=str(vg) if vg else None,
        conceptnet_dump=str(conceptnet_dump) if conceptnet_dump else None, conceptnet_url=conceptnet_url,
        relatedwords_url=relatedwords_url, vectors=str(vectors) if vectors else None, trust_pickle=trust_pickle,
        http=HttpConfig(timeout=timeout, retries=retries, min_interval=rate_limit, offline=offline),
        progress=not quiet, force=force,
    )  # fmt: skip
    res = run_build(cfg, db)
    note = f"; missing: {', '.join(res.missing)}" if res.missing else ""
    if res.reused:
        typer.echo(
            f"build {res.build_id}: reused: the identical {res.source} build of {res.created_at} (same inputs, "
            f"parameters and kb-expand code), {sum(map(len, res.labels.values()))} words{note}; "
            "--force builds anew"
        )
        return
    typer.echo(
        f"build {res.build_id}: {res.source}, {len(res.labels)} labels, "
        f"{sum(map(len, res.labels.values()))} words in {res.duration_s:.1f} s{note}"
    )


@app.command("list")
@handled
def list_cmd(
    db: DbOpt = None, source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None
) -> None:
    """List the builds in the store."""
    from .report import list_builds

    rows = list_builds(db, source)
    typer.echo(
        f"{'id':>4}  {'source':<13} {'created (UTC)':<21} {'labels':>6} {'words':>5}  checksum      missing"
    )
    for b in rows:
        typer.echo(
            f"{b['id']:>4}  {b['source']:<13} {b['created_at']:<21} {b['n_labels']:>6} {b['n_words']:>5}  "
            f"{b['checksum'][:12]}  {','.join(b['missing']) or '-'}"
        )


@app.command()
@handled
def show(
    build: Annotated[str, typer.Argument(help="Build id or source name (latest build of it).")],
    label: Annotated[str | None, typer.Option("--label", "-l", help="Only this label.")] = None,
    db: DbOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Machine-readable output with the full evidence records.")
    ] = False,
) -> None:
    """Show a build's words with scores and, per word, one phrase of evidence (--json: the full records)."""
    from .report import show_build

    d = show_build(build, db, label)
    if as_json:
        typer.echo(json.dumps(d, indent=2, ensure_ascii=False))
        return
    b = d["build"]
    typer.echo(
        f"build {b['id']} source={b['source']} scheme={b['scheme']} created={b['created_at']} checksum={b['checksum'][:12]}"
    )
    if b["missing"]:
        typer.echo("missing: " + "; ".join(f"{k}: {v}" for k, v in b["missing"].items()))
    top_k = b["params"].get("top_k")
    for row in d["labels"]:
        if label is not None and row["label"] != label:
            continue
        words = [w for w in d["words"] if w["label"] == row["label"]]
        short = f", {len(words)} of {top_k} words: no other word passed the source's thresholds" if top_k and len(words) < top_k else ""  # fmt: skip
        typer.echo(f"\n{row['label']} ({row['entity_type']}{short})")
        for w in words:
            typer.echo(f"  {w['rank']:>2}. {w['word']:<18} {w['score']:>7.3f}  {w['summary']}")


@app.command()
@handled
def diff(
    a: Annotated[str, typer.Argument(help="Build id or source name.")],
    b: Annotated[str, typer.Argument(help="Build id or source name.")],
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Compare two builds label by label."""
    from .report import diff_builds, format_diff

    d = diff_builds(a, b, db)
    typer.echo(json.dumps(d, indent=2, ensure_ascii=False) if as_json else format_diff(d))


@app.command()
@handled
def export(
    builds: Annotated[
        list[str] | None, typer.Argument(help="Build ids or source names (default: latest of each source).")
    ] = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Output format.")] = Format.json,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (atomically) instead of stdout.")
    ] = None,
    db: DbOpt = None,
) -> None:
    """Export builds as JSON, CSV or Markdown."""
    from .report import export_builds

    command = (
        "kbx export "
        + " ".join(builds or [])
        + f" --format {fmt.value}"
        + (f" -o {output}" if output else "")
    )
    text = export_builds(list(builds or []), fmt.value, db, command=" ".join(command.split()))
    if output is None:
        sys.stdout.write(text)
        return
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, output)
    typer.echo(f"wrote {output}", err=True)


def debug_enabled() -> bool:
    """Whether tracebacks are shown: ``kbx --debug`` (read by the app's callback), CATMNER_DEBUG=1 or KBX_DEBUG=1."""
    return cli_errors.debug_enabled(_state["debug"])


def main() -> None:
    """Entry point of `kbx`: errors go through `handled` (each command); usage errors are click's."""
    app()


if __name__ == "__main__":
    main()
