"""Where a Hugging Face encoder keeps what the R-Transformer and the C-Transformer need, and how its own layers
are made to run CAT-MNER's refined attention.

Two ways to run the R-Transformer over [text tokens; visual tokens], with the same math:

- **our layer loop** (`CatMner._r_layer`): reuses the weights of post-norm layers whose attention we can
  re-implement (BERT, RoBERTa and every encoder with their layout; MPNet, whose relative position bias we add
  to the text-text block). It fuses the C-Transformer rows into the token FFN GEMM and computes only text
  queries in the last layer, so it is the fast path where it applies.
- **interception** (`intercepted`): the encoder's own forward runs over the concatenation, with
  ``config._attn_implementation = "catmner"``; every layer calls `catmner_attention` (registered in
  transformers' attention-function registry) with its own Q, K, V and the calling module, whose
  ``_catmner_layer`` attribute names the layer. What the refinement needs besides Q, K, V rides in a
  per-forward `InterceptPass` (a context variable): the key mask over the concatenation, the text length,
  the label-word keys of every layer, and the attention input of each layer (captured by a forward pre-hook on
  the attention module; the gates read it). Works for every encoder whose attention goes through
  ``ALL_ATTENTION_FUNCTIONS`` and whose layer layout an adapter below describes (BERT/RoBERTa, ModernBERT).

An adapter (`Layout`) says, per architecture, where the layers are, which module calls the attention, what the
attention projections read (pre-norm layers read a norm of the residual stream), the Q/K projections of a
layer (without position rotations: label words have no position) and one C-Transformer step (the layer
without its self-attention sub-layer). Architectures that fit no adapter are refused with the list.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

ATTN_IMPLEMENTATION = "catmner"  # the name of our attention function in transformers' registry


# ------------------------------------------------------------------------------------------------ adapters
class Layout:
    """How CAT-MNER reads one family of encoder layers. Stateless: every method takes the module it reads."""

    name = "?"
    loop = False  # our own layer loop can run it (post-norm BERT-style layers)
    intercept = False  # its attention goes through transformers' attention interface
    rotary = False  # Q/K get position rotations inside the attention: saliency recomputes the plain Q

    @staticmethod
    def matches(encoder: nn.Module) -> bool:
        raise NotImplementedError

    def layers(self, encoder: nn.Module) -> nn.ModuleList:
        raise NotImplementedError

    def attention_module(self, layer: nn.Module) -> nn.Module:
        """The module that calls the attention function; its first input is what the projections read."""
        raise NotImplementedError

    def attn_input(self, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The states the attention projections of ``layer`` read, given the layer input ``x``."""
        return x

    def query(self, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def key(self, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def c_step(self, layer: nn.Module, c: torch.Tensor) -> torch.Tensor:
        """C-Transformer layer: ``layer`` without self-attention, on label-word states (C, D)."""
        raise NotImplementedError

    def position_ids(self, key_mask: torch.Tensor, n_text: int) -> torch.Tensor | None:
        """Position ids over [text; visual] for encoders that take them in the layers (rotary), else None."""
        return None

    # ---- our layer loop only (post-norm layers: h = LN_att(x + Attn(x)), out = LN_ffn(h + FFN(h)))
    def qkv(self, layer: nn.Module) -> tuple[nn.Module, nn.Module, nn.Module]:
        raise NotImplementedError

    def attn_output(self, layer: nn.Module, context: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attn_norm(self, layer: nn.Module) -> nn.Module:
        """The norm after the attention sub-layer (the C-Transformer keeps it)."""
        raise NotImplementedError

    def ffn(self, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
        return layer.output(layer.intermediate(h), h)  # dense, act, dense, dropout, LayerNorm(f + h)

    def text_bias(self, encoder: nn.Module, text: torch.Tensor) -> torch.Tensor | None:
        """Additive score bias (1, H, T, T) of the text-text block (relative positions), or None."""
        return None


def _has(obj: Any, *names: str) -> bool:
    return obj is not None and all(hasattr(obj, n) for n in names)


class BertLayout(Layout):
    """BERT, RoBERTa, XLM-R, ELECTRA, CamemBERT, MiniLM, ...: ``encoder.layer[i].attention.self.query``."""

    name = "bert"
    loop = True
    intercept = True

    @staticmethod
    def matches(encoder: nn.Module) -> bool:
        layers = getattr(getattr(encoder, "encoder", None), "layer", None)
        if not layers or not hasattr(encoder, "embeddings"):
            return False
        for layer in layers:
            att = getattr(layer, "attention", None)
            if not _has(getattr(att, "self", None), "query", "key", "value"):
                return False
            if not _has(getattr(att, "output", None), "dense", "LayerNorm"):
                return False
            if not _has(layer, "intermediate", "output"):
                return False
        return True

    def layers(self, encoder):
        return encoder.encoder.layer

    def attention_module(self, layer):
        return layer.attention.self

    def query(self, layer, h):
        return layer.attention.self.query(h)

    def key(self, layer, h):
        return layer.attention.self.key(h)

    def c_step(self, layer, c):
        return self.ffn(layer, layer.attention.output.LayerNorm(c))

    def qkv(self, layer):
        att = layer.attention.self
        return att.query, att.key, att.value

    def attn_output(self, layer, context, x):
        return layer.attention.output(context, x)  # dense, dropout, LayerNorm(h + x)

    def attn_norm(self, layer):
        return layer.attention.output.LayerNorm


class MPNetLayout(Layout):
    """MPNet (all-mpnet-base-v2): ``encoder.layer[i].attention.attn.q/k/v/o`` plus a relative position bias
    shared by all layers. Its attention is written out in the model (not through the attention interface), so
    only our layer loop runs it; the bias applies to the text-text block (visual tokens have no text position)."""

    name = "mpnet"
    loop = True

    @staticmethod
    def matches(encoder: nn.Module) -> bool:
        enc = getattr(encoder, "encoder", None)
        layers = getattr(enc, "layer", None)
        if not layers or not hasattr(encoder, "embeddings") or not _has(enc, "compute_position_bias"):
            return False
        for layer in layers:
            att = getattr(layer, "attention", None)
            if not _has(getattr(att, "attn", None), "q", "k", "v", "o") or not _has(
                att, "LayerNorm", "dropout"
            ):
                return False
            if not _has(layer, "intermediate", "output"):
                return False
        return True

    def layers(self, encoder):
        return encoder.encoder.layer

    def attention_module(self, layer):
        return layer.attention.attn

    def query(self, layer, h):
        return layer.attention.attn.q(h)

    def key(self, layer, h):
        return layer.attention.attn.k(h)

    def c_step(self, layer, c):
        return self.ffn(layer, layer.attention.LayerNorm(c))

    def qkv(self, layer):
        att = layer.attention.attn
        return att.q, att.k, att.v

    def attn_output(self, layer, context, x):
        att = layer.attention
        return att.LayerNorm(att.dropout(att.attn.o(context)) + x)

    def attn_norm(self, layer):
        return layer.attention.LayerNorm

    def text_bias(self, encoder, text):
        return encoder.encoder.compute_position_bias(text[:1])  # (1, H, T, T), as MPNetEncoder computes it


class ModernBertLayout(Layout):
    """ModernBERT: pre-norm layers ``layers[i].attn_norm / attn.Wqkv / mlp_norm / mlp``, rotary positions,
    alternating global and sliding-window attention, a final norm. Intercepted only."""

    name = "modernbert"
    intercept = True
    rotary = True

    @staticmethod
    def matches(encoder: nn.Module) -> bool:
        layers = getattr(encoder, "layers", None)
        if not isinstance(layers, nn.ModuleList) or not layers or not hasattr(encoder, "embeddings"):
            return False
        return all(
            _has(layer, "attn_norm", "attn", "mlp_norm", "mlp") and _has(layer.attn, "Wqkv", "Wo")
            for layer in layers
        )

    def layers(self, encoder):
        return encoder.layers

    def attention_module(self, layer):
        return layer.attn

    def attn_input(self, layer, x):
        return layer.attn_norm(x)

    def _proj(self, layer, h, part):
        w, b = layer.attn.Wqkv.weight, layer.attn.Wqkv.bias
        d = w.shape[0] // 3
        return F.linear(h, w[part * d : (part + 1) * d], None if b is None else b[part * d : (part + 1) * d])

    def query(self, layer, h):
        return self._proj(layer, h, 0)

    def key(self, layer, h):
        return self._proj(layer, h, 1)

    def c_step(self, layer, c):
        return c + layer.mlp(layer.mlp_norm(c))  # the attention sub-layer adds nothing: c' = c

    def position_ids(self, key_mask, n_text):
        """Text tokens at 0..T-1; visual token j of a tweet with n real tokens at n + j, as if it followed the
        tweet directly (so positions do not depend on the batch's padding)."""
        B, N = key_mask.shape
        text = torch.arange(n_text, device=key_mask.device).expand(B, n_text)
        n_real = key_mask[:, :n_text].sum(-1, keepdim=True)
        visual = n_real + torch.arange(N - n_text, device=key_mask.device)
        return torch.cat([text, visual], dim=1)


LAYOUTS: tuple[type[Layout], ...] = (BertLayout, MPNetLayout, ModernBertLayout)


def layout_of(encoder: nn.Module) -> Layout:
    """The adapter for ``encoder``'s layers; ValueError naming the supported layouts otherwise."""
    for cls in LAYOUTS:
        if cls.matches(encoder):
            return cls()
    raise ValueError(
        f"text encoder {type(encoder).__name__} has no layer layout CAT-MNER knows: supported are BERT/RoBERTa "
        "(encoder.layer[i].attention.self.query/key/value, attention.output, intermediate, output), MPNet "
        "(encoder.layer[i].attention.attn.q/k/v/o) and ModernBERT (layers[i].attn_norm, attn.Wqkv, mlp_norm, "
        "mlp); see docs/model.md"
    )


# ------------------------------------------------------------------------------------------- interception
@dataclass
class InterceptPass:
    """What one intercepted forward carries to the attention calls of the encoder's layers."""

    attend: Callable[..., tuple[torch.Tensor, torch.Tensor]]  # (i, query, key, value, mask, scaling, dropout)
    inputs: dict[int, torch.Tensor] = field(default_factory=dict)  # attention input of layer i
    hits: set[int] = field(default_factory=set)  # layers whose attention was intercepted


_ACTIVE: contextvars.ContextVar[InterceptPass | None] = contextvars.ContextVar("catmner_pass", default=None)


def _capture_input(module: nn.Module, args: tuple, kwargs: dict) -> None:
    """Forward pre-hook of an attention module: keep its input (what the projections read) for the gates."""
    active = _ACTIVE.get()
    i = getattr(module, "_catmner_layer", None)
    if active is not None and i is not None:
        active.inputs[i] = args[0] if args else kwargs["hidden_states"]


def catmner_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The attention function registered as "catmner": CAT-MNER's attention inside an intercepted forward,
    else PyTorch SDPA exactly as transformers' "sdpa" (so the encoder stays usable on its own)."""
    active = _ACTIVE.get()
    i = getattr(module, "_catmner_layer", None)
    if active is None or i is None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(
            module, query, key, value, attention_mask, scaling=scaling, dropout=dropout, **kwargs
        )
    active.hits.add(i)
    return active.attend(i, query, key, value, attention_mask, scaling, dropout)


def register() -> None:
    """Register "catmner" as an attention function (and its masks as SDPA's boolean masks); idempotent."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask
    from transformers.modeling_utils import AttentionInterface

    AttentionInterface.register(ATTN_IMPLEMENTATION, catmner_attention)
    ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, sdpa_mask)


def prepare_interception(encoder: nn.Module, layout: Layout) -> None:
    """Make ``encoder``'s layers call `catmner_attention`: name each attention module's layer, hook its input."""
    can_set = getattr(type(encoder), "_can_set_attn_implementation", None)
    if callable(can_set) and not can_set():
        raise ValueError(
            f"{type(encoder).__name__} writes its attention out instead of calling transformers' attention "
            "interface, so its attention cannot be intercepted"
        )
    register()
    for i, layer in enumerate(layout.layers(encoder)):
        module = layout.attention_module(layer)
        module._catmner_layer = i
        if not getattr(module, "_catmner_hooked", False):
            module.register_forward_pre_hook(_capture_input, with_kwargs=True)
            module._catmner_hooked = True
    encoder.config._attn_implementation = ATTN_IMPLEMENTATION


class _PassThrough(nn.Module):
    """Stands in for the encoder's embedding layer during an intercepted forward: the states are ours."""

    def forward(self, *args: Any, inputs_embeds: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        return inputs_embeds


@contextlib.contextmanager
def intercepted(encoder: nn.Module, active: InterceptPass) -> Iterator[None]:
    """Run ``encoder`` inside: its embedding layer passes ``inputs_embeds`` through, its attention calls go to
    ``active``."""
    embeddings = encoder._modules["embeddings"]
    token = _ACTIVE.set(active)
    encoder._modules["embeddings"] = _PassThrough()
    try:
        yield
    finally:
        encoder._modules["embeddings"] = embeddings
        _ACTIVE.reset(token)
