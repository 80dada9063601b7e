"""The model registry: every architecture that `catmner train / evaluate / predict` and the benchmarks can run
is a registered `ModelFamily`, named in its config (``CatMnerConfig.family``) and so in every model directory.

A family is a model class with one small interface, which the trainer, the loader, `Predictor` and
`evaluate_model` use and nothing else:

- build: ``cls(cfg, label_words, tokenizer=None, encoder=None, image_encoder_weights=True)`` (``encoder``: an
  already built Hugging Face text encoder, else loaded from ``cfg.text_encoder``; the loader passes one built
  from the saved encoder config and ``image_encoder_weights=False``);
- attributes ``cfg``, ``tokenizer``, ``encoder`` (its ``.config`` is saved), ``label_words`` (list of str)
  and ``label_words_meta`` (kb_expand's LabelWords JSON or None);
- ``collator()`` (batches of `batching.Example`), ``forward(batch, labels=True|None)`` -> an output with
  ``.loss`` (a scalar when labels are asked for), ``decode(output, batch)`` -> one list of `data.Entity` per
  tweet (entity spans, the format every family shares), ``parameter_groups()`` -> {"encoder": [...], "new":
  [...]} (the optimizer's learning-rate groups), ``save_pretrained(directory)`` (usually
  `model_io.save_model_dir`, which writes the config with its family).

CAT-MNER and its variants are the family "catmner"; UMT (Yu et al., ACL 2020) is "umt". Registering another
one is `register_family(ModelFamily("name", "help", ModelClass))`; see docs/architecture.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from catmner_model.config import CatMnerConfig, config_from_dict, load_config
from catmner_model.errors import CatmnerError
from catmner_model.model import CatMner
from catmner_model.model_io import ModelFormatError, load_weights, read_model_dir
from catmner_model.umt import Umt, check_umt_training


class FamilyError(CatmnerError):
    """An unknown model family, or a training run a family cannot do (one line for the user)."""


@dataclass(frozen=True)
class ModelFamily:
    """A registered model architecture (see the module docstring for the interface its class has)."""

    name: str  # the config's ``family`` and `catmner train --model NAME`
    help: str  # one line for `catmner train --help`
    build: Callable[..., torch.nn.Module]  # the model class (or a function with its constructor's signature)
    # a training run this family cannot do: returns the reason (one line), None when it can. Gets the
    # TrainConfig; runs before any data is read
    check_training: Callable[[Any], str | None] | None = None


FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add (or replace) a family in the registry; returns it."""
    FAMILIES[family.name] = family
    return family


def get_family(name: str) -> ModelFamily:
    """The registered family ``name`` (a FamilyError naming the known ones otherwise)."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise FamilyError(f"unknown model family {name!r}: choose one of {', '.join(FAMILIES)}") from None


def create_model(
    cfg: CatMnerConfig | str | os.PathLike[str] = "minilm",
    label_words: Sequence[str] | Any = (),
    tokenizer: Any | None = None,
    **overrides: Any,
) -> torch.nn.Module:
    """Build a model of the config's family from a config object, a bundled config name ("minilm", "tiny")
    or a JSON path; ``overrides`` replace config fields (e.g. ``family="umt"``, ``variant="text"``)."""
    if not isinstance(cfg, CatMnerConfig):
        cfg = load_config(cfg, **overrides)
    elif overrides:
        cfg = config_from_dict({**asdict(cfg), **overrides})
    return get_family(cfg.family).build(cfg, label_words, tokenizer=tokenizer)


def load_pretrained(
    directory: str | os.PathLike[str], map_location: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Load a model directory of any registered family (`model_io`: JSON, safetensors and tokenizer files
    only, the weights checked against their recorded sha256; nothing in the directory runs)."""
    from transformers import AutoModel

    from catmner_model.text_encoder import drop_pooler

    saved = read_model_dir(directory)
    if saved.config.family not in FAMILIES:
        raise ModelFormatError(
            f"{saved.directory / 'config.json'}: model family {saved.config.family!r} is not registered "
            f"here (known: {', '.join(FAMILIES)})"
        )
    encoder = AutoModel.from_config(saved.encoder_config)
    drop_pooler(encoder)
    model = FAMILIES[saved.config.family].build(
        saved.config,
        saved.words["words"],
        tokenizer=saved.tokenizer,
        encoder=encoder,
        image_encoder_weights=False,
    )
    model.label_words_meta = saved.words.get("label_words")
    load_weights(model, saved, map_location)
    return model.to(map_location).eval()


register_family(ModelFamily("catmner", "CAT-MNER and its variants (--variant)", CatMner))
register_family(
    ModelFamily(
        "umt",
        "UMT (Yu et al., ACL 2020): cross-modal transformer + entity-span detection, CRF tagging",
        Umt,
        check_umt_training,
    )
)
