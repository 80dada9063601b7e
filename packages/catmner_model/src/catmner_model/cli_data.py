"""`catmner data ...`: dataset statistics and download of the public text splits."""

from __future__ import annotations

from typing import Annotated

import typer

from catmner_model.cli_common import DataDirOpt, ImageDirOpt, JsonOpt, friendly_errors, print_json
from catmner_model.data import DOWNLOAD_BASE_URL, ENTITY_TYPES, SPLITS, dataset_stats, download_dataset

data_app = typer.Typer(help="Benchmark data: statistics and download.", no_args_is_help=True)


def format_stats(stats: dict) -> str:
    """Render `dataset_stats` output as a plain-text table."""
    head = ["split", "tweets", "tokens", "entities", *ENTITY_TYPES, "strict", "img found", "img missing"]
    rows = [head]
    for split, s in stats["splits"].items():
        rows.append(
            [
                split,
                s["tweets"],
                s["tokens"],
                s["entities"],
                *(s["per_type"][t] for t in ENTITY_TYPES),
                s["entities_strict"],
                s["images_found"],
                s["images_missing"],
            ]
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = [f"{stats['dataset']}  (entities counted conlleval-style; 'strict' = IOB2)"]
    for r in rows:
        lines.append(
            "  ".join(
                str(v).rjust(w) if j else str(v).ljust(w)
                for j, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    return "\n".join(lines)


@data_app.command("stats")
@friendly_errors
def stats_cli(
    dataset: Annotated[str, typer.Argument(help="twitter2015 or twitter2017")],
    data_dir: DataDirOpt = None,
    image_dir: ImageDirOpt = None,
    split: Annotated[list[str] | None, typer.Option("--split", help="Only these splits.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Per split: tweets, tokens, gold entities overall and per type, images found / missing."""
    stats = dataset_stats(dataset, data_dir, image_dir, splits=split or SPLITS)
    if as_json:
        print_json(stats)
    else:
        typer.echo(format_stats(stats))


@data_app.command("download")
@friendly_errors
def download_cli(
    dataset: Annotated[str, typer.Argument(help="twitter2015 or twitter2017")],
    data_dir: DataDirOpt = None,
    base_url: Annotated[str, typer.Option(help="Where the public splits are served.")] = DOWNLOAD_BASE_URL,
) -> None:
    """Fetch the public text splits into the data directory (needs the internet; images are not included)."""
    for path in download_dataset(dataset, data_dir, base_url):
        typer.echo(f"wrote {path}")


def register(app: typer.Typer) -> None:
    """Add the `data` command group to the `catmner` app."""
    app.add_typer(data_app, name="data")
