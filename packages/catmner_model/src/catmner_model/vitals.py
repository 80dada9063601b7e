"""The refinement's vital signs: per layer, what the attention over [text; visual] actually does on a split.

Whether the label words can steer anything is a question of scale: the refined score of a cross-modal (query,
key) pair is ``(1 - g) * QK^T + g * s`` (Eq. 4), so ``g * s`` acts only where it is on the scale of ``|QK^T|``.
`measure_vitals` runs the model over examples with a `VitalSigns` probe attached (`RTransformerLayers` calls
`VitalSigns.observe` after each layer's attention, with the tensors that layer used) and returns, per layer:

- ``qk_i2t`` / ``qk_t2i``: mean ``|QK^T|`` (raw, before the 1/sqrt(d) scaling) of the I2T block (real text
  queries x real visual keys) and of the T2I block (real visual queries x real text keys; none in the last
  layer, whose visual queries are not computed);
- ``gate_i2t`` / ``gate_t2i``: mean gate g of the real visual (text) keys; ``gs_i2t`` / ``gs_t2i``: mean
  ``g * s`` with s the saliency as the layer adds it (scaled); ``s_i2t``: mean scaled saliency of the visual
  keys (None where the block is not refined);
- ``text_visual_mass``: the share of a real text query's attention mass on the visual keys (joint softmax: the
  mass itself; per-block softmax: half by construction);
- ``caption_first_share``: of a text query's attention mass on the caption pieces, the share on the first piece
  (tweets with a caption only; an attention sink shows as a share near 1);
- ``saliency_entropy`` / ``saliency_entropy_norm``: the entropy (nats) of s as a distribution over the real
  visual keys, and that entropy over log(number of visual keys) (1: uniform, the label words pick nothing).

Every number is a mean over all the real elements of the split (sums and counts accumulated over batches, so
the batching does not change it), averaged over heads alike. ``mean`` averages the layers.

Letters: B batch, H heads, T text tokens, N = T + I tokens, N_q computed query rows, Dh head width.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from catmner_model.errors import CatmnerError

SIGNS: tuple[str, ...] = (
    "qk_i2t",
    "qk_t2i",
    "gate_i2t",
    "gate_t2i",
    "gs_i2t",
    "gs_t2i",
    "s_i2t",
    "text_visual_mass",
    "caption_first_share",
    "saliency_entropy",
    "saliency_entropy_norm",
)


class InspectError(CatmnerError):
    """A model or split whose vital signs cannot be measured; one line for the user."""


class VitalSigns:
    """Per-layer sums and counts of the vital signs, fed by `observe` (attach with `attached`)."""

    def __init__(self, n_layers: int):
        self.n_layers = n_layers
        self.sums = [dict.fromkeys(SIGNS, 0.0) for _ in range(n_layers)]
        self.counts = [dict.fromkeys(SIGNS, 0) for _ in range(n_layers)]
        self.text_mask: torch.Tensor | None = None  # (B, T) of the batch being run
        self.caption_at: int | None = None  # index in [text; visual] of the first caption slot
        self.has_caption: torch.Tensor | None = None  # (B,) tweets with a real caption
        self.tweets = 0

    def begin(
        self, text_mask: torch.Tensor, caption_at: int | None, has_caption: torch.Tensor | None
    ) -> None:
        """Called by `CatMner.encode` before the layers run over a batch."""
        self.text_mask, self.caption_at, self.has_caption = text_mask, caption_at, has_caption
        self.tweets += int(text_mask.shape[0])

    def _add(self, i: int, name: str, values: torch.Tensor, mask: torch.Tensor) -> None:
        mask = mask.expand_as(values)
        self.sums[i][name] += float(values.double().masked_select(mask).sum())
        self.counts[i][name] += int(mask.sum())

    @torch.no_grad()
    def observe(
        self,
        i: int,
        q: torch.Tensor,
        k: torch.Tensor,
        key_mask: torch.Tensor,
        n_text: int,
        gate: torch.Tensor | None,
        sal: torch.Tensor | None,
        probs: torch.Tensor,
        refine: tuple[bool, bool],
    ) -> None:
        """One layer's attention: q (B, H, N_q, Dh) the queries used, k (B, H, N, Dh) the keys, key_mask (B, N)
        real keys, gate (B, H, N_q, N) per (query, key) or None, sal (B, H, 1, N) scaled saliency or None,
        probs (B, H, N_q, N), refine: (I2T refined, T2I refined in this layer)."""
        if self.text_mask is None:
            raise RuntimeError("VitalSigns.observe before begin")
        T, N, n_q = n_text, k.shape[2], q.shape[2]
        if N == T:  # no visual tokens: nothing cross-modal to measure
            return
        text_q = self.text_mask[:, None, :, None]  # (B, 1, T, 1) real text queries
        vis_k = key_mask[:, None, None, T:]  # (B, 1, 1, I) real visual keys
        text_k = key_mask[:, None, None, :T]
        qf, kf = q.float(), k.float()
        self._add(i, "qk_i2t", (qf[:, :, :T] @ kf[:, :, T:].transpose(-1, -2)).abs(), text_q & vis_k)
        if n_q > T:
            vis_q = key_mask[:, None, T:n_q, None]  # (B, 1, I, 1) real visual queries
            self._add(i, "qk_t2i", (qf[:, :, T:] @ kf[:, :, :T].transpose(-1, -2)).abs(), vis_q & text_k)
        i2t, t2i = refine
        if gate is not None and sal is not None:
            s = sal[:, :, 0].float()  # (B, H, N)
            if i2t:
                g_v = gate[:, :, 0, T:].float()  # (B, H, I): query 0 is a text query ([CLS])
                m_v = key_mask[:, None, T:]  # (B, 1, I)
                self._add(i, "gate_i2t", g_v, m_v)
                self._add(i, "gs_i2t", g_v * s[:, :, T:], m_v)
                self._add(i, "s_i2t", s[:, :, T:], m_v)
                p = s[:, :, T:] * m_v  # s as a distribution over the real visual keys
                p = p / p.sum(-1, keepdim=True).clamp(min=1e-30)
                ent = -(p * p.clamp(min=1e-30).log()).sum(-1)  # (B, H)
                n_vis = m_v.sum(-1).expand_as(ent)  # (B, H)
                every = torch.ones_like(ent, dtype=torch.bool)
                self._add(i, "saliency_entropy", ent, every)
                several = n_vis > 1
                self._add(
                    i, "saliency_entropy_norm", ent / n_vis.clamp(min=2).double().log().float(), several
                )
            if t2i and n_q > T:
                g_t = gate[:, :, T, :T].float()  # (B, H, T): query T is a visual query
                m_t = key_mask[:, None, :T]
                self._add(i, "gate_t2i", g_t, m_t)
                self._add(i, "gs_t2i", g_t * s[:, :, :T], m_t)
        pt = probs[:, :, :T].float() * key_mask[:, None, None, :]  # (B, H, T, N) text queries' mass
        share = pt[..., T:].sum(-1) / pt.sum(-1).clamp(min=1e-30)  # (B, H, T)
        self._add(i, "text_visual_mass", share, self.text_mask[:, None, :])
        at = self.caption_at
        if at is not None and self.has_caption is not None and bool(self.has_caption.any()):
            cap = pt[..., at:]  # (B, H, T, Lc) mass on the caption slots (masked slots are 0)
            first = cap[..., 0] / cap.sum(-1).clamp(min=1e-30)  # (B, H, T)
            self._add(i, "caption_first_share", first, (self.text_mask & self.has_caption[:, None])[:, None])

    def result(self) -> dict[str, Any]:
        """{"tweets": n, "layers": [{sign: mean or None}, ...], "mean": {sign: mean over layers or None}}."""
        layers = [
            {
                name: (self.sums[i][name] / self.counts[i][name]) if self.counts[i][name] else None
                for name in SIGNS
            }
            for i in range(self.n_layers)
        ]
        mean: dict[str, float | None] = {}
        for name in SIGNS:
            got = [layer[name] for layer in layers if layer[name] is not None]
            mean[name] = sum(got) / len(got) if got else None
        return {"tweets": self.tweets, "layers": layers, "mean": mean}


@torch.no_grad()
def measure_vitals(model: Any, examples: Sequence[Any], batch_size: int = 32) -> dict[str, Any]:
    """The vital signs (see the module docstring) of ``model`` over ``examples`` (`batching.Example`), in eval
    mode. The model must be a CAT-MNER model (family "catmner") with visual tokens (not the text variant)."""
    if getattr(model.cfg, "family", "catmner") != "catmner":
        raise CatmnerError(f"vital signs measure CAT-MNER's layers, not a {model.cfg.family!r} model")
    if not model.cfg.uses_image:
        raise CatmnerError("the text variant has no visual tokens: no cross-modal attention to measure")
    if not examples:
        raise CatmnerError("no examples to measure the vital signs on")
    was_training = model.training
    model.eval()
    probe = VitalSigns(len(model.layers))
    model._vitals = probe
    collate = model.collator()
    try:
        for start in range(0, len(examples), batch_size):
            batch = collate(examples[start : start + batch_size]).to(model.device)
            model.encode(batch)
    finally:
        model.__dict__.pop("_vitals", None)
        model.train(was_training)
    out = probe.result()
    out["saliency_scale"] = model.cfg.saliency_scale
    if model.saliency_log_scale is not None:
        out["saliency_multiplier"] = [round(math.exp(float(w)), 6) for w in model.saliency_log_scale]
    return out


@torch.no_grad()
def start_saliency_at_qk(model: Any, examples: Sequence[Any], batch_size: int = 32) -> list[float]:
    """Start each layer's learned saliency multiplier ``exp(w_l)`` where ``g * s`` is on the scale of
    ``|QK^T|``: at ``mean |QK^T| / mean s`` of the layer's I2T block on ``examples`` (the scaled saliency's
    mean then equals the mean |QK^T|). Returns the multipliers. Needs ``saliency_scale="learned"`` and an
    I2T-refined variant; call it before training (the gates start at 0, so nothing else changes)."""
    if model.saliency_log_scale is None or model.gates_i2t is None:
        raise CatmnerError(
            "starting the saliency at |QK^T| needs saliency_scale 'learned' and I2T refinement"
        )
    vitals = measure_vitals(model, examples, batch_size)
    for i, layer in enumerate(vitals["layers"]):
        qk, sal = layer["qk_i2t"], layer["s_i2t"]
        if qk and sal:
            model.saliency_log_scale[i] += math.log(qk / sal)
    return [math.exp(float(w)) for w in model.saliency_log_scale]


def inspect_model(
    model_dir: str | os.PathLike[str],
    dataset: str,
    split: str = "valid",
    *,
    data_dir: str | os.PathLike[str] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
    captions: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    max_tweets: int | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """`catmner inspect`: the vital signs of a model directory on a benchmark split, with what it read
    (``{"model_dir", "dataset", "split", "config": {...}, "tweets", "layers", "mean", ...}``)."""
    from catmner_model.data import load_split, resolve_image_dir
    from catmner_model.predict import Predictor

    tweets = load_split(dataset, split, data_dir)
    if max_tweets is not None:
        tweets = tweets[:max_tweets]
    predictor = Predictor(model_dir, device=device)
    cfg = predictor.model.cfg
    if getattr(cfg, "family", "catmner") != "catmner":
        raise InspectError(f"{model_dir}: a {cfg.family!r} model; vital signs measure CAT-MNER's layers")
    if not cfg.uses_image:
        raise InspectError(f"{model_dir}: the text variant has no visual tokens, so no vital signs")
    images = resolve_image_dir(image_dir, data_dir) if predictor.uses_images else None
    source = predictor.source(dataset, data_dir=data_dir, image_dir=images, captions=captions)
    examples = source.examples(tweets)
    try:
        result = measure_vitals(predictor.model, examples, batch_size)
    except ValueError as exc:
        raise InspectError(f"{model_dir}: {exc}") from None
    settings = ("variant", "visual", "caption_positions", "softmax", "saliency_scale", "saliency_scale_init")
    head = {
        "model_dir": str(model_dir),
        "dataset": dataset,
        "split": split,
        "config": {name: getattr(cfg, name) for name in settings},
        "images": sum(ex.image_features is not None or ex.image_file is not None for ex in examples),
        "captions": sum(ex.caption is not None for ex in examples),
    }
    return {**head, **result}


def format_vitals(result: dict[str, Any]) -> str:
    """The vital signs as a table: one row per layer, then the mean."""
    shown = [name for name in SIGNS if any(layer[name] is not None for layer in result["layers"])]
    widths = [max(len(name), 10) for name in shown]
    lines = [f"{'layer':>5} " + " ".join(f"{name:>{w}}" for name, w in zip(shown, widths, strict=True))]
    rows = [(str(i), layer) for i, layer in enumerate(result["layers"])] + [("mean", result["mean"])]
    for label, values in rows:
        cells = (
            f"{values[n]:>{w}.4g}" if values[n] is not None else f"{'-':>{w}}"
            for n, w in zip(shown, widths, strict=True)
        )
        lines.append(f"{label:>5} " + " ".join(cells))
    return "\n".join(lines)
