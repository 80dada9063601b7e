"""The public Python API of catmner_model, as documented in docs/model.md (this runs the documented example on
a tiny model), and the import rule: the inference modules never import the training modules."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import catmner_model
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
SRC = REPO / "packages" / "catmner_model" / "src" / "catmner_model"
INFERENCE = (
    "predict.py",
    "evaluate.py",
    "visual.py",
    "config.py",
    "model.py",
    "r_transformer.py",
    "components.py",
    "text_encoder.py",
    "model_io.py",
    "layouts.py",
    "batching.py",
    "attention.py",
    "wordform.py",
    "families.py",
    "umt.py",
    "crf.py",
)
TRAINING = (
    "catmner_model.training",
    "catmner_model.cli_train",
)


def test_documented_api_example_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    torch.set_num_threads(1)
    from catmner_model import CatmnerError, TrainConfig, evaluate_model, load_model, load_split, train_model

    tweets = load_split("twitter2017", "valid", DATA)[:8]
    config = TrainConfig(
        dataset="twitter2017",
        visual="caption",
        variant="mm",
        labels=None,
        text_encoder="tiny",
        epochs=1,
        batch_size=4,
        data_dir=str(DATA),
        output=str(tmp_path / "run"),
        quiet=True,
        num_threads=1,
    )
    record = train_model(config, data={"train": tweets, "valid": tweets, "test": tweets})
    from catmner_model import RunRecord

    typed = RunRecord.from_json(record)  # the run record is one typed, versioned schema
    assert typed.to_json() == record and list(typed.to_json()) == list(record)
    assert json.loads((tmp_path / "run" / "run.json").read_text()) == json.loads(json.dumps(record))
    assert (
        typed.schema == "catmner-run/1"
        and typed.scores("test")["conlleval"] == record["metrics"]["test"]["lenient"]
    )
    model = load_model(record["model_dir"])
    out = model.predict(
        ["Messi scores for Barcelona", ["Obama", "in", "Paris"]],
        captions=["a soccer player on a field", None],
    )
    assert len(out) == 2 and all(isinstance(x, list) for x in out)
    res = evaluate_model(record["model_dir"], "twitter2017", "valid", data_dir=DATA, max_tweets=4)
    assert res["n_tweets"] == 4 and res["captions"]["with_caption"] == 4
    with pytest.raises(CatmnerError, match="captions: 1 given for 2 inputs"):
        model.predict(["a", "b"], captions=["x"])
    with pytest.raises(CatmnerError, match="model directory not found"):
        load_model(tmp_path / "nope")


def test_api_names_resolve_and_errors_share_one_base():
    from catmner_model.data import DataError
    from catmner_model.errors import CatmnerError
    from catmner_model.images import VisionError
    from catmner_model.model_io import ModelFormatError
    from catmner_model.predict import PredictError
    from catmner_model.training.config import TrainError
    from catmner_model.visual_caption import CaptionError

    for name in catmner_model.__all__:
        assert getattr(catmner_model, name) is not None
    for err in (DataError, ModelFormatError, PredictError, TrainError, VisionError, CaptionError):
        assert issubclass(err, CatmnerError) and issubclass(err, ValueError)


def _imports(path: Path) -> set[str]:
    """Every module an import statement of ``path`` names (``from a import b`` names ``a`` and ``a.b``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _is_training(name: str) -> bool:
    return any(name == t or name.startswith(t + ".") for t in TRAINING)


@pytest.mark.parametrize("module", INFERENCE)
def test_inference_modules_do_not_import_training_modules(module):
    found = sorted(n for n in _imports(SRC / module) if _is_training(n))
    assert not found, f"{module} imports training modules {found}"


def test_the_import_rule_sees_every_import_form(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from catmner_model import training\nfrom catmner_model.training.loop import run_epoch\n"
    )
    assert {n for n in _imports(probe) if _is_training(n)} == {
        "catmner_model.training",
        "catmner_model.training.loop",
        "catmner_model.training.loop.run_epoch",
    }
