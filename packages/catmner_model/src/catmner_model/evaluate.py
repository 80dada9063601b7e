"""Evaluation of a saved model on a benchmark split: lenient (conlleval) and strict F1, overall and per type.

`evaluate_model` loads a model directory through `Predictor`, predicts the split (with the split's images
through the feature cache when the model uses images) and scores with `catmner_model.metrics`; optionally
it writes the predictions as a CoNLL file (token, gold, predicted tag).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from catmner_model.data import load_split, resolve_image_dir
from catmner_model.predict import PREDICT_BATCH_SIZE


def evaluate_model(
    model_dir: str | os.PathLike[str],
    dataset: str,
    split: str = "test",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
    predictions: str | os.PathLike[str] | None = None,
    batch_size: int = PREDICT_BATCH_SIZE,
    max_tweets: int | None = None,
    progress: bool = False,
    device: str | None = None,
    captions: str | os.PathLike[str] | None = None,
    html: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Score ``model_dir`` on ``dataset``/``split``.

    Returns ``{"model_dir", "dataset", "split", "n_tweets", "seconds", "images": {...},
    "lenient": metrics.score(...), "strict": metrics.score(...)}``; lenient = conlleval chunking of the gold
    tags (the literature's numbers), strict = IOB2. ``html``: also write the error-analysis page there
    (`report_html.write_html_report`; the result then has ``"html"``).
    """
    from catmner_model.metrics import score_both, write_predictions
    from catmner_model.predict import Predictor, count_truncated, predict_examples

    tweets = load_split(dataset, split, data_dir)
    if max_tweets is not None:
        tweets = tweets[:max_tweets]
    predictor = Predictor(model_dir, device=device)
    images = resolve_image_dir(image_dir, data_dir) if predictor.uses_images else None
    source = predictor.source(dataset, data_dir=data_dir, image_dir=images, captions=captions)
    t0 = time.perf_counter()
    examples = source.examples(tweets)
    found = sum(ex.image_features is not None or ex.image_file is not None for ex in examples)
    with_caption = sum(ex.caption is not None for ex in examples)
    preds = predict_examples(
        predictor.model,
        examples,
        predictor.collate,
        batch_size,
        predictor.device,
        desc=split,
        progress=progress,
    )
    seconds = time.perf_counter() - t0
    both = score_both(tweets, preds)
    if predictions is not None:
        write_predictions(Path(predictions), tweets, preds)
    result = {
        "model_dir": str(model_dir),
        "dataset": dataset,
        "split": split,
        "n_tweets": len(tweets),
        "seconds": round(seconds, 3),
        "images": {"with_features": found, "without": len(tweets) - found},
        "captions": {"with_caption": with_caption, "without": len(tweets) - with_caption}
        if predictor.uses_captions
        else None,
        "lenient": both["conlleval"],
        "strict": both["strict"],
        "predictions": str(predictions) if predictions is not None else None,
        "truncated": count_truncated(predictor.collate, (t.tokens for t in tweets)),  # words never predicted
    }
    if html is not None:
        from catmner_model.report_html import write_html_report

        result["html"] = str(html)
        write_html_report(html, result, tweets, preds)
    return result


def format_report(result: dict[str, Any]) -> str:
    """Plain-text table of an `evaluate_model` result."""
    from catmner_model.data import ENTITY_TYPES

    lines = [
        f"{result['dataset']} {result['split']}: {result['n_tweets']} tweets, {result['seconds']:.1f}s",
        f"{'':10}{'P':>8}{'R':>8}{'F1':>8}" + "".join(f"{t:>8}" for t in ENTITY_TYPES),
    ]
    for mode in ("lenient", "strict"):
        m = result[mode]
        per = "".join(f"{m['per_type'].get(t, {}).get('f1', 0.0):8.2f}" for t in ENTITY_TYPES)
        lines.append(f"{mode:10}{m['precision']:8.2f}{m['recall']:8.2f}{m['f1']:8.2f}{per}")
    lines.append("(per-type columns are F1; lenient = conlleval chunking, strict = IOB2)")
    cut = result.get("truncated") or {}
    if cut.get("words"):
        lines.append(
            f"truncated: {cut['tweets']} tweets longer than the model's max_length, {cut['words']} words never "
            "predicted (their gold entities count as missed)"
        )
    return "\n".join(lines)
