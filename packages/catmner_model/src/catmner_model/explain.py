"""What a saved model looked at for one tweet: entity spans' attention over the visual tokens, and label words.

`explain_input` runs ONE forward of the model on one tweet (with its optional image file and caption) and
returns the predicted entities (exactly `Predictor.predict_text`'s JSON) together with, for every predicted
entity and every word, the quantities of the paper's Figure 4 as the benchmark records them
(`catmner_bench.experiments.grid_attention` / `caption_attention`):

- ``refined``: the last layer's text->visual attention probabilities the model used (``output_attentions``),
  averaged over heads and over the first word piece of each word of the span, renormalised over the 4x4 grid
  cells (row-major, cell 0 top-left) or over the caption's real word pieces; ``mass`` is the share of the
  span's attention on those tokens before renormalising.
- ``unrefined``: the same layer's attention recomputed from the same queries and keys without the Eq. 4 gate
  (``(1 - g) QK^T + g s`` with g = 0, i.e. plain ``softmax(QK^T / sqrt(d))``): what refinement changed, in this
  layer, for this input. A model without refinement of text queries over visual keys (variant "mm", "t2i")
  has only this one (it is the attention it used).
- ``label_words``: the label words under which the span is most salient: Eq. 6's per-label-word term
  ``softmax_over_text_keys(Q_key K_c^T / sqrt(d))`` of the last layer, its mass on the span's first pieces,
  mean over heads; the top ``TOP_LABEL_WORDS`` (refined variants only: the others have no label words), and
  ``label_words_uniform``, the share an evenly spread saliency would give the span (its pieces / the tweet's).

The page of ``catmner serve`` shows this dict as it is; tests compare the page with it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from catmner_model.attention import attention
from catmner_model.data import Tweet

TOP_LABEL_WORDS = 8
DIGITS = 6  # decimals kept, as in the benchmark's Figure 4 records


def _r(xs: torch.Tensor) -> list[float]:
    return [round(float(x), DIGITS) for x in xs]


def _span_map(att: torch.Tensor, pos: torch.Tensor) -> dict[str, Any]:
    """Figure 4's map of one span: rows ``pos`` of ``att`` (T, K) averaged, renormalised over the K tokens."""
    w = att[pos].mean(0)
    mass = w.sum()
    return {"weights": _r(w / mass.clamp_min(1e-12)), "mass": round(float(mass), DIGITS)}


def _label_word_weights(cap: dict[str, Any], text_mask: torch.Tensor, n_text: int) -> torch.Tensor | None:
    """(H, C, T) Eq. 6 term of every label word over the text keys of the last layer (None: no label words)."""
    k_labels = cap.get("k_labels")
    if k_labels is None:
        return None
    q = cap["q_plain"][0, :, :n_text].float()  # (H, T, Dh) plain queries of the text keys
    scores = torch.einsum("hcd,htd->hct", k_labels.float(), q) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~text_mask[None, None, :], torch.finfo(scores.dtype).min)
    return scores.softmax(dim=-1)  # (H, C, T)


def explain_input(predictor: Any, item: Any) -> dict[str, Any]:
    """Entities (`data.Entity`) and attention of one `predict.PredictInput` of a `predict.Predictor` (see the
    module docstring for the fields)."""
    from catmner_model.batching import to_device
    from catmner_model.precision import autocast

    model, cfg = predictor.model, predictor.config
    tweet = Tweet(imgid="input0", tokens=item.tokens, tags=["O"] * len(item.tokens), entities=[])
    example = predictor.example(tweet, item.image, item.caption)
    batch = to_device(predictor.collate([example]), predictor.device)
    was_training = model.training
    model.eval()
    capture: dict[str, Any] = {}
    model._explain = capture
    try:
        with torch.inference_mode(), autocast(predictor.device, predictor.precision):
            out = model(batch, output_attentions=True)
            entities = model.decode(out, batch)[0]
            unrefined = None
            if out.attentions is not None:
                mask = capture["mask"]
                unrefined = attention(
                    capture["q"],
                    capture["k"],
                    capture["k"],
                    mask,
                    scaling=capture["scaling"],
                    bias=capture["bias"],
                    blocks=capture.get("blocks"),
                )[1]  # (1, H, N_q, N) the same layer without the gate
    finally:
        model._explain = None
        if was_training:
            model.train()
    n_text = int(batch.input_ids.shape[1])
    n_words = int(batch.word_mask[0].sum())
    has_image = bool(batch.image_mask[0]) and (
        batch.image_features is not None or batch.image_pixels is not None
    )
    n_grid = (cfg.num_image_tokens if has_image else 1) if cfg.uses_grid else 0  # no image: one token
    refined_model = getattr(model, "gates_i2t", None) is not None
    maps: dict[str, torch.Tensor] = {}
    if out.attentions is not None:
        used = out.attentions[0, -1].float().mean(0)  # (T, I) last layer, mean over heads
        plain = unrefined[0, :, :n_text, n_text:].float().mean(0)  # (T, I)
        maps = {"refined": used, "unrefined": plain} if refined_model else {"unrefined": used}
    views: dict[str, tuple[int, torch.Tensor | None]] = {}  # name -> (first visual column, kept columns)
    visual: dict[str, Any] = {"grid": None, "caption": None}
    if cfg.uses_grid and has_image:
        side = math.isqrt(cfg.num_image_tokens)
        views["grid"] = (0, torch.arange(n_grid, device=batch.input_ids.device))
        visual["grid"] = {"cells": n_grid, "shape": [side, side]}
    if cfg.uses_caption and batch.caption_ids is not None and bool(batch.caption_mask[0].any()):
        real = batch.caption_mask[0]
        views["caption"] = (n_grid, n_grid + real.nonzero().flatten())
        pieces = predictor.collate.pieces.tokenizer.convert_ids_to_tokens(batch.caption_ids[0][real].tolist())
        visual["caption"] = {"text": example.caption, "pieces": pieces}
    sal = _label_word_weights(capture, batch.attention_mask[0], n_text) if capture else None
    words = list(getattr(model, "label_words", []))

    def explain_span(start: int, end: int) -> dict[str, Any] | None:
        if end > n_words:
            return None  # truncated away: the model never saw these words
        pos = batch.word_index[0, start:end]
        row: dict[str, Any] = {"start": start, "end": end}
        for view, (_, cols) in views.items():
            row[view] = {name: _span_map(m[:, cols], pos) for name, m in maps.items()}
        if sal is not None:
            share = sal[:, :, pos].sum(-1).mean(0)  # (C,) span's share of each label word's saliency
            top = share.argsort(descending=True)[:TOP_LABEL_WORDS]
            row["label_words"] = [{"word": words[i], "weight": round(float(share[i]), DIGITS)} for i in top]
            row["label_words_uniform"] = round(len(pos) / int(batch.attention_mask[0].sum()), DIGITS)
        return row

    return {
        **({"text": item.text} if item.text is not None else {}),
        "tokens": item.tokens,
        "entities": list(entities),  # data.Entity; Predictor.explain writes them as predict's JSON
        "truncated_words": len(item.tokens) - n_words,
        "model": {
            "variant": cfg.variant,
            "visual_source": getattr(cfg, "visual_source", "none"),
            "refined": refined_model,
            "label_words": len(words) if cfg.uses_label_words else 0,
        },
        "layer": "last",
        "visual": visual,
        "attention": {
            "entities": [explain_span(e.start, e.end) for e in entities],
            "words": [explain_span(i, i + 1) for i in range(n_words)],
        },
    }
