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
from catmner_model.model import CatMner, create_model
from catmner_model.model_io import ModelFormatError
from catmner_model.text_encoder import load_tokenizer

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from catmner_model.cli import main; main()"]


def _env() -> dict:
    env = dict(os.environ)
    env.pop("CATMNER_DEBUG", None)
    return env


@pytest.fixture
def model_dir(tmp_path) -> Path:
    torch.manual_seed(0)
    return create_model("tiny", ["person", "city"], variant="text").save_pretrained(tmp_path / "model")


def _plant_auto_map(d: Path, tokenizer_class: str) -> Path:
    """tokenizer_config.json pointing AutoTokenizer at evil.py, which creates PWNED when imported."""
    marker = d / "PWNED"
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg["tokenizer_class"] = tokenizer_class
    cfg["auto_map"] = {"AutoTokenizer": ["evil.EvilTokenizer", None]}
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    (d / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nfrom transformers import BertTokenizerFast as EvilTokenizer\n"
    )
    return marker


def test_auto_map_to_unknown_class_never_prompts_nor_runs(model_dir):
    marker = _plant_auto_map(model_dir, "EvilTokenizer")
    # answering "y" to transformers' "Do you wish to run the custom code?" would run evil.py
    r = subprocess.run([*CLI, "predict", str(model_dir), "--text", "Obama in Paris"], input="y\n",
                       env=_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 1 and not marker.exists(), r.stderr
    assert "Do you wish" not in r.stdout + r.stderr
    assert r.stderr.strip().splitlines() == [
        f"error: {model_dir / 'tokenizer_config.json'}: asks to run Python code from the model directory "
        "(auto_map); catmner never runs such code: set tokenizer_class to a transformers tokenizer"
    ]
    with pytest.raises(ModelFormatError, match="auto_map"):
        load_tokenizer(str(model_dir))  # a --text-encoder path is refused the same way
    assert not marker.exists()


def test_auto_map_beside_a_known_class_loads_without_code(model_dir):
    marker = _plant_auto_map(model_dir, "BertTokenizer")
    model = CatMner.from_pretrained(model_dir)
    assert type(model.tokenizer).__module__.startswith("transformers.") and not marker.exists()


def test_every_transformers_load_refuses_remote_code():
    calls = []
    for path in (REPO / "packages").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"\b(Auto\w+|\w+(?:Tokenizer|Model|Config)\w*)\.from_pretrained\(", text):
            depth, i = 1, m.end()
            while depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            calls.append((path.name, text[m.start() : i]))
    assert calls, "no transformers from_pretrained call found: the pattern is stale"
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
