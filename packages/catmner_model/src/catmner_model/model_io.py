"""The saved-model format: what `CatMner.save_pretrained` writes and `CatMner.from_pretrained` reads.

A model directory holds ``config.json`` (format name and version, the resolved `CatMnerConfig` as a dict, the
encoder's Hugging Face config, the labels, the sha256 of the weights), ``model.safetensors``,
``label_words.json`` and the tokenizer files. No pickle and no code: the loader reads JSON and safetensors,
never runs code shipped in the directory, and checks the weights against their recorded checksum. Field and
key names written here are the format: bump `FORMAT_VERSION` when the layout or the meaning of weights changes.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from catmner_model.atomic import atomic_write, atomic_write_text
from catmner_model.config import CatMnerConfig, config_from_dict
from catmner_model.data import LABELS
from catmner_model.errors import CatmnerError
from catmner_model.hf_safety import refuse_remote_code, remote_code_refusal
from catmner_model.provenance import sha256_file

FORMAT_NAME = "catmner-model"  # marks a directory written by CatMner.save_pretrained
FORMAT_VERSION = 1  # bump when the saved layout or the meaning of weights changes


class ModelFormatError(CatmnerError):
    """A model directory that is not ours, is incomplete, or has another format version."""


@dataclass
class SavedModel:
    """What a model directory holds besides its weights (read by `read_model_dir`)."""

    directory: Path
    meta: dict[str, Any]  # config.json
    config: CatMnerConfig
    encoder_config: Any  # the text encoder's transformers config
    words: dict[str, Any]  # label_words.json: {"words": [...], "label_words": kb_expand's LabelWords JSON}
    tokenizer: Any


def save_model_dir(model: torch.nn.Module, directory: str | os.PathLike[str]) -> Path:
    """Write config.json, model.safetensors, label_words.json and the tokenizer files into ``directory``.

    Each file is written atomically; config.json comes last, so a directory with config.json is complete.
    """
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".tok-") as tmp:
        model.tokenizer.save_pretrained(tmp)
        for f in Path(tmp).iterdir():
            if f.is_file():
                os.replace(f, out / f.name)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    atomic_write(
        out / "model.safetensors", lambda p: save_file(state, str(p), metadata={"format": FORMAT_NAME})
    )
    words = {
        "format_version": FORMAT_VERSION,
        "words": model.label_words,
        "label_words": model.label_words_meta,
    }
    atomic_write_text(out / "label_words.json", json.dumps(words, ensure_ascii=False, indent=1))
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "catmner_version": _version(),
        "config": asdict(model.cfg),
        "encoder_config": model.encoder.config.to_dict(),
        "labels": list(LABELS),
        "weights_sha256": sha256_file(out / "model.safetensors"),  # checked by load_weights
    }
    atomic_write_text(out / "config.json", json.dumps(meta, indent=1, default=str))
    return out


def read_model_dir(directory: str | os.PathLike[str]) -> SavedModel:
    """Read and check everything of a model directory but its weights (`load_weights` reads those)."""
    from transformers import AutoConfig, AutoTokenizer

    d = Path(directory)
    meta = _read_json(d / "config.json", "config.json")
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ModelFormatError(
            f"{d}: not a catmner model directory (config.json has no format {FORMAT_NAME!r})"
        )
    refuse_remote_code(d)  # config.json (its encoder_config), tokenizer_config.json, ...: before any build
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFormatError(
            f"{d}: model format version {meta.get('format_version')!r}, this catmner reads version {FORMAT_VERSION}"
        )
    try:
        # a model saved before a field existed was trained with the behaviour of then (today's defaults differ:
        # saliency_scale "learned", caption_positions "pair"); every later save writes the fields
        then = {"saliency_scale": "paper", "caption_positions": "restart", "softmax": "joint"}
        cfg = config_from_dict({**then, **meta["config"]}, f"{d / 'config.json'}")
        enc_cfg = dict(meta["encoder_config"])
        enc_cfg.pop("transformers_version", None)
        enc_config = AutoConfig.for_model(enc_cfg.pop("model_type"), **enc_cfg)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, *_config_errors()) as e:
        detail = _first(e).removeprefix(f"{d / 'config.json'}: ")  # a ConfigError names the file already
        raise ModelFormatError(f"{d / 'config.json'}: invalid model config ({detail})") from None
    words = _read_json(d / "label_words.json", "label_words.json")
    if not isinstance(words, dict) or not isinstance(words.get("words"), list):
        raise ModelFormatError(f"{d / 'label_words.json'}: expected {{'words': [...]}}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(d), trust_remote_code=False)  # no auto_map code
    except ValueError as e:
        if "custom code" in str(e):
            raise remote_code_refusal(d / "tokenizer_config.json") from None
        raise ModelFormatError(f"{d}: cannot load the tokenizer files ({_first(e)})") from None
    except (OSError, TypeError, LookupError, AttributeError, RecursionError) as e:
        # transformers reads config.json too (a malformed encoder_config, e.g. "dtype": [], is an IndexError)
        raise ModelFormatError(f"{d}: cannot load the tokenizer files ({_first(e)})") from None
    return SavedModel(d, meta, cfg, enc_config, words, tokenizer)


def load_weights(model: torch.nn.Module, saved: SavedModel, map_location: str | torch.device) -> None:
    """Load ``model.safetensors`` into ``model`` after checking it against the recorded sha256."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    weights = saved.directory / "model.safetensors"
    try:
        state = load_file(str(weights), device=str(map_location))
    except (OSError, SafetensorError) as e:
        raise ModelFormatError(f"{weights}: cannot read weights ({e})") from None
    want = saved.meta.get("weights_sha256")  # absent in directories saved before it was recorded
    if want is not None:
        got = sha256_file(weights)
        if got != want:
            raise ModelFormatError(
                f"{weights}: sha256 {got[:12]}... differs from the {want[:12]}... recorded in "
                "config.json: the weights file is damaged or was changed; restore or retrain the model"
            )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelFormatError(
            f"{weights}: weights do not match the config "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]})"
        )


def _version() -> str:
    from catmner_model import __version__

    return __version__


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ModelFormatError(f"{path.parent}: not a catmner model directory (no {what})")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path}: invalid JSON ({_first(e)})") from None
    except RecursionError:
        raise ModelFormatError(f"{path}: invalid JSON (nested too deeply)") from None
    except OSError as e:
        raise ModelFormatError(f"{path}: cannot read ({e.strerror or e})") from None


def _config_errors() -> tuple[type[Exception], ...]:
    """What transformers' strict config classes raise for a field of the wrong type (huggingface_hub)."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:  # pragma: no cover - older huggingface_hub: TypeError / ValueError only
        return ()
    return (StrictDataclassError,)


def _first(exc: BaseException) -> str:
    """The first line of an exception's message (at most 200 characters), else its type name."""
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
