"""`catmner features ...`: precompute the cached grid image features of a dataset, and time extraction.

Commands only parse options and call `catmner_model.feature_cache.precompute_dataset` / `bench_extraction`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from catmner_model.cli_common import (
    DataDirOpt,
    ImageDirOpt,
    JsonOpt,
    QuietOpt,
    UserError,
    friendly_errors,
    print_json,
)

features_app = typer.Typer(help="Cached grid image features: precompute and benchmark.", no_args_is_help=True)

Fn = TypeVar("Fn", bound=Callable[..., Any])

EncoderOpt = Annotated[
    str,
    typer.Option(
        "--image-encoder",
        help="efficientnet-lite0 (offline default), open_clip:<model>[:<pretrained tag or checkpoint file>], "
        "or tiny (random, for tests).",
    ),
]
CacheDirOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Feature cache root (default: $CATMNER_HOME/features).")
]
DeviceOpt = Annotated[
    str, typer.Option("--device", help="Torch device for the encoder (cpu, cuda, cuda:1...).")
]
BatchOpt = Annotated[int, typer.Option("--batch-images", min=1, help="Images handled together.")]
CellsOpt = Annotated[
    int | None,
    typer.Option(
        "--cells-per-pass",
        min=1,
        help="Grid cells per encoder forward pass (default: 4 on the CPU, all on GPUs).",
    ),
]
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, help="torch.set_num_threads for extraction (default: torch's)."),
]


def _config(
    encoder: str, device: str, batch_images: int, threads: int | None, cells_per_pass: int | None
) -> Any:
    from catmner_model.encoders import VisionConfig

    return VisionConfig(
        encoder=encoder,
        device=device,
        batch_images=batch_images,
        num_threads=threads,
        cells_per_pass=cells_per_pass,
    )


def format_precompute(stats: dict) -> str:
    """Plain-text summary of `precompute_dataset` output."""
    failed = ", ".join(f"{k} {v}" for k, v in sorted(stats["failed"].items())) or "none"
    per = stats["seconds_per_computed"]
    lines = [
        f"{stats['dataset']} ({', '.join(stats['splits'])}): {stats['tweets']} tweets, "
        f"{stats['unique_images']} distinct images, {stats['images_found']} found",
        f"computed {stats['computed']}, already cached {stats['hit']}, failed: {failed}",
        f"{stats['seconds']:.1f} s" + (f" ({per:.3f} s per computed image)" if per else ""),
        f"cache: {stats['cache_dir']}",
    ]
    return "\n".join(lines)


def format_bench(stats: dict) -> str:
    """Plain-text summary of `bench_extraction` output."""
    return (
        f"{stats['encoder']} on {stats['images']} images ({stats['device']}, {stats['torch_threads']} threads, "
        f"grid {stats['grid']}x{stats['grid']}, F={stats['feature_dim']}, {stats['cells_per_pass']} cells per pass):\n"
        f"  one image at a time: {stats['seconds_per_image']:.3f} s/image "
        f"(decode {stats['seconds_decode_per_image']:.3f}, preprocess {stats['seconds_preprocess_per_image']:.3f})\n"
        f"  batched (--batch-images {stats['batch_images']}): {stats['seconds_per_image_batched']:.3f} s/image"
    )


@features_app.command("precompute")
@friendly_errors
def precompute_cli(
    dataset: Annotated[str, typer.Argument(help="twitter2015 or twitter2017")],
    split: Annotated[
        list[str] | None, typer.Option("--split", help="Only these splits (repeatable).")
    ] = None,
    data_dir: DataDirOpt = None,
    image_dir: ImageDirOpt = None,
    image_encoder: EncoderOpt = "efficientnet-lite0",
    cache_dir: CacheDirOpt = None,
    device: DeviceOpt = "cpu",
    batch_images: BatchOpt = 1,
    cells_per_pass: CellsOpt = None,
    threads: ThreadsOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compute and cache the 4x4 grid features of every image of a dataset (each image once, ever)."""
    from catmner_model.feature_cache import precompute_dataset

    stats = precompute_dataset(
        dataset,
        split or None,
        data_dir,
        image_dir,
        _config(image_encoder, device, batch_images, threads, cells_per_pass),
        cache_dir,
        progress=not quiet,
    )
    if as_json:
        print_json(stats)
    else:
        typer.echo(format_precompute(stats))


@features_app.command("bench")
@friendly_errors
def bench_cli(
    images: Annotated[
        list[Path] | None,
        typer.Argument(help="Image files or folders (default: every image of both datasets in --image-dir)."),
    ] = None,
    data_dir: DataDirOpt = None,
    image_dir: ImageDirOpt = None,
    image_encoder: EncoderOpt = "efficientnet-lite0",
    device: DeviceOpt = "cpu",
    batch_images: BatchOpt = 1,
    cells_per_pass: CellsOpt = None,
    threads: ThreadsOpt = None,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Timed passes (median reported).")] = 1,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many images.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Time feature extraction per image (decode + preprocess + encoder), without the cache."""
    from catmner_model.data import resolve_image_dir
    from catmner_model.feature_cache import bench_extraction

    paths: list[Path] = []
    if images:
        for p in images:
            if p.is_dir():
                paths.extend(sorted(q for q in p.rglob("*") if q.suffix.lower() in (".jpg", ".jpeg", ".png")))
            elif p.is_file():
                paths.append(p)
            else:
                raise UserError(f"{p}: no such image file or folder")
    else:
        root = resolve_image_dir(image_dir, data_dir)
        if root is None or not root.is_dir():
            raise UserError(
                "no images given and no image directory: pass files, --image-dir or CATMNER_IMAGES"
            )
        paths = sorted(root.glob("*_images/*.jpg"))
    if limit:
        paths = paths[:limit]
    if not paths:
        raise UserError("no images to benchmark")
    config = _config(image_encoder, device, batch_images, threads, cells_per_pass)
    stats = bench_extraction(paths, config, repeat=repeat)
    if as_json:
        print_json(stats)
    else:
        typer.echo(format_bench(stats))


def register(app: typer.Typer) -> None:
    """Add the `features` command group to the `catmner` app."""
    app.add_typer(features_app, name="features")
