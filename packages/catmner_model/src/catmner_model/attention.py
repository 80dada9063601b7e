"""The attention math of CAT-MNER, as plain functions (modules elsewhere hold only projections).

`attention` is ordinary scaled dot-product attention over the concatenation [text tokens; visual tokens]
with ONE softmax per query ("joint"), or, given ``blocks``, the paper's per-block softmax (Eq. 3-4): each query
normalises its text keys and its visual keys separately (T2T and I2T for a text query, T2I and I2I for a visual
one), and the context adds the two blocks' contexts (each row then sums to one per block, two in all). The refined variant (paper Eq. 4) differs in exactly one visible place: when a
``gate`` is given, the raw scores of the refined (cross-modal) blocks become ``(1 - g) * QK^T + g * s`` before
the 1/sqrt(d) scaling. `saliency` is Eq. 6; `cross_modal_gate` spreads per-key gates onto the refined blocks.

Letters: B batch, H heads, N = T + I tokens (T text, I visual), C label words, D head width.
``d`` in Eq. 4/6 is taken per head (D), as in every multi-head Transformer including the one being refined.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor,
    gate: torch.Tensor | None = None,
    saliency: torch.Tensor | None = None,
    dropout: float = 0.0,
    training: bool = False,
    scaling: float | None = None,
    bias: torch.Tensor | None = None,
    blocks: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled dot-product attention, optionally refined (Eq. 4).

    Args:
        q, k, v: (B, H, N_q, D) queries, (B, H, N, D) keys and values.
        key_mask: (B, N) bool, True for keys that may be attended (padding and absent visual slots False); or
            a (B, 1 | H, N_q, N) bool mask per (query, key) (sliding-window encoders).
        gate: None for vanilla attention; else (B, H, N_q, N) gate per (query, key), zero outside refined blocks.
        saliency: (B, H, 1, N) saliency of each key token (already scaled), required with ``gate``.
        scaling: score multiplier; None = 1/sqrt(D).
        bias: additive score bias after the scaling, broadcastable to (B, H, N_q, N) (relative positions).
        blocks: None for one softmax over all keys; T (the number of text keys) for the per-block softmax:
            keys < T and keys >= T are normalised separately (a block without an allowed key gets no mass).
    Returns:
        context (B, H, N_q, D) and attention probabilities (B, H, N_q, N).
    """
    scores = q @ k.transpose(-1, -2)  # (B, H, N_q, N) raw QK^T
    if gate is not None:  # Eq. 4: the ONLY difference between vanilla and refined attention
        scores = scores + gate * (saliency - scores)  # = (1 - g) * QK^T + g * s, in fewer full-size passes
    scores = scores / math.sqrt(q.shape[-1]) if scaling is None else scores * scaling
    if bias is not None:
        scores = scores + bias
    allowed = key_mask[:, None, None, :] if key_mask.dim() == 2 else key_mask
    if blocks is None or blocks >= scores.shape[-1]:
        scores = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min)
        probs = scores.softmax(dim=-1)  # (B, H, N_q, N)
    else:
        is_visual = torch.arange(scores.shape[-1], device=scores.device) >= blocks  # (N,)
        probs = None
        for part in (~is_visual, is_visual):
            inside = allowed & part  # (B, 1 | H, 1 | N_q, N)
            p = scores.masked_fill(~inside, torch.finfo(scores.dtype).min).softmax(dim=-1) * inside
            probs = p if probs is None else probs + p  # (B, H, N_q, N)
    context = F.dropout(probs, p=dropout, training=training) @ v  # (B, H, N_q, D)
    return context, probs


def saliency(
    q_keys: torch.Tensor, k_labels: torch.Tensor, key_mask: torch.Tensor, scale: str | float = "paper"
) -> torch.Tensor:
    """Saliency of key tokens w.r.t. the label words (Eq. 6), normalised over the given key tokens.

    ``softmax_over_keys(Q_key K_c^T / sqrt(D))`` averaged over the label words: one distribution over the
    (unmasked) key tokens per head. Normalising over the label words instead and then averaging would give the
    constant 1/C, so the softmax runs over the key tokens (see docs/design.md).

    Args:
        q_keys: (B, H, N, D) the layer's query projection of the key tokens (one modality).
        k_labels: (H, C, D) the layer's key projection of the label-word states.
        key_mask: (B, N) bool, which key tokens exist.
        scale: "paper" (s as a probability, Eq. 4 as printed), "keys" (s times the number of valid keys, so
            a uniform saliency is 1 whatever the length), or a float multiplier.
    Returns:
        (B, H, N) saliency, zero at masked keys; sums to 1 over keys with scale="paper".
    """
    B, H, N, D = q_keys.shape
    # one (C, D) x (D, B*N) product per head; broadcasting k_labels over the batch would copy it B times
    q_flat = q_keys.transpose(0, 1).reshape(H, B * N, D)  # (H, B*N, D)
    scores = torch.bmm(k_labels / math.sqrt(D), q_flat.transpose(1, 2)).view(H, -1, B, N)  # (H, C, B, N)
    if not bool(key_mask.all()):  # padding: finfo.min (not -inf) gives masked keys exactly 0, never NaN
        blocked = torch.zeros(key_mask.shape, dtype=scores.dtype, device=scores.device)
        scores = scores + blocked.masked_fill(~key_mask, torch.finfo(scores.dtype).min)  # (B, N) broadcast
    s = scores.softmax(dim=-1).mean(dim=1).transpose(0, 1)  # (B, H, N) distribution over keys
    if scale == "paper":
        return s
    if scale == "keys":
        return s * key_mask.sum(dim=-1).clamp(min=1)[:, None, None].to(s.dtype)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool):
        return s * float(scale)
    raise ValueError(f"saliency scale must be 'paper', 'keys' or a number, got {scale!r}")


def cross_modal_gate(
    gate_keys: torch.Tensor, n_text: int, refine_i2t: bool, refine_t2i: bool
) -> torch.Tensor:
    """Place per-key gates on the refined blocks of the (query, key) grid.

    Args:
        gate_keys: (B, H, N) gate of each key token (text keys first, then visual keys).
        n_text: T, the number of text tokens; keys >= T are visual.
        refine_i2t: refine text queries over visual keys (I2T block).
        refine_t2i: refine visual queries over text keys (T2I block).
    Returns:
        (B, H, N, N) gate per (query, key): the key's gate inside refined blocks, 0 elsewhere (T2T, I2I and
        disabled blocks stay vanilla).
    """
    N = gate_keys.shape[-1]
    is_visual = torch.arange(N, device=gate_keys.device) >= n_text  # (N,)
    block = torch.zeros((N, N), dtype=gate_keys.dtype, device=gate_keys.device)  # (query, key)
    if refine_i2t:
        block = block + ((~is_visual)[:, None] & is_visual[None, :]).to(gate_keys.dtype)
    if refine_t2i:
        block = block + (is_visual[:, None] & (~is_visual)[None, :]).to(gate_keys.dtype)
    return gate_keys[:, :, None, :] * block  # (B, H, N, N)
