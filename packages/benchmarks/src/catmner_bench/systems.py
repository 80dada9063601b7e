"""The systems of the benchmarks: which code trains each system of the paper's tables (`SYSTEMS`), and the
resolved config of a system under a profile (`system_config`: what a run key hashes besides data and seed),
with the defaults a config resolves (saliency scale, caption placement). `catmner_bench.runner` trains them.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

from catmner_model.visual_sources import parse_visual

from catmner_bench.catalog import SYSTEM_LABELS
from catmner_bench.errors import BenchError
from catmner_bench.profiles import Profile


@dataclass(frozen=True)
class System:
    """A runnable system: how it is trained and what the reports call it."""

    key: str  # identifier used on the command line and in records (its report label: `label`)
    kind: str  # "span" (catmner_model.train_model) or "crf" (baselines.py)
    variant: str | None = None  # span models: CatMnerConfig variant
    labels: str | None = None  # span models: "textual" / "multimodal" label words, or None
    visual: str | None = None  # span models: visual source (None: the profile's; "grid", "caption", ...)
    knowledge: str | None = None  # span models: a second text segment ("pgim")
    overrides: tuple[tuple[str, Any], ...] = ()  # span models: CatMnerConfig fields of this system
    # span models: instead of the profile's label words, as many random English words drawn at their Zipf
    # frequencies (random_words.py), a new draw per training seed ("zipf"); None: the label words themselves
    random_words: str | None = None
    captions: str | None = None  # span models: "none": no tweet gets its caption (the caption path, empty)
    train: tuple[tuple[str, Any], ...] = ()  # span models: TrainConfig fields of this system (TRAIN_FIELDS)
    model: str = "catmner"  # span models: the catmner_model family ("umt": UMT, Yu et al. 2020)

    @property
    def label(self) -> str:
        """Its row label in reports (`catmner_bench.catalog`, where the report reads it)."""
        return SYSTEM_LABELS[self.key]


SYSTEMS: dict[str, System] = {
    s.key: s
    for s in (
        System("bilstm-crf", "crf"),
        System("cnn-bilstm-crf", "crf"),
        System("lm-crf", "crf"),
        System("lm-span", "span", "text", None),
        System("mm", "span", "mm", None),
        System("t2i", "span", "t2i", "textual"),
        System("i2t", "span", "i2t", "textual"),
        System("cat-textual", "span", "cat", "textual"),
        System("cat-visualgenome", "span", "cat", "multimodal"),
        System("cat-grid", "span", "cat", "textual", visual="grid"),
        System("pgim-span", "span", "text", None, knowledge="pgim"),
        # the headline's strongest candidate: CAT-MNER over captions with PGIM's knowledge as well (issue 29)
        System("cat-pgim", "span", "cat", "textual", knowledge="pgim"),
        # UMT on our encoder and visual inputs (catmner_model's family "umt"; variant "mm": no label words)
        System("umt", "span", "mm", None, visual="caption", model="umt"),
        System("umt-grid", "span", "mm", None, visual="grid", model="umt"),
        System("lm-span-shape", "span", "text", overrides=(("case_features", "shape"),)),
        System("lm-span-char", "span", "text", overrides=(("case_features", "shape+char"),)),
        System(
            "cat-random",
            "span",
            "cat",
            "textual",
            random_words="zipf",
        ),
        System("mm-empty", "span", "mm", None, captions="none"),
        # the refinement's options of issue 28, as rows to choose on validation
        System("mm-block", "span", "mm", None, overrides=(("softmax", "block"),)),
        System(
            "cat-block",
            "span",
            "cat",
            "textual",
            overrides=(("softmax", "block"),),
        ),
        System(
            "cat-sal-qk",
            "span",
            "cat",
            "textual",
            # exp(w) starts at 8, where |QK^T| is in trained models (medians 6.5-10.7, issue 28)
            overrides=(("saliency_scale", "learned"), ("saliency_scale_init", 8.0)),
        ),
        System(
            "cat-sal-lr",
            "span",
            "cat",
            "textual",
            # its log can travel ~log(8) in a quick run (Adam moves it by about the lr a step)
            overrides=(("saliency_scale", "learned"),),
            train=(("saliency_lr", 1e-2),),
        ),
        System(
            "cat-sal-fromqk",
            "span",
            "cat",
            "textual",
            overrides=(("saliency_scale", "learned"),),
            train=(("saliency_from_qk", True),),  # measured per layer before the first step
        ),
        System(
            "cat-sal-paper",
            "span",
            "cat",
            "textual",
            overrides=(("saliency_scale", "paper"),),
        ),
        System(
            "cat-sal-keys",
            "span",
            "cat",
            "textual",
            overrides=(("saliency_scale", "keys"),),
        ),
        System(
            "cat-sal-learned",
            "span",
            "cat",
            "textual",
            overrides=(("saliency_scale", "learned"),),
        ),
    )
}


# ----------------------------------------------------------------------------------------------- run configs
def _data_config(profile: Profile) -> dict[str, Any]:
    """The data-size fields of a profile (part of every run key: a different subset is a different run)."""
    return {"n_train": profile.n_train, "n_eval": profile.n_eval}


def system_config(
    system: str, profile: Profile, *, epochs: int | None = None, visual: str | None = None
) -> dict[str, Any]:
    """The resolved config of a system under a profile (what the run key hashes, besides data and seed)."""
    if system not in SYSTEMS:
        raise BenchError(f"unknown system {system!r}: choose from {', '.join(SYSTEMS)}")
    s = SYSTEMS[system]
    if s.kind == "crf":
        from catmner_bench.baselines import BaselineConfig

        lm = system == "lm-crf"
        cfg = BaselineConfig(
            system=system,
            text_encoder=profile.text_encoder,
            epochs=epochs or (profile.epochs if lm else profile.baseline_epochs),
            batch_size=profile.batch_size if lm else profile.baseline_batch_size,
            lr=profile.lr if lm else profile.baseline_lr,
            encoder_lr=profile.encoder_lr,  # LM-CRF: trained like the span models (see Profile)
            lstm_hidden=profile.lstm_hidden,
        )
        out = dataclasses.asdict(cfg)
        out.pop("device")
        if not lm:
            out.pop("text_encoder")
            out.pop("encoder_lr")
        return {"kind": "crf", "profile": profile.name, **_data_config(profile), **out}
    labels = None
    if s.labels == "textual":
        labels = profile.labels_textual
    elif s.labels == "multimodal":
        labels = profile.labels_multimodal
    visual = "none" if s.variant == "text" else (visual or s.visual or profile.visual)
    uses_grid = "grid" in parse_visual(visual)
    overrides = {**profile.model_overrides, **dict(s.overrides)}
    resolved: dict[str, Any] = {}
    if s.model != "catmner":  # CAT-MNER configs stay without the field: their run keys predate families
        resolved["model"] = s.model
    if labels is not None:  # the saliency scale a refined model trains with is part of the run's identity
        resolved["saliency_scale"] = overrides.get("saliency_scale", default_saliency(profile.text_encoder))
    # where a CAT-MNER model's caption sits (pair since issue 28; older records: restart); UMT reads the caption
    # as a sequence of its own (restart), and its run keys keep no such field
    if s.model == "catmner" and "caption" in parse_visual(visual):
        resolved["caption_positions"] = overrides.get(
            "caption_positions", default_caption_positions(profile.text_encoder)
        )
    if s.random_words:
        resolved["random_words"] = s.random_words
    if s.captions:
        resolved["captions"] = s.captions
    resolved.update(dict(s.train))
    if profile.patience is not None:  # early stopping; absent (not None) without it: run keys stay as before
        resolved["patience"] = profile.patience
    return {
        "kind": "span",
        "profile": profile.name,
        **_data_config(profile),
        "variant": s.variant,
        "visual": visual,
        "knowledge": s.knowledge,
        "labels": labels,
        "text_encoder": profile.text_encoder,
        "image_encoder": profile.image_encoder if uses_grid else "none",
        "epochs": epochs or profile.epochs,
        "batch_size": profile.batch_size,
        "lr": profile.lr,
        "encoder_lr": profile.encoder_lr,
        "model_overrides": overrides,
        **resolved,
    }


@functools.cache
def default_saliency(text_encoder: str) -> str | float:
    """The saliency scale catmner trains with for this encoder unless overridden: its bundled model config's
    (the minilm config's for any other encoder, as the trainer does). Cached: the report resolves configs per
    group and the bundled configs do not change within a process."""
    from catmner_model import list_configs, load_config

    return load_config(text_encoder if text_encoder in list_configs() else "minilm").saliency_scale


@functools.cache
def default_caption_positions(text_encoder: str) -> str:
    """The caption placement catmner trains with for this encoder unless overridden (its bundled config's)."""
    from catmner_model import list_configs, load_config

    return load_config(text_encoder if text_encoder in list_configs() else "minilm").caption_positions


def saliency_of(config: dict[str, Any]) -> str | None:
    """The saliency scale a run config trained with (None: no refinement with label words). Configs from before
    the scale was resolved into them trained with the paper's, unless a system override said otherwise."""
    if config.get("kind") != "span" or not config.get("labels"):
        return None
    overrides = config.get("model_overrides") or {}
    return str(config.get("saliency_scale") or overrides.get("saliency_scale", "paper"))
