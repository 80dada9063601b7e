"""The model's configuration: `CatMnerConfig`, the variant registry `VARIANT_SPECS` and the named configs.

A variant is one `Variant(...)` entry in `VARIANT_SPECS` (which attention blocks are refined, whether the
model has visual tokens); `CatMnerConfig`, the trainer, the CLI and the benchmarks all read it. Named configs
are JSON files in ``configs/`` (``minilm``, ``tiny``, ...) loaded by `load_config`. The resolved config is
saved in every model directory (`model_io.py`), so its field names are part of the saved format.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from catmner_model.errors import CatmnerError
from catmner_model.visual_sources import TEXT_CONTEXTS, kinds, parse_visual, visual_name


class ConfigError(CatmnerError):
    """A model config that cannot be used (unknown field, wrong type or value); one line."""


@dataclass(frozen=True)
class Variant:
    """A model variant: which attention blocks are refined and whether the model has visual tokens. Register
    new ones in VARIANT_SPECS (the CLI, the trainer and the benchmarks read it)."""

    name: str
    refine_i2t: bool  # text queries over visual keys refined (Eq. 4)
    refine_t2i: bool  # visual queries over text keys refined
    visual: bool  # has visual tokens at all
    help: str

    @property
    def uses_label_words(self) -> bool:
        return self.refine_i2t or self.refine_t2i


VARIANT_SPECS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("cat", True, True, True, "CAT-MNER: refined I2T and T2I"),
        Variant("i2t", True, False, True, "w/o T2I refinement"),
        Variant("t2i", False, True, True, "w/o I2T refinement"),
        Variant("mm", False, False, True, "no refinement: self-attention over [text; visual]"),
        Variant("text", False, False, False, "text only (no visual tokens)"),
    )
}
VARIANTS: tuple[str, ...] = tuple(VARIANT_SPECS)
R_TRANSFORMERS: tuple[str, ...] = ("auto", "loop", "intercept")
CAPTION_POSITIONS: tuple[str, ...] = ("pair", "restart")
SOFTMAXES: tuple[str, ...] = ("joint", "block")


@dataclass
class CatMnerConfig:
    """Everything that defines a CAT-MNER model; saved (resolved) in every model directory."""

    text_encoder: str = "minilm"  # "minilm" (offline all-MiniLM-L6-v2), "tiny" (random init), HF name or path
    variant: str = "cat"  # cat | i2t | t2i | mm (refinement off) | text (no image)
    image_feature_dim: int = 1280  # F, width of the frozen grid features (EfficientNet-Lite0: 1280)
    num_image_tokens: int = 16  # I, grid cells per image (4x4)
    max_span_len: int = 8  # longest span in words (covers all but one gold entity of Twitter-2015/2017)
    max_length: int | None = None  # max tokens incl. [CLS]/[SEP]; None = the tokenizer's model_max_length
    max_word_pieces: int | None = 8  # max word pieces kept per word; None = no limit
    max_url_pieces: int | None = 2  # max word pieces kept per URL word (http://t.co/...); None = no limit
    # "paper" (s is a probability), "keys" (s * #keys), "learned" (s * #keys * exp(w_l), w_l learned per
    # layer from 0) or a number. "learned" won on validation (Twitter-2017, captions: 83.01 against 82.27 for
    # "keys" and 82.08 for "paper", seed 1; docs/model.md); models saved without the field are "paper"
    saliency_scale: str | float = "learned"
    # saliency_scale="learned": the multiplier exp(w_l) starts here (w_l = log of it); 1.0 starts at "keys".
    # A start on the scale of |QK^T| (`catmner inspect` measures it) lets g*s compete with QK^T from step 1
    saliency_scale_init: float = 1.0
    # "joint": one softmax per query over [text; visual] keys; "block": the paper's per-block softmax (Eq. 3-4):
    # a text query's softmax over the text keys (T2T) and its own one over the visual keys (I2T), a visual
    # query's over the visual keys (I2I) and over the text keys (T2I); the two blocks' contexts add up.
    # Models saved without the field are "joint"
    softmax: str = "joint"
    gate_init_std: float = 0.0  # std of the gate FFN's output layer at init; 0 => g = 0 => starts vanilla
    span_hidden: int | None = None  # hidden width of the span FFN; None = encoder width D
    dropout: float | None = None  # dropout of new layers; None = the encoder's hidden_dropout_prob
    # an image encoder spec (efficientnet-lite0 | open_clip:<model>[:<tag>] | tiny) run INSIDE the model on the
    # grid-cell pixels and fine-tuned with it (GPU users); None: the model reads precomputed frozen features
    trainable_image_encoder: str | None = None
    # where the visual tokens come from: registered visual sources (visual_sources.VISUAL_SOURCES), in
    # registry order: "grid" (image encoder over the 4x4 grid), "caption" (the image's caption, embedded with
    # the LM's embedding layer); () for text only (the text variant). The strings of older configs and of the
    # command line ("grid+caption", "none") load as these tuples (visual_sources.parse_visual)
    visual: tuple[str, ...] = ("grid",)
    image_encoder: str | None = None  # the frozen encoder the grid features come from (recorded for predict)
    # where caption (and PGIM knowledge) pieces sit: "pair" (segment B of a sentence pair: positions continue
    # after the tweet's pieces, the encoder's pair separator, token type B where the encoder has one, the
    # encoder's own embedding layer) or "restart" (the caption's own learned positions from the LM's row 0:
    # the placement of models saved before the field existed, which load as "restart")
    caption_positions: str = "pair"
    max_caption_pieces: int = 32  # L_I of a caption: its word pieces (incl. a closing [SEP]) are capped here
    text_context: str | None = None  # a second text segment after the tweet: "pgim" (PGIM's knowledge)
    max_context_pieces: int = 160  # word pieces of the second segment kept (incl. its closing [SEP])
    # the cased word's form added to its first word piece (wordform.py): none | shape | char | shape+char
    case_features: str = "none"
    # how the R-Transformer runs the encoder's layers (layouts.py): "loop" (our layer loop: BERT/RoBERTa/MPNet
    # layouts, fastest), "intercept" (the encoder's own layers, our attention function; BERT/RoBERTa,
    # ModernBERT), "auto" (loop where it applies, else intercept). Same math either way.
    r_transformer: str = "auto"
    # the model family (families.py) that reads this config: "catmner" (CAT-MNER and its variants), "umt", ...;
    # directories saved before the field existed are CAT-MNER models
    family: str = "catmner"

    def __post_init__(self) -> None:
        _check_types(self)
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown variant {self.variant!r}; expected one of {', '.join(VARIANTS)}")
        # the one check of the visual sources; the text variant reads none (older text configs said "grid")
        try:
            self.visual = () if not VARIANT_SPECS[self.variant].visual else parse_visual(self.visual)
        except ValueError as e:
            raise ConfigError(str(e)[:300]) from None
        if not self.visual and VARIANT_SPECS[self.variant].visual:
            raise ConfigError(
                f"visual source 'none' has no visual tokens: variant {self.variant!r} needs some"
            )
        if self.text_context is not None and self.text_context not in TEXT_CONTEXTS:
            raise ConfigError(
                f"unknown text_context {self.text_context!r}: choose {', '.join(TEXT_CONTEXTS)}"
            )
        if not (
            self.saliency_scale in ("paper", "keys", "learned")
            or (isinstance(self.saliency_scale, int | float) and not isinstance(self.saliency_scale, bool))
        ):
            raise ConfigError(
                f"saliency_scale must be 'paper', 'keys', 'learned' or a number, got {self.saliency_scale!r}"
            )
        from catmner_model.wordform import CASE_FEATURES

        if self.case_features not in CASE_FEATURES:
            raise ConfigError(
                f"case_features must be one of {', '.join(CASE_FEATURES)}, got {self.case_features!r}"
            )
        if self.r_transformer not in R_TRANSFORMERS:
            raise ConfigError(
                f"r_transformer must be one of {', '.join(R_TRANSFORMERS)}, got {self.r_transformer!r}"
            )
        if self.caption_positions not in CAPTION_POSITIONS:
            raise ConfigError(
                f"caption_positions must be one of {', '.join(CAPTION_POSITIONS)}, got {self.caption_positions!r}"
            )
        if self.softmax not in SOFTMAXES:
            raise ConfigError(f"softmax must be one of {', '.join(SOFTMAXES)}, got {self.softmax!r}")
        if not (
            isinstance(self.saliency_scale_init, int | float)
            and not isinstance(self.saliency_scale_init, bool)
            and math.isfinite(self.saliency_scale_init)
            and self.saliency_scale_init > 0
        ):
            raise ConfigError(
                f"saliency_scale_init must be a positive number, got {self.saliency_scale_init!r}"
            )
        if self.max_caption_pieces < 2 or self.max_context_pieces < 2:
            raise ConfigError("max_caption_pieces and max_context_pieces must be at least 2")
        if self.max_span_len < 1:
            raise ConfigError(f"max_span_len must be >= 1, got {self.max_span_len}")
        for kind in kinds(self.visual):
            try:
                kind.check(self)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if self.trainable_image_encoder and math.isqrt(self.num_image_tokens) ** 2 != self.num_image_tokens:
            raise ConfigError("a trainable image encoder needs a square grid: num_image_tokens = grid * grid")

    @property
    def refine_i2t(self) -> bool:
        return VARIANT_SPECS[self.variant].refine_i2t

    @property
    def refine_t2i(self) -> bool:
        return VARIANT_SPECS[self.variant].refine_t2i

    @property
    def visual_source(self) -> str:
        """The visual sources as one string ("grid", "grid+caption", "none"), as the command line writes it."""
        return visual_name(self.visual)

    @property
    def uses_image(self) -> bool:
        """Whether the model has visual tokens at all (any source)."""
        return bool(self.visual)

    @property
    def uses_grid(self) -> bool:
        return "grid" in self.visual

    @property
    def uses_caption(self) -> bool:
        return "caption" in self.visual

    @property
    def uses_label_words(self) -> bool:
        return self.refine_i2t or self.refine_t2i


def list_configs() -> list[str]:
    """Names of the bundled model configs (``configs/<name>.json``)."""
    root = resources.files("catmner_model") / "configs"
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def load_config(name_or_path: str | os.PathLike[str], **overrides: Any) -> CatMnerConfig:
    """A bundled config by name (e.g. "minilm", "tiny") or a JSON file path, with field overrides."""
    text = str(name_or_path)
    if text in list_configs():
        raw = (resources.files("catmner_model") / "configs" / f"{text}.json").read_bytes()
        where = f"bundled config {text!r}"
    elif Path(text).is_file():
        try:
            raw, where = Path(text).read_bytes(), text
        except OSError as e:
            raise ConfigError(f"{text}: cannot read ({e.strerror or e})") from None
    else:
        raise ConfigError(
            f"no model config named {text!r} (bundled: {', '.join(list_configs())}) and no such file"
        )
    data = parse_config_json(raw, where)
    return config_from_dict({**data, **overrides}, where)


def parse_config_json(raw: bytes | str, where: str) -> dict[str, Any]:
    """A JSON object of config fields (a config file, ``--model-config``); any other input is one line."""
    try:
        data = json.loads(raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw)
    except UnicodeDecodeError as e:
        raise ConfigError(f"{where}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: invalid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise ConfigError(f"{where}: invalid JSON (nested too deeply)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object of config fields")
    return data


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),)}


def _check_types(cfg: CatMnerConfig) -> None:
    """Each field holds a value of its annotated type (JSON gives any type: ``"max_span_len": "abc"``)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        allowed = tuple(t for name in str(f.type).split("|") for t in _TYPES.get(name.strip(), (object,)))
        bad_bool = isinstance(value, bool) and bool not in allowed  # True is an int to Python, not here
        bad_float = isinstance(value, float) and not math.isfinite(value)
        if not isinstance(value, allowed) or bad_bool or bad_float:
            want = " or ".join(n.strip() for n in str(f.type).split("|")).replace("None", "null")
            raise ConfigError(f"config field {f.name!r} must be {want}, got {value!r}"[:300])


def config_from_dict(data: dict[str, Any], where: str = "config") -> CatMnerConfig:
    """CatMnerConfig from a dict; unknown keys are an error naming ``where``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object of config fields")
    known = {f.name for f in fields(CatMnerConfig)}
    unknown = sorted(set(data) - known, key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown config field(s) {', '.join(map(repr, unknown))}"[:300])
    try:
        return CatMnerConfig(**data)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
