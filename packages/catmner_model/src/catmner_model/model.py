"""The CAT-MNER model `CatMner`: R-Transformer over [text; image], C-Transformer, span head, decoding.

This module owns the model's computation (paper Sections 3.1-3.2, ambiguities resolved as in docs/design.md); its
config and variants are in `config.py`, its building blocks (gate, visual and caption embeddings, span head,
decoding) in `components.py`, the layer computations in `r_transformer.py`, text-encoder loading in
`text_encoder.py`, the saved format in `model_io.py`.

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
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from catmner_model.batching import IGNORE_INDEX, Batch, Collator, WordPieces
from catmner_model.components import (
    CatMnerOutput,
    Gate,
    SpanHead,
    decode_spans,
)
from catmner_model.config import CatMnerConfig, config_from_dict, load_config
from catmner_model.data import LABELS, Entity
from catmner_model.errors import CatmnerError
from catmner_model.layouts import layout_of, prepare_interception
from catmner_model.model_io import ModelFormatError, load_weights, read_model_dir, save_model_dir
from catmner_model.r_transformer import RTransformerLayers
from catmner_model.text_encoder import drop_pooler, load_text_encoder, load_tokenizer
from catmner_model.visual_sources import VISUAL_SOURCES, kinds


class CatMner(RTransformerLayers, nn.Module):
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
            from catmner_model.encoders import build_backend

            self.vision = build_backend(cfg.trainable_image_encoder, pretrained=image_encoder_weights)
            cfg.image_feature_dim = int(self.vision.feature_dim)
        self.label_words_meta = label_words.to_json() if hasattr(label_words, "to_json") else None
        words = label_words.words() if hasattr(label_words, "words") else label_words
        self.label_words: list[str] = list(dict.fromkeys(str(w) for w in words if str(w).strip()))
        if cfg.uses_label_words and not self.label_words:
            raise CatmnerError(
                f"variant {cfg.variant!r} refines attention with label words, but the set is empty"
            )
        if encoder is None:
            encoder, tokenizer = load_text_encoder(cfg.text_encoder, tokenizer)
        elif tokenizer is None:
            tokenizer = load_tokenizer(cfg.text_encoder)
        self.tokenizer = tokenizer
        self.encoder = encoder
        self._layout = layout_of(encoder)  # where the layers keep their weights (`self.layers` reads it)
        self._intercept = self._r_transformer_mode(cfg.r_transformer) == "intercept"
        self._embed_types = "token_type_ids" in inspect.signature(encoder.embeddings.forward).parameters
        ecfg = encoder.config
        D, H = ecfg.hidden_size, ecfg.num_attention_heads
        self.width, self.n_heads, self.head_dim = D, H, D // H
        self.attn_dropout = float(getattr(ecfg, "attention_probs_dropout_prob", 0.0))
        self._add_new_layers(cfg, ecfg)
        self._register_label_ids()

    def _r_transformer_mode(self, mode: str) -> str:
        """``cfg.r_transformer`` resolved against the encoder's layout ("loop" or "intercept"); prepares the
        encoder for interception when that is the mode."""
        if mode == "auto":
            mode = "loop" if self._layout.loop else "intercept"
        if mode == "loop" and not self._layout.loop:
            raise CatmnerError(
                f"{self._layout.name} layers cannot run in our layer loop: use r_transformer='intercept'"
            )
        if mode == "intercept":
            if not self._layout.intercept:
                raise CatmnerError(
                    f"{self._layout.name} layers write their attention out (no transformers attention "
                    "interface), so they cannot be intercepted: use r_transformer='loop'"
                )
            prepare_interception(self.encoder, self._layout)
        return mode

    def _add_new_layers(self, cfg: CatMnerConfig, ecfg: Any) -> None:
        """The layers CAT-MNER adds to the encoder: visual and caption embeddings, gates, span head, word
        forms, the learned saliency scale (created in this order: it fixes the random init of a seed)."""
        D, H, L = self.width, self.n_heads, len(self.layers)
        dropout = cfg.dropout if cfg.dropout is not None else float(getattr(ecfg, "hidden_dropout_prob", 0.1))
        eps = float(getattr(ecfg, "layer_norm_eps", None) or getattr(ecfg, "norm_eps", None) or 1e-12)
        # each visual source's embedding module (grid: self.visual, caption: self.caption), in registry order
        for name in VISUAL_SOURCES:  # None for a source the model does not read
            setattr(self, VISUAL_SOURCES[name]().module_name, None)
        self.visual_kinds = kinds(cfg.visual)
        for kind in self.visual_kinds:
            setattr(self, kind.module_name, kind.embedding(self, cfg, D, eps, dropout))
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
        # saliency_scale="learned": log of a per-layer multiplier of the "keys" saliency, starting at
        # saliency_scale_init (1: at "keys")
        self.saliency_log_scale = (
            nn.Parameter(torch.full((L,), math.log(cfg.saliency_scale_init)))
            if cfg.saliency_scale == "learned" and cfg.uses_label_words
            else None
        )

    def _register_label_ids(self) -> None:
        """The label words' word pieces as buffers ``label_ids`` / ``label_mask`` (C, Lc), not saved."""
        pieces_of = WordPieces(self.tokenizer)
        pieces = pieces_of(self.label_words) if self.label_words else [[pieces_of.pad_id]]
        Lc = max(len(p) for p in pieces)
        ids = torch.full((len(pieces), Lc), pieces_of.pad_id, dtype=torch.long)
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
        return Collator(
            self.tokenizer,
            self.cfg,
            self.image_cells if self.vision is not None else None,
            max_positions=self.max_positions,
        )

    @property
    def max_positions(self) -> int | None:
        """Rows of the encoder's absolute position table that text can use (RoBERTa's first two are
        reserved), or None for encoders without one (rotary)."""
        table = getattr(self.encoder.embeddings, "position_embeddings", None)
        if not isinstance(table, nn.Embedding):
            return None
        return table.num_embeddings - ((table.padding_idx + 1) if table.padding_idx is not None else 0)

    def image_cells(self, path: str | os.PathLike[str]) -> torch.Tensor | None:
        """The trainable image encoder's input for an image file, ``(I, 3, S, S)``; None if unusable."""
        from catmner_model.encoders import image_cells

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
        # the source whose word pieces the LM's embedding layer embeds with the text (captions), if any
        lm_source = next((k for k in self.visual_kinds if k.lm_pieces), None)
        piece_ids = lm_source.piece_ids(batch) if lm_source is not None else None
        text, c, lm_vecs = self.embed(
            batch.input_ids, self.cfg.uses_label_words and not cached, piece_ids, batch.token_type_ids
        )  # (B, T, D), (C, D), (B, Lc, D)
        B, T, D = text.shape
        if self.word_form is not None and batch.word_shapes is not None:  # the cased form of each word
            feats = self.word_form(batch.word_shapes, batch.word_chars).to(text.dtype)  # (B, W, D)
            text = text.scatter_add(1, batch.word_index[..., None].expand(-1, -1, D), feats)
        parts, masks = [text], [batch.attention_mask]
        caption_at = None  # where the caption's tokens start (vitals)
        for kind in self.visual_kinds:  # each visual source's tokens, after the text
            vis, vis_mask = kind.tokens(self, batch, B, lm_vecs if kind is lm_source else None)  # (B, n, D)
            if kind is lm_source:
                caption_at = sum(p.shape[1] for p in parts)
            parts.append(vis)
            masks.append(vis_mask)
        probe = self.__dict__.get("_vitals")  # vitals.measure_vitals
        if probe is not None:
            has_caption = batch.caption_mask[:, 0] if batch.caption_mask is not None else None
            probe.begin(batch.attention_mask, caption_at, has_caption)
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
        """Greedy non-overlapping decoding (`components.decode_spans`): spans whose best label is not O, by
        descending best non-O probability; each Entity's score is that probability. One list per tweet."""
        return decode_spans(out.logits, batch.span_mask, batch.span_start, batch.span_end)

    @torch.no_grad()
    # ------------------------------------------------------------------------------------------------ I/O
    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        """Write config.json, model.safetensors, label_words.json and the tokenizer files into ``directory``
        (`model_io.save_model_dir`: each file atomic, config.json last, so a directory with it is complete)."""
        return save_model_dir(self, directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], map_location: str | torch.device = "cpu"
    ) -> CatMner:
        """Load a directory written by `save_pretrained`: no store, no network, no other file."""
        from transformers import AutoModel

        saved = read_model_dir(directory)
        if saved.config.family != "catmner":  # families.load_pretrained loads any family
            raise ModelFormatError(
                f"{saved.directory}: a {saved.config.family!r} model, not CAT-MNER: load it with "
                "catmner_model.load_pretrained"
            )
        encoder = AutoModel.from_config(saved.encoder_config, trust_remote_code=False)
        drop_pooler(encoder)
        words = saved.words
        model = cls(
            saved.config,
            words["words"],
            tokenizer=saved.tokenizer,
            encoder=encoder,
            image_encoder_weights=False,
        )
        model.label_words_meta = words.get("label_words")
        load_weights(model, saved, map_location)
        return model.to(map_location).eval()


def create_model(
    cfg: CatMnerConfig | str | os.PathLike[str] = "minilm",
    label_words: Sequence[str] | Any = (),
    tokenizer: Any | None = None,
    **overrides: Any,
) -> CatMner:
    """Build a CAT-MNER model from a config object, a bundled config name ("minilm", "tiny") or a JSON path
    (`families.create_model` builds a model of any registered family).

    ``overrides`` replace config fields (e.g. ``variant="text"``, ``image_feature_dim=1280``)."""
    if not isinstance(cfg, CatMnerConfig):
        cfg = load_config(cfg, **overrides)
    elif overrides:
        cfg = config_from_dict({**asdict(cfg), **overrides})
    if cfg.family != "catmner":
        raise ValueError(f"a {cfg.family!r} config: build it with catmner_model.create_model (families.py)")
    return CatMner(cfg, label_words, tokenizer=tokenizer)


def count_parameters(params: Iterable[nn.Parameter]) -> int:
    """Number of scalars in ``params``."""
    return sum(p.numel() for p in params)
