"""The catmner systems that are timed: `Setting` (a system at a precision, or with one speed change undone) and
`CatmnerSystem` (a catmner model stepped through the trainer's own loop, `catmner_model.training.loop.run_epoch`,
over given batches; saved for prediction through `Predictor`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from catmner_bench.speed.sizes import DATASET


@dataclass
class Setting:
    """One timed row: a system at a precision; before/after rows undo one speed change (``change``)."""

    system: str
    precision: str
    fused_adamw: bool = True  # False: the for-loop AdamW the trainer used before
    batching: str = "pieces"  # "words": batches length-bucketed by word count, as the trainer did before
    packing: bool = True  # False: position-wise layers computed on padding rows too, as the model did before

    @property
    def name(self) -> str:
        return "/".join(
            [self.system, self.precision]
            + ([] if self.fused_adamw else ["unfused-adamw"])
            + ([] if self.batching == "pieces" else [f"by-{self.batching}"])
            + ([] if self.packing else ["padded-rows"])
        )

    @property
    def change(self) -> str | None:
        """None for the current code path, else which change is undone."""
        undone = [] if self.fused_adamw else ["for-loop AdamW"]
        undone += [] if self.batching == "pieces" else ["batches bucketed by word count"]
        undone += [] if self.packing else ["padding rows computed"]
        return "before: " + ", ".join(undone) if undone else None


class CatmnerSystem:
    """A catmner model trained through the trainer's own loop (`run_epoch`), predicted through `Predictor`."""

    def __init__(
        self,
        key: str,
        ctx: Any,
        train_tweets: list[Any],
        test_tweets: list[Any],
        label_words: Any,
        device: torch.device,
        *,
        overrides: dict[str, Any] | None = None,
        fill_grid: bool = False,
    ):
        from catmner_model import TrainConfig, create_model
        from catmner_model.training.config import build_model_config
        from catmner_model.training.distributed import DistInfo
        from catmner_model.training.inputs import prepare_visual
        from catmner_model.training.optim import linear_schedule, make_optimizer

        from catmner_bench.runner import BenchError, _text_encoder_arg

        p = ctx.profile
        variant, visual = {
            "lm-span": ("text", "grid"),
            "cat-caption": ("cat", "caption"),
            "cat-grid": ("cat", "grid"),
        }[key]
        self.key, self.device = key, device
        self.config = TrainConfig(
            dataset=DATASET,
            labels=None,
            text_encoder=_text_encoder_arg(p.text_encoder),
            image_encoder=p.image_encoder if visual == "grid" and variant != "text" else "none",
            variant=variant,
            visual=visual,
            captions=str(ctx.captions) if ctx.captions else None,
            lr=p.lr,
            encoder_lr=p.encoder_lr,
            batch_size=p.batch_size,
            seed=p.seeds[0],
            data_dir=str(ctx.data_dir) if ctx.data_dir else None,
            image_dir=str(ctx.image_dir) if ctx.image_dir else None,
            feature_cache=str(ctx.feature_cache) if ctx.feature_cache else None,
            model_overrides=dict(overrides or {}),
            num_threads=p.num_threads,
            quiet=True,
        )
        splits = {"train": train_tweets, "valid": [], "test": test_tweets}
        _, examples, self.visual_stats, fdim = prepare_visual(self.config, splits, DistInfo(), False)
        self.train_examples, self.test_examples = examples["train"], examples["test"]
        if fill_grid:  # every tweet gets the features of one of the few real images, cycled
            found = [ex.image_features for ex in self.train_examples + self.test_examples]
            found = [f for f in found if f is not None]
            if not found:
                raise BenchError("speed: the grid system needs tweet images (pass --image-dir or --data-dir)")
            for i, ex in enumerate(self.train_examples + self.test_examples):
                if ex.image_features is None:
                    ex.image_features = found[i % len(found)]
        words = label_words if variant != "text" else ()
        self.model = create_model(build_model_config(self.config, fdim), words).to(device)
        self.collate = self.model.collator()
        self.optimizers = {
            fused: make_optimizer(self.model, self.config, device, fused=fused) for fused in (True, False)
        }
        self.schedulers = {
            fused: linear_schedule(opt, 25, 250 * self.config.epochs)
            for fused, opt in self.optimizers.items()
        }

    def train_steps(self, batches: Sequence[Sequence[int]], setting: Setting, examples: Any = None) -> float:
        from catmner_model.training.loop import run_epoch

        config = dataclasses.replace(self.config, precision=setting.precision)
        fused = setting.fused_adamw
        if not setting.packing:
            self.model.PACK_MIN_PADDING = 2.0  # never pack (an instance attribute: this model, this call)
        try:
            return run_epoch(
                self.model,
                self.optimizers[fused],
                self.schedulers[fused],
                examples if examples is not None else self.train_examples,
                batches,
                self.collate,
                config,
                self.device,
                "speed",
                False,
            )
        finally:
            self.model.__dict__.pop("PACK_MIN_PADDING", None)

    def padded_tokens(self, batches: Sequence[Sequence[int]]) -> tuple[float, float]:
        """Mean positions per step, (padded, real): text (B x T) plus visual tokens (B x I)."""
        padded = real = 0
        for idx in batches:
            b = self.collate([self.train_examples[i] for i in idx])
            padded += b.input_ids.numel()
            real += int(b.attention_mask.sum())
            if b.caption_ids is not None:
                padded += b.caption_ids.numel()
                real += int(b.caption_mask.sum())
            if b.image_features is not None:
                padded += b.image_features.shape[0] * b.image_features.shape[1]
                real += int(b.image_mask.sum()) * b.image_features.shape[1]
        n = max(1, len(batches))
        return padded / n, real / n

    def save(self, directory: Path) -> Path:
        from catmner_model.training.checkpoint import save_best_model

        directory.mkdir(parents=True, exist_ok=True)
        save_best_model(self.model, directory, self.config)
        return directory / "model"
