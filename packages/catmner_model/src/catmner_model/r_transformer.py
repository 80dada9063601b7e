"""The R-Transformer and C-Transformer layers of CatMner (Eq. 3-6), as the mixin `RTransformerLayers`.

`CatMner.encode` builds [text; visual] and runs the encoder's layers through one of two paths:

- `_r_layer`, our layer loop (post-norm layouts: BERT/RoBERTa, MPNet): each layer's own Q/K/V, attention
  output and feed-forward weights (`layouts.py` says where they are), Eq. 4 refinement through
  `attention.attention`, and the C-Transformer step of the label states sharing the feed-forward GEMM;
  optionally on the real (non-padding) rows only.
- `_encode_intercepted`: the encoder's own forward with its attention calls routed to the same attention
  function (BERT/RoBERTa, ModernBERT).

`_refinement` computes the Eq. 4 gate and the Eq. 6 saliency of one layer; `_label_keys` caches every layer's
label-word keys for inference. The mixin holds no parameters: it reads CatMner's (``self.layers``,
``self._layout``, ``self.gates_i2t`` / ``self.gates_t2i``, ``self.saliency_log_scale``, ``self.n_heads`` ...),
so the weights and their names are CatMner's alone.

Letters: B batch, T text tokens, I visual tokens, N = T + I, C label words, H heads, D width, Dh = D / H.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from catmner_model.attention import attention, cross_modal_gate, saliency
from catmner_model.layouts import InterceptPass, intercepted


class RTransformerLayers:
    """The layer computations of `CatMner` (a mixin: see the module docstring for what it reads)."""

    # set by CatMner.__init__
    layers: Any
    _layout: Any
    encoder: nn.Module
    n_heads: int
    head_dim: int
    attn_dropout: float
    training: bool
    # explain.py sets a dict here for one forward: the last layer's attention inputs are stored in it
    _explain: dict[str, Any] | None = None

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

    def _refined(self, i: int) -> tuple[bool, bool]:
        """Whether layer ``i`` refines its I2T and its T2I block."""
        return self.gates_i2t is not None, self.gates_t2i is not None and i < len(self.gates_t2i)

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
        blocks = n_text if self.cfg.softmax == "block" else None
        if last and self._explain is not None:  # explain.py: recompute this attention without refinement
            self._explain.update(q=q[:, :, :n_q], k=k, mask=key_mask, bias=bias, scaling=None, q_plain=q)
            self._explain.update(k_labels=k_labels, gate=gate, saliency=sal, blocks=blocks)
        context, probs = attention(
            q[:, :, :n_q],
            k,
            v,
            key_mask,
            gate,
            sal,
            self.attn_dropout,
            self.training,
            bias=bias,
            blocks=blocks,
        )
        probe = self.__dict__.get("_vitals")  # vitals.measure_vitals: what this layer's attention did
        if probe is not None:
            probe.observe(i, q[:, :, :n_q], k, key_mask, n_text, gate, sal, probs, self._refined(i))
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
            blocks = n_text if self.cfg.softmax == "block" else None
            if i == len(layers) - 1 and self._explain is not None:  # explain.py (see _r_layer)
                self._explain.update(
                    q=q, k=k, mask=allowed, bias=None, scaling=scaling, gate=gate, saliency=sal
                )
                self._explain.update(q_plain=q_plain if keys is not None else q, blocks=blocks)
                self._explain.update(k_labels=keys[i] if keys is not None else None)
            context, probs = attention(
                q, k, v, allowed, gate, sal, dropout, self.training, scaling, blocks=blocks
            )
            probe = self.__dict__.get("_vitals")
            if probe is not None:
                probe.observe(i, q, k, key_mask, n_text, gate, sal, probs, self._refined(i))
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

    def train(self, mode: bool = True):  # type: ignore[no-untyped-def]
        """nn.Module.train; entering train mode also drops the label-key cache (see `_label_keys`)."""
        if mode:
            self.__dict__.pop("_label_key_cache", None)
        return super().train(mode)  # type: ignore[misc]

    def _label_keys(self) -> list[torch.Tensor]:
        """Every layer's label-word keys (H, C, Dh) from the C-Transformer, cached for inference.

        The label states depend on the weights only, so under ``torch.no_grad`` in eval mode they are computed
        once and reused until a weight changes. The cache key holds each encoder tensor's storage and in-place
        version counter, which ``load_state_dict``, ``.to()`` and in-place edits change. A fused optimizer step
        does not (torch's fused AdamW leaves the version counter as it is), so entering train mode (`train`)
        drops the cache too: a training loop's next validation sees the new weights.
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
