"""A model directory is data, never code: no remote-code prompt or import from an `auto_map`, every
transformers load passes trust_remote_code=False, and a changed byte in model.safetensors is refused."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from catmner_model.errors import CatmnerError
from catmner_model.model import CatMner, create_model
from catmner_model.model_io import ModelFormatError
from catmner_model.text_encoder import load_text_encoder, load_tokenizer

REPO = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("CATMNER_DATA") or REPO.parent / "shared" / "data")
CLI = [sys.executable, "-c", "from catmner_model.cli import main; main()"]


def _env() -> dict:
    env = dict(os.environ)
    env.pop("CATMNER_DEBUG", None)
    return env


@pytest.fixture
def model_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    return create_model("tiny", ["person", "city"], variant="text").save_pretrained(tmp_path / "model")


def _plant_evil_py(d: Path, imports: str) -> Path:
    """evil.py in d, which creates d/PWNED when imported, then imports `imports` from transformers (the
    classes an auto_map names); returns the marker PWNED."""
    marker = d / "PWNED"
    (d / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\nfrom transformers import {imports}\n")
    return marker


def _plant_auto_map(d: Path, tokenizer_class: str) -> Path:
    """tokenizer_config.json pointing AutoTokenizer at evil.py, which creates PWNED when imported."""
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = tokenizer_class
    cfg["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    return _plant_evil_py(d, "BertTokenizerFast as EvilTokenizer")


def _refusal(path: Path) -> str:
    return (
        f"catmner: error: {path}: asks to run Python code from the model directory (auto_map); catmner never runs such "
        "code: remove auto_map (and use a stock transformers class)"
    )


def _run_closed_stdin(*args: str) -> subprocess.CompletedProcess:
    """The CLI with stdin closed (no terminal, nothing to answer a prompt with)."""
    return subprocess.run([*CLI, *args], stdin=subprocess.DEVNULL, env=_env(), capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def test_auto_map_to_unknown_class_never_prompts_nor_runs(model_dir):
    marker = _plant_auto_map(model_dir, "EvilTokenizer")
    # answering "y" to transformers' "Do you wish to run the custom code?" would run evil.py
    r = subprocess.run([*CLI, "predict", str(model_dir), "--text", "Obama in Paris"], input="y\n",
                       env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 1 and not marker.exists(), r.stderr
    assert "Do you wish" not in r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [_refusal(model_dir / "tokenizer_config.json")]
    with pytest.raises(CatmnerError, match="auto_map"):
        load_tokenizer(str(model_dir))  # a --text-encoder path is refused the same way
    assert not marker.exists()


def test_auto_map_beside_a_known_class_is_refused_too(model_dir):
    marker = _plant_auto_map(model_dir, "BertTokenizer")
    with pytest.raises(CatmnerError, match="auto_map"):
        CatMner.from_pretrained(model_dir)
    assert not marker.exists()


def _plant_encoder_auto_map(d: Path) -> Path:
    """The issue's attack: config.json's encoder_config gets an auto_map to evil.py beside it (which would
    create PWNED when imported), its _name_or_path pointing at the directory."""
    meta = json.loads((d / "config.json").read_text())
    meta["encoder_config"]["auto_map"] = {"AutoModel": "evil.EvilModel", "AutoConfig": "evil.EvilConfig"}
    meta["encoder_config"]["_name_or_path"] = str(d)
    (d / "config.json").write_text(json.dumps(meta))
    return _plant_evil_py(d, "BertModel as EvilModel, BertConfig as EvilConfig")


def test_encoder_config_auto_map_refused_before_anything_is_built(model_dir, monkeypatch):
    marker = _plant_encoder_auto_map(model_dir)
    import transformers

    def built(*args, **kwargs):  # nothing may be built from this directory
        raise AssertionError("a model was built from a directory carrying auto_map")

    monkeypatch.setattr(transformers.AutoModel, "from_config", built)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", built)
    with pytest.raises(CatmnerError, match=r"config\.json: asks to run Python code"):
        CatMner.from_pretrained(model_dir)
    assert not marker.exists()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_encoder_config_auto_map_cli_is_one_line_no_prompt(model_dir, tmp_path, command):
    marker = _plant_encoder_auto_map(model_dir)
    if command == "predict":
        args = ["predict", str(model_dir), "--text", "Obama in Paris"]
    else:
        args = [
            "evaluate",
            str(model_dir),
            "--dataset",
            "twitter2015",
            "--data-dir",
            str(DATA),
            "--max-tweets",
            "2",
        ]
    r = _run_closed_stdin(*args)
    assert "Do you wish" not in r.stdout + r.stderr and not marker.exists()
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [_refusal(model_dir / "config.json")], (
        r.stderr
    )


def _encoder_dir(enc: Path, *, weights: bool = True) -> Path:
    """A plain HF text-encoder directory (a `--text-encoder DIR`): the tiny tokenizer and a 1-layer BERT config,
    with its weights (model.safetensors) unless `weights` is False."""
    from transformers import BertConfig, BertModel

    load_tokenizer("tiny").save_pretrained(enc)
    config = BertConfig(
        vocab_size=100, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8
    )
    (BertModel(config) if weights else config).save_pretrained(enc)
    return enc


def _evil_encoder_dir(enc: Path, *, nested: bool = False) -> tuple[Path, Path]:
    """(enc, marker): an encoder directory whose config.json has an auto_map (at the top, or nested in an
    encoder_config) to evil.py beside it, which would create `marker` (PWNED) when imported."""
    _encoder_dir(enc)
    cfg = json.loads((enc / "config.json").read_text())
    auto_map = {"AutoModel": "evil.M"}
    if nested:
        cfg["encoder_config"] = {"auto_map": auto_map}
    else:
        cfg["auto_map"] = auto_map
    (enc / "config.json").write_text(json.dumps(cfg))
    return enc, _plant_evil_py(enc, "BertModel as M")


def test_text_encoder_dir_with_auto_map_refused(tmp_path):
    """`train --text-encoder DIR` / `catmner-bench run --text-encoder DIR`: a plain HF directory whose
    config.json carries an auto_map is refused before transformers reads it."""
    enc, marker = _evil_encoder_dir(tmp_path / "encoder")
    with pytest.raises(CatmnerError, match=r"encoder/config\.json: asks to run Python code"):
        load_text_encoder(str(enc))
    with pytest.raises(CatmnerError, match="auto_map"):
        load_tokenizer(str(enc))
    out = tmp_path / "run"
    r = _run_closed_stdin("train", "--variant", "text", "--text-encoder", str(enc), "--image-encoder", "none",
                          "--data-dir", str(DATA), "--output", str(out), "-q")  # fmt: skip
    assert not marker.exists() and "Do you wish" not in r.stdout + r.stderr
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [_refusal(enc / "config.json")], r.stderr
    from catmner_model.visual_caption import HFCaptioner

    with pytest.raises(CatmnerError, match="auto_map"):
        HFCaptioner(str(enc))  # --captioner DIR
    assert not marker.exists()


def test_pickled_text_encoder_weights_are_one_line(tmp_path):
    """A --text-encoder directory whose weights are a pickle (pytorch_model.bin): refused, as one line."""
    enc = _encoder_dir(tmp_path / "encoder", weights=False)
    import pickle

    (enc / "pytorch_model.bin").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CatmnerError, match=r"encoder: cannot load the text encoder"):
        load_text_encoder(str(enc))


# receivers of .from_pretrained / .from_config in src that are not transformers (they build from our own files)
NOT_TRANSFORMERS = {"CatMner", "nn.Embedding"}


def test_every_transformers_load_refuses_remote_code():
    """Every from_pretrained / from_config call in src (whatever it is called on) passes
    trust_remote_code=False, but for the few receivers known not to be transformers classes."""
    calls = []
    for path in (REPO / "packages").glob("*/src/**/*.py"):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"([\w.]+)\.from_(?:pretrained|config)\(", text):
            if m.group(1) in NOT_TRANSFORMERS:
                continue
            depth, i = 1, m.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            calls.append((path.name, text[m.start() : i]))
    assert calls, "no transformers from_pretrained call found: the pattern is stale"
    assert any(".from_config(" in c[1] for c in calls), "no from_config call found: the pattern is stale"
    assert [c for c in calls if "trust_remote_code=False" not in c[1]] == []


def test_weights_sha256_recorded_and_a_flipped_byte_refused(model_dir):
    weights = model_dir / "model.safetensors"
    meta = json.loads((model_dir / "config.json").read_text())
    assert meta["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    CatMner.from_pretrained(model_dir)  # intact: loads
    data = bytearray(weights.read_bytes())
    data[len(data) - 100] ^= 0x01  # inside the tensor data: safetensors itself would load this silently
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelFormatError, match=r"model\.safetensors: sha256 \w+\.\.\. differs from the"):
        CatMner.from_pretrained(model_dir)
    r = subprocess.run([*CLI, "predict", str(model_dir), "--text", "Obama in Paris"], env=_env(),
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "damaged or was changed" in lines[0], r.stderr


def test_bench_text_encoder_dir_with_auto_map_refused(tmp_path):
    """`catmner-bench run --text-encoder DIR` loads the encoder through the same guarded loader."""
    enc, marker = _evil_encoder_dir(tmp_path / "encoder", nested=True)  # nested: refused wherever it sits
    bench = [sys.executable, "-c", "from catmner_bench.cli import main; main()"]
    r = subprocess.run([*bench, "run", "table1", "--profile", "smoke", "--systems", "lm-span", "--datasets",
                        "twitter2017", "--text-encoder", str(enc), "--data-dir", str(DATA), "--output",
                        str(tmp_path / "out"), "-q"], stdin=subprocess.DEVNULL, env=_env(), capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert not marker.exists() and "Do you wish" not in r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and lines == [
        _refusal(enc / "config.json").replace("catmner: error:", "catmner-bench: error:")
    ], r.stderr
