"""Benchmark profiles: how big a run is (encoders, epochs, data) for the smoke tests, a CPU, or the paper's GPU.

This module owns the three named profiles and their resolution against command-line overrides; every value
that reaches a run ends up in the run's resolved config (and therefore in its run key).

- ``smoke``: tiny random-init encoders on a few real tweets (images included); seconds per run; the test suite.
- ``quick``: the offline defaults (all-MiniLM-L6-v2, EfficientNet-Lite0) on the full splits, few epochs (CPU).
- ``paper``: Section 4.1 of the paper (AdamW, lr 5e-4 with linear warm-up, batch 10; RoBERTa-large and a CLIP
  ViT, which must be available to transformers / open_clip on the machine); for a GPU.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from catmner_bench import paper
from catmner_bench.errors import BenchError

PROFILE_NAMES = ("smoke", "quick", "paper")


def bundled_label_words(name: str) -> str:
    """Path of a small label-word JSON shipped for the smoke profile ("textual" or "visualgenome")."""
    return str(resources.files("catmner_bench") / "data" / f"smoke_labels_{name}.json")


@dataclass(frozen=True)
class Profile:
    """One benchmark size. Span models go through catmner_model.train_model; CRF baselines through baselines.py."""

    name: str  # "smoke", "quick" or "paper"
    text_encoder: str  # HF name/path, "minilm" (offline default) or "tiny" (random, tests)
    image_encoder: str  # "efficientnet-lite0", "open_clip:<model>:<tag|ckpt>" or "tiny"
    labels_textual: str  # label words of CAT-MNER (textual KB): kb source name, build id or JSON file
    labels_multimodal: str  # label words from the multimodal KB (Visual Genome)
    epochs: int  # span models: passes over the training split
    batch_size: int  # span models: tweets per step (paper: 10)
    lr: float  # span models: peak lr of new layers (paper: 5e-4)
    encoder_lr: float  # span models: peak lr of the pretrained text encoder
    n_train: int | None  # training tweets (None: the whole split); smoke keeps the tweets with images first
    n_eval: int | None  # validation/test tweets (None: the whole split)
    seeds: tuple[int, ...]  # default seeds (mean ± std over them)
    # BiLSTM-CRF baselines (trained from scratch). LM-CRF fine-tunes the text encoder as the span models do and
    # is trained like them (their epochs, batch size, lr and encoder lr), so that "CRF vs span" compares the
    # decoders only, as the paper's BERT-CRF and BERT-SPAN rows do
    baseline_epochs: int  # BiLSTM baselines: epochs
    baseline_lr: float  # BiLSTM baselines: Adam lr
    baseline_batch_size: int  # BiLSTM baselines: tweets per step
    lstm_hidden: int  # BiLSTM hidden size per direction
    fig3_alphas: tuple[int, ...]  # Figure 3: training-set sizes
    fig3_samplings: int  # Figure 3: random samplings per alpha (paper: 8)
    fig3_epochs: int  # Figure 3: epochs per run (small training sets need more passes)
    num_threads: int | None  # torch CPU threads (None: torch's default)
    visual: str = "grid"  # span models' visual source: grid | caption | grid+caption (systems may pin one)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # extra CatMnerConfig fields
    # Figure 3: at least this many optimizer steps per run (0: fig3_epochs alone). Ten epochs of 50 tweets are
    # 40 steps of 16, too few to train on (validation F1 still unstable at the last epoch); the floor gives a
    # small alpha more epochs
    fig3_min_steps: int = 0
    # Figure 3: validate about this many times per run (every ceil(epochs / n)-th epoch and the last; 0: after
    # each epoch). At alpha=50 validating the full split takes 3-4x the epoch's training
    fig3_validations: int = 0
    # the decisive experiment (docs/decisive-experiment.md): training-set sizes and samplings per size, trained
    # with the profile's Figure-3 recipe at each size
    decisive_alphas: tuple[int, ...] = (100, 200)
    decisive_samplings: int = 8
    # span models: early stopping (catmner's TrainConfig.patience): end a run after this many validations in a
    # row without a validation-F1 gain; ``epochs`` (and Figure 3's) is then the most it trains, and the lr
    # schedule stays defined over them. None: no early stopping, and the run configs carry no such field, so
    # the run keys of every config from before the option stay what they were
    patience: int | None = None

    def fig3_epochs_for(self, alpha: int) -> int:
        """Epochs of a Figure-3 run on ``alpha`` training tweets: ``fig3_epochs``, or more where that is fewer
        than ``fig3_min_steps`` optimizer steps."""
        steps_per_epoch = math.ceil(alpha / self.batch_size)
        return max(self.fig3_epochs, math.ceil(self.fig3_min_steps / steps_per_epoch))

    def fig3_valid_every(self, alpha: int) -> int:
        """Validate a Figure-3 run every this many epochs (and after its last): 1 unless ``fig3_validations``."""
        if not self.fig3_validations:
            return 1
        return max(1, math.ceil(self.fig3_epochs_for(alpha) / self.fig3_validations))

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        text_encoder="tiny",
        image_encoder="tiny",
        labels_textual=bundled_label_words("textual"),
        labels_multimodal=bundled_label_words("visualgenome"),
        epochs=1,
        batch_size=8,
        lr=5e-4,
        encoder_lr=5e-4,
        n_train=16,
        n_eval=12,
        seeds=(1,),
        baseline_epochs=1,
        baseline_lr=1e-3,
        baseline_batch_size=8,
        lstm_hidden=16,
        fig3_alphas=(4, 8),
        fig3_samplings=2,
        fig3_epochs=1,
        num_threads=1,
        visual="grid+caption",
        decisive_alphas=(4, 8),
        decisive_samplings=2,
    ),
    "quick": Profile(
        name="quick",
        text_encoder="minilm",
        image_encoder="efficientnet-lite0",
        labels_textual="textual",
        labels_multimodal="visualgenome",
        epochs=3,
        batch_size=16,
        lr=5e-4,
        encoder_lr=1e-4,  # chosen by the recipe search on validation (rounds 1-2, docs/model.md); was 5e-5
        n_train=None,
        n_eval=None,
        seeds=(1,),
        baseline_epochs=10,
        baseline_lr=1e-3,
        baseline_batch_size=16,
        lstm_hidden=200,
        fig3_alphas=(50, 100, 200, 400),
        fig3_samplings=3,
        fig3_epochs=10,
        num_threads=None,
        visual="caption",
        fig3_min_steps=150,  # the steps the paper profile's 30 epochs give alpha=50 at batch 10
        fig3_validations=10,
    ),
    "paper": Profile(
        name="paper",
        **dataclasses.asdict(paper.SETTING),  # Section 4.1 (paper.py; the report's rerun note states it)
        labels_textual="textual",
        labels_multimodal="visualgenome",
        n_train=None,
        n_eval=None,
        baseline_epochs=50,
        baseline_lr=1e-3,
        baseline_batch_size=10,
        lstm_hidden=200,
        num_threads=None,
    ),
}


def resolve_profile(
    name: str,
    *,
    text_encoder: str | None = None,
    image_encoder: str | None = None,
    labels_textual: str | None = None,
    labels_multimodal: str | None = None,
    epochs: int | None = None,
    seeds: tuple[int, ...] | None = None,
    n_train: int | None = None,
    n_eval: int | None = None,
    visual: str | None = None,
    num_threads: int | None = None,
    patience: int | None = None,
    alphas: tuple[int, ...] | None = None,
    samplings: int | None = None,
) -> Profile:
    """The named profile with the given command-line overrides applied (None = keep the profile's value).
    ``alphas`` and ``samplings`` (training-set sizes, random samplings of each) apply to Figure 3 and to the
    decisive experiment alike; sampling i has seed ``seeds[0] + i`` whatever their number, so more samplings
    add runs and keep the finished ones."""
    if name not in PROFILES:
        raise BenchError(f"unknown profile {name!r}: choose one of {', '.join(PROFILE_NAMES)}")
    if samplings is not None and samplings < 1:
        raise BenchError(f"--samplings must be at least 1, got {samplings}")
    if alphas is not None and (not alphas or min(alphas) < 1):
        raise BenchError(f"--alphas must be positive training-set sizes, got {','.join(map(str, alphas))}")
    changes = {
        k: v
        for k, v in dict(
            text_encoder=text_encoder,
            image_encoder=image_encoder,
            labels_textual=labels_textual,
            labels_multimodal=labels_multimodal,
            epochs=epochs,
            seeds=tuple(seeds) if seeds else None,
            n_train=n_train,
            n_eval=n_eval,
            visual=visual,
            num_threads=num_threads,
            patience=patience,
            fig3_alphas=tuple(alphas) if alphas else None,
            decisive_alphas=tuple(alphas) if alphas else None,
            fig3_samplings=samplings,
            decisive_samplings=samplings,
        ).items()
        if v is not None
    }
    if patience is not None and patience < 1:
        raise BenchError(f"--patience must be at least 1, got {patience}")
    return dataclasses.replace(PROFILES[name], **changes)
