"""What defines a training run: `TrainConfig`, `TrainError`, the checks of a config before any work, the
model config a run builds, its default output directory and the fingerprint compared on resume."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from catmner_model.config import VARIANT_SPECS
from catmner_model.data import catmner_home
from catmner_model.errors import CatmnerError

# the variants whose attention label words refine: ("cat", "i2t", "t2i")
LABEL_WORD_VARIANTS = tuple(name for name, v in VARIANT_SPECS.items() if v.uses_label_words)
# config fields that do not change the result: they may differ between a run and its resumption
_NON_RESULT_FIELDS = (
    "output",
    "quiet",
    "data_dir",
    "image_dir",
    "num_threads",
    "feature_cache",
    "vitals_tweets",
)


class TrainError(CatmnerError):
    """A training run that cannot start or resume; the message is one line for the user."""


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint and in the run record)."""

    dataset: str = "twitter2015"  # benchmark: twitter2015 | twitter2017
    labels: str | None = "textual"  # label words: kb source name, build id or JSON file (None: text/mm only)
    db: str | None = None  # kb store for `labels` (default: kb_expand's $KBX_DB / $CATMNER_HOME/kb.sqlite)
    text_encoder: str | None = None  # HF name/path or named config ("tiny"); None: offline MiniLM default
    image_encoder: str = "efficientnet-lite0"  # efficientnet-lite0 | open_clip:<model>:<tag> | tiny | none
    variant: str = "cat"  # cat (refined I2T+T2I) | mm (no refinement) | i2t | t2i | text (no image)
    # the model family (families.py): catmner (CAT-MNER and its variants) | umt (UMT reads variant "mm")
    model: str = "catmner"
    # train the image encoder with the model (at encoder_lr; meant for GPUs): the model reads the grid-cell
    # pixels of every image at each step instead of cached frozen features
    finetune_image_encoder: bool = False
    # visual tokens: grid (image encoder over the 4x4 grid) | caption (the image's caption) | grid+caption
    visual: str = "grid"
    # caption file or folder (default $CATMNER_CAPTIONS, data_dir/captions/); "none": no tweet gets a caption
    # (the caption path without content: the learned no-caption token only)
    captions: str | None = None
    captioner: str | None = None  # HF image-to-text model captioning images that have no caption
    knowledge: str | None = None  # a second text segment per tweet: "pgim" (data_dir/pgim/<dataset>_pgim.zip)
    epochs: int = 10  # passes over the training split
    # validate (and keep the model if it is the best so far) after every k-th epoch and after the last one;
    # 1: after each. Many epochs over a few tweets (Figure 3) spend most of their time validating
    valid_every: int = 1
    # early stopping: end the run once this many validations in a row (valid_every counts) brought no gain in
    # validation F1 over the best so far; the best epoch's model is kept as always. None: train all epochs.
    # The learning-rate schedule stays defined over `epochs` (a run stopped early never reaches its end)
    patience: int | None = None
    lr: float = 5e-4  # peak learning rate of the new layers (paper: 5e-4)
    # peak learning rate of the pretrained text encoder: 1e-4, chosen on validation (docs/model.md, "Recipe
    # search"; 5e-5 until 2026-12-08: under-trains MiniLM in 3 epochs)
    encoder_lr: float = 1e-4
    # peak learning rate of the learned saliency scale (saliency_scale="learned"), a group of its own; None: lr.
    # At lr 5e-4 its log moves by ~0.2 in a run: too little to bring g*s to the scale of QK^T
    saliency_lr: float | None = None
    # before the first step, start the learned saliency scale of each layer at mean |QK^T| / mean s of its I2T
    # block on the first 256 training tweets (vitals.start_saliency_at_qk), so g*s is on the scale of QK^T
    saliency_from_qk: bool = False
    weight_decay: float = 0.01  # AdamW decay (never on biases and norm weights)
    warmup_ratio: float = 0.1  # fraction of all optimizer steps spent warming up linearly
    max_grad_norm: float = 1.0  # gradient clipping (0: off)
    batch_size: int = 16  # tweets per optimizer step (per process under DDP)
    eval_batch_size: int = 64  # tweets per forward at validation/test time
    bucket_size: int = 50  # batches per length bucket (sorted within, shuffled across)
    seed: int = 42  # seeds init, shuffling, dropout, subsampling
    max_train: int | None = None  # use a random subset of this many training tweets (quick runs, Figure 3)
    max_eval: int | None = None  # use the first N validation/test tweets (quick runs, benchmarks)
    # after each validation, the refinement's vital signs (vitals.py) on the first N validation tweets, in the
    # epoch's log entry and the run record; 0: off (models with visual tokens only)
    vitals_tweets: int = 256
    data_dir: str | None = None  # folder with twitter2015/ twitter2017/ (default $CATMNER_DATA)
    image_dir: str | None = None  # folder with <dataset>_images/ (default $CATMNER_IMAGES, data_dir/...)
    feature_cache: str | None = None  # grid-feature cache root (default $CATMNER_HOME/features)
    output: str | None = None  # run directory (default $CATMNER_HOME/runs/<dataset>-<variant>-seed<seed>)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # extra CatMnerConfig fields
    num_threads: int | None = None  # torch CPU threads (None: torch's default)
    deterministic: bool = False  # GPU: deterministic kernels, so runs and resumed runs are bit-identical
    # fp32 | bf16 (autocast around forward passes) | auto (bf16 where the hardware has it natively); precision.py
    precision: str = "fp32"
    quiet: bool = False  # no progress bars


def config_fingerprint(config: TrainConfig) -> dict[str, Any]:
    """The config fields that determine the result (compared on resume)."""
    d = dataclasses.asdict(config)
    for name in _NON_RESULT_FIELDS:
        d.pop(name, None)
    if d.get("model") == "catmner":  # runs from before model families fingerprint without the field
        d.pop("model")
    return d


def effective_visual(config: TrainConfig) -> tuple[str, ...]:
    """The visual sources a run's model reads (() for the text variant), from ``config.visual`` (the command
    line's string: "grid", "caption", "grid+caption")."""
    from catmner_model.visual_sources import parse_visual

    return () if config.variant == "text" else parse_visual(config.visual)


def default_output(config: TrainConfig) -> Path:
    labels = Path(str(config.labels)).stem if config.labels else "nolabels"
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in labels)
    kind = config.variant if config.model == "catmner" else config.model
    return catmner_home() / "runs" / f"{config.dataset}-{kind}-{safe}-seed{config.seed}"


def build_model_config(config: TrainConfig, feature_dim: int | None) -> Any:
    """The CatMnerConfig of a run: a bundled config ("minilm", "tiny") or the minilm defaults with another text
    encoder (HF name/path), plus variant, image feature width and ``model_overrides``."""
    from catmner_model.config import list_configs, load_config

    name = config.text_encoder or "minilm"
    overrides: dict[str, Any] = {"variant": config.variant, "family": config.model}
    if name not in list_configs():
        overrides["text_encoder"] = name
        name = "minilm"
    if feature_dim is not None:
        overrides["image_feature_dim"] = feature_dim
    if config.finetune_image_encoder and config.variant != "text":
        overrides["trainable_image_encoder"] = config.image_encoder
    visual = effective_visual(config)
    overrides["visual"] = visual
    if "grid" in visual and config.image_encoder not in ("none", ""):
        overrides["image_encoder"] = config.image_encoder
    if config.knowledge:
        overrides["text_context"] = config.knowledge
    overrides.update(config.model_overrides)
    try:
        return load_config(name, **overrides)
    except ValueError as exc:
        raise TrainError(f"model config: {exc}") from None


def check_config(config: TrainConfig) -> None:
    """Refuse a config that cannot run, before any work (one TrainError line)."""
    from catmner_model.config import VARIANTS

    if config.variant not in VARIANTS:
        raise TrainError(f"unknown variant {config.variant!r}: choose one of {', '.join(VARIANTS)}")
    from catmner_model.families import FAMILIES

    family = FAMILIES.get(config.model)
    if family is None:
        raise TrainError(f"unknown --model {config.model!r}: choose one of {', '.join(FAMILIES)}")
    problem = family.check_training(config) if family.check_training is not None else None
    if problem:
        raise TrainError(problem)
    from catmner_model.visual_sources import VISUAL_SOURCES, parse_visual

    try:
        named = parse_visual(config.visual)
    except ValueError:
        named = None
    if not named and config.variant != "text":
        choices = ", ".join(VISUAL_SOURCES)
        raise TrainError(
            f"--visual {config.visual!r}: choose from {choices}, joined by + (none is --variant text)"
        )
    if config.knowledge not in (None, "", "pgim"):
        raise TrainError(f"--knowledge {config.knowledge!r}: the only known knowledge is 'pgim'")
    from catmner_model.precision import PRECISIONS

    if config.precision not in PRECISIONS:
        raise TrainError(f"--precision {config.precision!r}: choose one of {', '.join(PRECISIONS)}")
    grid = "grid" in effective_visual(config)
    if config.finetune_image_encoder and (not grid or config.image_encoder in ("none", "")):
        raise TrainError("--finetune-image-encoder needs an image encoder and a variant that reads images")
    if config.labels and config.variant not in LABEL_WORD_VARIANTS:
        raise TrainError(
            f"variant {config.variant!r} uses no label words: drop --labels {config.labels} "
            f"(label words refine attention in {', '.join(LABEL_WORD_VARIANTS)})"
        )
    if config.vitals_tweets < 0:
        raise TrainError(f"--vitals-tweets must be 0 (off) or more, got {config.vitals_tweets}")
    if config.saliency_lr is not None and not config.saliency_lr > 0:
        raise TrainError(f"--saliency-lr must be positive, got {config.saliency_lr}")
    if config.saliency_from_qk and config.variant not in ("cat", "i2t"):
        raise TrainError(
            f"--saliency-from-qk needs a variant that refines I2T (cat, i2t), not {config.variant!r}"
        )
    if config.patience is not None and config.patience < 1:
        raise TrainError(
            f"--patience must be at least 1 (or left out: no early stopping), got {config.patience}"
        )
    if config.epochs < 1 or config.batch_size < 1:
        raise TrainError("--epochs and --batch-size must be at least 1")
