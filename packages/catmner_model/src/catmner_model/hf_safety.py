"""No code from a model directory: refuse any Hugging Face directory whose configs carry an ``auto_map``.

transformers imports Python files shipped beside a model when a config names them in ``auto_map`` (after a
"run the custom code? [y/N]" prompt, or at once with ``trust_remote_code=True``). catmner passes
``trust_remote_code=False`` to every transformers call and, before any of them, refuses a local directory whose
``config.json`` (also a catmner model's ``encoder_config``), tokenizer or processor config carries an
``auto_map`` anywhere: one line, nothing built, nothing imported. Depends on nothing but ``errors`` so that
every loader can use it without an import cycle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from catmner_model.errors import CatmnerError


class RemoteCodeError(CatmnerError):
    """A model, text-encoder or captioner directory asking to run Python code shipped with it."""


# the JSON files of a Hugging Face directory through which transformers can be asked to import Python code
# shipped beside them (an ``auto_map``); any of them carrying one is refused before anything is built
REMOTE_CODE_FILES = (
    "config.json",
    "tokenizer_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "image_processor_config.json",
    "feature_extractor_config.json",
    "video_preprocessor_config.json",
    "generation_config.json",
)


def has_auto_map(obj: Any) -> bool:
    """Whether a JSON value holds an ``auto_map`` key at any depth (walked without recursion)."""
    stack = [obj]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "auto_map" in item:
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def remote_code_refusal(where: str | os.PathLike[str]) -> RemoteCodeError:
    """The one line for a model file asking transformers to run code shipped with it."""
    return RemoteCodeError(
        f"{where}: asks to run Python code from the model directory (auto_map); catmner never runs such "
        "code: remove auto_map (and use a stock transformers class)"
    )


def refuse_remote_code(directory: str | os.PathLike[str]) -> None:
    """Refuse (one line) a local Hugging Face directory any of whose configs carries an ``auto_map``, before
    transformers reads it. Names that are not a local directory are left to ``trust_remote_code=False``."""
    d = Path(directory)
    if not d.is_dir():
        return
    for name in REMOTE_CODE_FILES:
        f = d / name
        if not f.is_file():
            continue
        try:
            data = json.loads(f.read_bytes().decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CatmnerError(f"{f}: not valid JSON ({str(e).splitlines()[0][:200]})") from None
        except RecursionError:
            raise CatmnerError(f"{f}: not valid JSON (nested too deeply)") from None
        except OSError as e:
            raise CatmnerError(f"{f}: cannot read ({e.strerror or e})") from None
        if has_auto_map(data):
            raise remote_code_refusal(f)
