"""Public facade: the building blocks catmner's own runs are made of, for code that assembles runs from them.

`train_model` / `load_model` (the package's top-level API) run whole trainings and predictions. A harness
that needs the pieces instead (the speed benchmark steps through the trainer's own epoch loop with its own
optimizers; the CRF baselines reuse the text-encoder loader and the character CNN) imports them from here:

- the trainer's loop and inputs (`training/`): `run_epoch`, `make_optimizer`, `linear_schedule`,
  `prepare_visual`, `build_model_config`, `epoch_batches`, `example_lengths`, `load_label_words`,
  `save_best_model`, `seed_everything`, `DistInfo`;
- numeric precision (`precision.py`): `autocast`, `native_bf16`, `cpu_flags`;
- text encoders by spec (`text_encoder.py`): `load_text_encoder`, `load_tokenizer`, `minilm_path`,
  `TINY_ENCODER` (the random 2-layer BERT of ``text_encoder="tiny"``);
- model parts (`wordform.py`): `CharCNN`.

The names resolve lazily to the modules that own them (as the package's top-level names do), so importing
one loads only its module. `preload()` imports every module a training or prediction run executes: a
measurement that calls it first measures the code as it was when it started. This is a training-side
module: the inference modules never import it.
"""

from __future__ import annotations

import importlib

from catmner_model._lazy import lazy_getattr

_API = {
    "run_epoch": ("catmner_model.training.loop", "run_epoch"),
    "make_optimizer": ("catmner_model.training.optim", "make_optimizer"),
    "linear_schedule": ("catmner_model.training.optim", "linear_schedule"),
    "prepare_visual": ("catmner_model.training.inputs", "prepare_visual"),
    "epoch_batches": ("catmner_model.training.inputs", "epoch_batches"),
    "example_lengths": ("catmner_model.training.inputs", "example_lengths"),
    "load_label_words": ("catmner_model.training.inputs", "load_label_words"),
    "build_model_config": ("catmner_model.training.config", "build_model_config"),
    "save_best_model": ("catmner_model.training.checkpoint", "save_best_model"),
    "seed_everything": ("catmner_model.training.distributed", "seed_everything"),
    "DistInfo": ("catmner_model.training.distributed", "DistInfo"),
    "autocast": ("catmner_model.precision", "autocast"),
    "native_bf16": ("catmner_model.precision", "native_bf16"),
    "cpu_flags": ("catmner_model.precision", "cpu_flags"),
    "load_text_encoder": ("catmner_model.text_encoder", "load_text_encoder"),
    "load_tokenizer": ("catmner_model.text_encoder", "load_tokenizer"),
    "minilm_path": ("catmner_model.text_encoder", "minilm_path"),
    "TINY_ENCODER": ("catmner_model.text_encoder", "TINY_ENCODER"),
    "CharCNN": ("catmner_model.wordform", "CharCNN"),
}
# every module a training run, its validation and a prediction execute
RUN_MODULES = (
    "catmner_model.training.loop",
    "catmner_model.evaluate",
    "catmner_model.metrics",
    "catmner_model.predict",
    "catmner_model.vision",
    "catmner_model.visual",
)
__all__ = ["RUN_MODULES", "preload", *_API]


def preload() -> None:
    """Import every module of `RUN_MODULES` now (and what they import)."""
    for name in RUN_MODULES:
        importlib.import_module(name)


__getattr__ = lazy_getattr("catmner_model.harness", _API, globals())
