"""`catmner train | evaluate | predict`: option parsing only; the work is in training/, evaluate.py and
predict.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

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
from catmner_model.config import VARIANT_SPECS

# the variants, from the registry (config.VARIANT_SPECS): "cat (CAT-MNER: refined I2T and T2I) | i2t (...) | ..."
VARIANT_HELP = " | ".join(f"{v.name} ({v.help})" for v in VARIANT_SPECS.values())
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show tracebacks (also CATMNER_DEBUG=1).")]
DatasetOpt = Annotated[str, typer.Option("--dataset", "-d", help="twitter2015 or twitter2017")]
ModelDirArg = Annotated[Path, typer.Argument(help="A model directory (e.g. RUN/model).")]


# Over 80 lines on purpose: a typer command's signature is its option table (about 75 lines, one option
# each, with its help); the body is the short part (JSON overrides, TrainConfig, train, the summary line).
@friendly_errors
def train_cli(
    dataset: DatasetOpt = "twitter2015",
    labels: Annotated[
        str | None,
        typer.Option(
            help="Label words: kb source name (textual, ...), build id, or JSON file "
            "(default: textual for cat / i2t / t2i, none for mm / text, which use none)."
        ),
    ] = None,
    db: Annotated[Path | None, typer.Option(help="kb store for --labels (default $KBX_DB).")] = None,
    text_encoder: Annotated[
        str | None, typer.Option(help="HF name/path or named config (default: offline all-MiniLM-L6-v2).")
    ] = None,
    image_encoder: Annotated[
        str, typer.Option(help="efficientnet-lite0 | open_clip:<model>:<tag or ckpt> | tiny | none")
    ] = "efficientnet-lite0",
    finetune_image_encoder: Annotated[
        bool,
        typer.Option(
            help="Train the image encoder too (at --encoder-lr; for GPUs): pixels are read at every step "
            "instead of cached frozen features."
        ),
    ] = False,
    model: Annotated[
        str,
        typer.Option(
            help="Model family: catmner (CAT-MNER and its --variant) | umt (UMT, Yu et al. 2020: one --visual "
            "source, no label words)."
        ),
    ] = "catmner",
    variant: Annotated[
        str | None, typer.Option(help=f"CAT-MNER variant (default cat): {VARIANT_HELP}")
    ] = None,
    visual: Annotated[
        str,
        typer.Option(
            help="Visual tokens: grid (image encoder over the 4x4 grid) | caption (the image's caption) | "
            "grid+caption. Recorded in the model: evaluate/predict need no flag."
        ),
    ] = "grid",
    captions: Annotated[
        Path | None,
        typer.Option(
            help="Caption file ('<IMGID>.jpg :<caption>' lines or JSONL {imgid, caption}) or a folder of them "
            "(default $CATMNER_CAPTIONS, then DATA_DIR/captions/<dataset>_blip2.txt)."
        ),
    ] = None,
    captioner: Annotated[
        str | None, typer.Option(help="HF image-to-text model (name or path) captioning images without one.")
    ] = None,
    knowledge: Annotated[
        str | None,
        typer.Option(help="Append auxiliary knowledge as a second text segment: pgim (DATA_DIR/pgim/)."),
    ] = None,
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 10,
    valid_every: Annotated[
        int,
        typer.Option(min=1, help="Validate after every k-th epoch and the last (keeping the best); 1: each."),
    ] = 1,
    patience: Annotated[
        int,
        typer.Option(
            min=0,
            help="Early stopping: end the run after N validations in a row without a gain in validation F1 "
            "(keeping the best epoch's model; the lr schedule stays over --epochs). 0: train all epochs.",
        ),
    ] = 2,
    lr: Annotated[float, typer.Option(help="Peak learning rate of new layers.")] = 5e-4,
    encoder_lr: Annotated[float, typer.Option(help="Peak learning rate of the pretrained encoders.")] = 1e-4,
    saliency_lr: Annotated[
        float | None,
        typer.Option(help="Peak learning rate of the learned saliency scale (its own group; default: --lr)."),
    ] = None,
    saliency_from_qk: Annotated[
        bool,
        typer.Option(
            "--saliency-from-qk",
            help="Start the learned saliency scale at mean |QK^T| / mean s per layer (g*s on QK^T's scale).",
        ),
    ] = False,
    batch_size: Annotated[int, typer.Option(help="Tweets per step (per process under torchrun).")] = 16,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    max_train: Annotated[int | None, typer.Option(help="Train on a random subset of N tweets.")] = None,
    max_eval: Annotated[int | None, typer.Option(help="Validate/test on the first N tweets only.")] = None,
    vitals_tweets: Annotated[
        int,
        typer.Option(
            min=0, help="After each validation, the vital signs on the first N valid tweets (0: off)."
        ),
    ] = 256,
    data_dir: DataDirOpt = None,
    image_dir: ImageDirOpt = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Run directory (rerun the same command to resume).")
    ] = None,
    model_config: Annotated[
        str | None, typer.Option(help="Extra model config fields as JSON, e.g. '{\"max_span_len\": 6}'.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    deterministic: Annotated[
        bool, typer.Option(help="GPU: deterministic kernels (bit-identical reruns and resumes; slower).")
    ] = False,
    precision: Annotated[
        str,
        typer.Option(
            help="fp32 | bf16 (autocast) | auto (bf16 where the CPU/GPU has native bf16, else fp32)."
        ),
    ] = "fp32",
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Train a model (CAT-MNER, or UMT with --model umt); writes OUTPUT/model (best by validation F1), checkpoints, log.json and run.json."""
    from catmner_model.training.config import LABEL_WORD_VARIANTS, TrainConfig
    from catmner_model.training.loop import train

    if variant is None:  # not given: CAT-MNER's full model; other families read variant "mm" (no refinement)
        variant = "cat" if model == "catmner" else "mm"
    if labels is None:  # not given: the default of the variant
        labels = "textual" if variant in LABEL_WORD_VARIANTS else None

    overrides = {}
    if model_config:
        from catmner_model.config import parse_config_json

        overrides = parse_config_json(model_config, "--model-config")
    config = TrainConfig(
        dataset=dataset,
        labels=labels or None,
        db=str(db) if db else None,
        text_encoder=text_encoder,
        image_encoder=image_encoder,
        finetune_image_encoder=finetune_image_encoder,
        variant=variant,
        model=model,
        visual=visual,
        captions=str(captions) if captions else None,
        captioner=captioner,
        knowledge=knowledge or None,
        epochs=epochs,
        valid_every=valid_every,
        patience=patience or None,
        lr=lr,
        encoder_lr=encoder_lr,
        saliency_lr=saliency_lr,
        saliency_from_qk=saliency_from_qk,
        batch_size=batch_size,
        seed=seed,
        max_train=max_train,
        max_eval=max_eval,
        vitals_tweets=vitals_tweets,
        data_dir=str(data_dir) if data_dir else None,
        image_dir=str(image_dir) if image_dir else None,
        output=str(output) if output else None,
        model_overrides=overrides,
        num_threads=threads,
        deterministic=deterministic,
        precision=precision,
        quiet=quiet,
    )
    record = train(config)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports for all
        return
    if as_json:
        print_json(record)
    else:
        m = record["metrics"]
        typer.echo(
            f"model: {record['model_dir']}\n"
            f"best epoch {record['best_epoch']}: valid F1 {m['valid']['lenient']['f1']:.2f} "
            f"(strict {m['valid']['strict']['f1']:.2f}), "
            + (
                f"test F1 {m['test']['lenient']['f1']:.2f} (strict {m['test']['strict']['f1']:.2f})"
                if m.get("test")
                else "test not scored"
            )
            + (
                f"\n{record['stop_reason']} (after epoch {record['stopped_epoch']})"
                if record.get("stop_reason")
                else ""
            )
        )


@friendly_errors
def evaluate_cli(
    model_dir: ModelDirArg,
    dataset: DatasetOpt = "twitter2015",
    split: Annotated[str, typer.Option(help="train | valid | test")] = "test",
    data_dir: DataDirOpt = None,
    image_dir: ImageDirOpt = None,
    predictions: Annotated[
        Path | None, typer.Option(help="Write predictions as CoNLL (token, gold, pred) to this file.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Tweets per forward pass.")] = 32,
    max_tweets: Annotated[int | None, typer.Option(help="Only the first N tweets.")] = None,
    captions: Annotated[
        Path | None, typer.Option(help="Caption file or folder (caption models; default as in train).")
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            help="Also write one self-contained HTML page of the errors (gold vs predicted per tweet)."
        ),
    ] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Score a model directory on a benchmark split: lenient and strict F1, overall and per type."""
    from catmner_model.evaluate import evaluate_model, format_report

    result = evaluate_model(
        model_dir,
        dataset,
        split,
        data_dir=data_dir,
        image_dir=image_dir,
        predictions=predictions,
        batch_size=batch_size,
        max_tweets=max_tweets,
        captions=captions,
        progress=not quiet,
        html=html,
    )
    if as_json:
        print_json(result)
    else:
        typer.echo(format_report(result))
        if predictions:
            typer.echo(f"predictions: {predictions}")
        if html:
            typer.echo(f"error analysis: {html}")


@friendly_errors
def predict_cli(
    model_dir: ModelDirArg,
    text: Annotated[str | None, typer.Option(help="One tweet as raw text.")] = None,
    image: Annotated[Path | None, typer.Option(help="Image of the --text tweet.")] = None,
    caption: Annotated[
        str | None, typer.Option(help="Caption of the --text tweet's image (models with the caption source).")
    ] = None,
    captioner: Annotated[
        str | None, typer.Option(help="HF image-to-text model captioning given images that have no caption.")
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            "-i",
            help='JSONL: {"text": ..., "image": optional path, "caption": optional} or {"tokens": [...]}',
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Tweets per forward pass.")] = 32,
    image_dir: Annotated[
        Path | None,
        typer.Option("--image-dir", help="--input images must lie in this folder (default: any image file)."),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="--input: an unusable image is an error, not a warning.")
    ] = False,
    precision: Annotated[
        str, typer.Option(help="fp32 | bf16 (autocast) | auto (bf16 where native, else fp32).")
    ] = "fp32",
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Predict entities: one tweet (--text) as a JSON list, or a JSONL file (--input) as JSON lines."""
    from catmner_model.predict import Predictor

    if (text is None) == (input is None):
        raise UserError("give exactly one of --text or --input")
    predictor = Predictor(model_dir, captioner=captioner, precision=precision)
    if text is not None:
        notes: list[str] = []  # an unusable --image, a missing caption, words past max_length: as for --input
        entities = predictor.predict_text(
            text, str(image) if image else None, caption=caption, warnings=notes
        )
        for note in notes:
            typer.echo(f"warning: {note}", err=True)
        print_json(entities)
        return
    if image is not None or caption is not None:
        raise UserError("--image/--caption go with --text; in --input files give 'image'/'caption' per line")
    notes = []
    rows = predictor.predict_jsonl(
        input,
        batch_size=batch_size,
        progress=not quiet,
        image_dir=image_dir,
        strict=strict,
        warnings=notes,
    )
    for note in notes:
        typer.echo(f"warning: {note}", err=True)
    cut = [r["truncated_words"] for r in rows if r["truncated_words"]]
    if notes or cut:
        typer.echo(
            f"predict: {len(rows)} tweets, {len(notes)} predicted without their image or caption, {len(cut)} longer than "
            f"the model's max_length ({sum(cut)} words not predicted: truncated_words)",
            err=True,
        )
    for row in rows:
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")


@friendly_errors
def inspect_cli(
    model_dir: ModelDirArg,
    dataset: DatasetOpt = "twitter2015",
    split: Annotated[str, typer.Option(help="train | valid | test")] = "valid",
    data_dir: DataDirOpt = None,
    image_dir: ImageDirOpt = None,
    captions: Annotated[
        Path | None, typer.Option(help="Caption file or folder (caption models; default as in train).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Tweets per forward pass.")] = 32,
    max_tweets: Annotated[int | None, typer.Option(help="Only the first N tweets.")] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the JSON to this file (not stdout).")
    ] = None,
    table: Annotated[bool, typer.Option("--table", help="Print a table instead of JSON.")] = False,
    debug: DebugOpt = False,
) -> None:
    """The refinement's vital signs on a split, per layer: mean |QK^T| of the cross-modal blocks, mean gate g,
    mean g*s, the text->visual attention mass, the first caption piece's share of the caption mass and the
    entropy of the saliency over the visual tokens (docs/model.md). JSON on stdout, or --out FILE."""
    from catmner_model.atomic import atomic_write_text
    from catmner_model.vitals import format_vitals, inspect_model

    result = inspect_model(
        model_dir,
        dataset,
        split,
        data_dir=data_dir,
        image_dir=image_dir,
        captions=captions,
        batch_size=batch_size,
        max_tweets=max_tweets,
    )
    if out is not None:
        atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    if table:
        typer.echo(format_vitals(result))
    elif out is None:
        print_json(result)
    else:
        typer.echo(f"vital signs of {result['tweets']} tweets: {out}")


def register(app: typer.Typer) -> None:
    """Add train, evaluate, inspect and predict to the `catmner` app."""
    app.command("train")(train_cli)
    app.command("evaluate")(evaluate_cli)
    app.command("inspect")(inspect_cli)
    app.command("predict")(predict_cli)
