"""catmner_model: the CAT-MNER model, data layer, training and evaluation.

The public Python API (imported lazily, so ``import catmner_model`` stays cheap)::

    from catmner_model import TrainConfig, evaluate_model, load_model, train_model

    record = train_model(TrainConfig(dataset="twitter2017", visual="caption", labels="textual", epochs=3))
    model = load_model(record["model_dir"])                      # a Predictor
    model.predict(["Messi scores for Barcelona"], captions=["a soccer player on a field"])
    evaluate_model(record["model_dir"], "twitter2017", "test")  # lenient + strict P/R/F1, per type

(``train_model`` / ``evaluate_model``, not ``train`` / ``evaluate``: those names are the package's modules.)
Errors a user can fix are `CatmnerError` (one-line messages).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "CatmnerError": ("catmner_model.errors", "CatmnerError"),
    "CatMnerConfig": ("catmner_model.config", "CatMnerConfig"),
    "CatMner": ("catmner_model.model", "CatMner"),
    "create_model": ("catmner_model.model", "create_model"),
    "TrainConfig": ("catmner_model.training.config", "TrainConfig"),
    "train_model": ("catmner_model.training.loop", "train"),
    "RunRecord": ("catmner_model.training.record", "RunRecord"),
    "Predictor": ("catmner_model.predict", "Predictor"),
    "load_model": ("catmner_model.predict", "load_model"),
    "evaluate_model": ("catmner_model.evaluate", "evaluate_model"),
    "VisualSource": ("catmner_model.visual", "VisualSource"),
    "Tweet": ("catmner_model.data", "Tweet"),
    "Entity": ("catmner_model.data", "Entity"),
    "load_split": ("catmner_model.data", "load_split"),
}
__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        module, attr = _API[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'catmner_model' has no attribute {name!r}")
