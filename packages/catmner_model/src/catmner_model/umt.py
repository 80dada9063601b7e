"""UMT (Yu, Jiang, Yang and Xia, ACL 2020, "Improving Multimodal Named Entity Recognition via Entity Span
Detection with Unified Multimodal Transformer"), the model family "umt", on our text encoder and visual sources.

Re-implemented from the paper and its public code (jefferyYu/UMT, ``my_bert/mner_modeling.py``,
``MTCCMBertForMMTokenClassificationCRF``); letters: B batch, T text tokens, W words, I visual tokens, D width.

- Text: the text encoder's last states (B, T, D), dropout. Two fresh one-layer transformer encoders over them
  (BERT layers: self-attention, add & norm, feed-forward, add & norm): one feeds the auxiliary entity-span
  detection module, the other the multimodal interaction module.
- Visual tokens (B, I, D), two of them per visual slot as in UMT (``vismap2text`` and ``vismap2text_v2``):
  ``grid`` projects the frozen grid features (their own width F) with two Linear(F, D) layers (UMT: ResNet's
  7x7x2048 map); ``caption`` embeds the caption's word pieces with the text encoder's word embeddings plus the
  caption's position / segment embedding and norm (as CAT-MNER's caption source does), then two Linear(D, D).
  A tweet without image or caption gets a learned "no image" token (UMT substitutes a fixed placeholder image).
- Multimodal interaction module (cross-modal transformer layers: queries from one sequence, keys and values
  from the other, then BERT's add & norm and feed-forward): text->image (text queries over visual tokens,
  ``cross``), image->text (visual queries over text, ``image_text``), text->text over it (text queries over
  ``image_text``, ``final_text``); the visual gate ``g = sigmoid(W [final_text ; cross] + b)`` (B, T, D) and
  ``H = [final_text ; g * cross]`` (B, T, 2D) -> Linear -> main emissions over the BIO entity tags.
- Auxiliary entity-span detection: Linear over its encoder's states -> emissions over the span tags (O, B, I),
  its own CRF. The conversion matrix `conversion_matrix` (span tags x entity tags; O->O 1, B->B-type 1/4,
  I->I-type 1/4, fixed as in UMT's script) maps them to entity-tag emissions, and the main CRF reads
  ``0.5 * main + 0.5 * aux @ M`` (UMT's alpha = 0.5).
- Loss: main CRF NLL + 0.5 x auxiliary CRF NLL (both means over the batch, UMT's beta = 0.5).
- Tags live on words (the first word piece of each word), not on every word piece: UMT tags every piece with
  X / [CLS] / [SEP] labels and reads the first piece of each word at evaluation; tagging words directly is the
  same decision without the extra labels (their rows of the conversion matrix are identities). Decoding:
  Viterbi over words, entities by the conlleval rule, each with the mean CRF marginal of its tags as score.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from catmner_model.batching import Batch, Collator
from catmner_model.components import CaptionEmbedding
from catmner_model.config import CatMnerConfig
from catmner_model.crf import CRF
from catmner_model.data import ENTITY_TYPES, Entity, entities_to_tags, tags_to_entities
from catmner_model.errors import CatmnerError
from catmner_model.model_io import save_model_dir
from catmner_model.text_encoder import load_text_encoder, load_tokenizer
from catmner_model.visual_sources import parse_visual, visual_name

TAGS: tuple[str, ...] = ("O",) + tuple(f"{p}-{t}" for t in ENTITY_TYPES for p in ("B", "I"))  # main CRF
SPAN_TAGS: tuple[str, ...] = ("O", "B", "I")  # auxiliary entity-span detection CRF
TAG_INDEX = {t: i for i, t in enumerate(TAGS)}
ALPHA = 0.5  # weight of the main emissions against the converted auxiliary ones (UMT: alpha)
BETA = 0.5  # weight of the auxiliary CRF loss (UMT: beta)


def conversion_matrix() -> torch.Tensor:
    """UMT's fixed conversion matrix (span tags x entity tags): O -> O with 1, B -> each B-type and I -> each
    I-type with 1 / (number of types)."""
    m = torch.zeros(len(SPAN_TAGS), len(TAGS))
    m[0, TAG_INDEX["O"]] = 1.0
    for t in ENTITY_TYPES:
        m[1, TAG_INDEX[f"B-{t}"]] = 1.0 / len(ENTITY_TYPES)
        m[2, TAG_INDEX[f"I-{t}"]] = 1.0 / len(ENTITY_TYPES)
    return m


def check_umt_training(config: Any) -> str | None:
    """Why a TrainConfig cannot train UMT (None: it can)."""
    if config.variant != "mm":
        return (
            f"--variant {config.variant} is a CAT-MNER variant; UMT has its own fusion (leave --variant out)"
        )
    try:
        visual = parse_visual(config.visual)
    except ValueError:
        visual = None
    if visual not in (("grid",), ("caption",)):
        return f"--model umt reads one visual source: --visual grid or caption, not {config.visual!r}"
    if config.labels:
        return f"--model umt uses no label words: drop --labels {config.labels}"
    if config.knowledge:
        return "--model umt takes no second text segment: drop --knowledge"
    if config.finetune_image_encoder:
        return "--model umt reads frozen grid features: drop --finetune-image-encoder"
    if visual == ("grid",) and config.image_encoder in ("none", ""):
        return "--model umt --visual grid needs an --image-encoder"
    return None


class CrossLayer(nn.Module):
    """A BERT layer whose queries come from ``x`` and keys/values from ``y`` (self-attention when y is x):
    multi-head attention, Linear, dropout, LayerNorm(x + .), feed-forward (GELU), dropout, LayerNorm(. + .)."""

    def __init__(self, width: int, heads: int, inner: int, dropout: float, attn_dropout: float, eps: float):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.query, self.key, self.value = (nn.Linear(width, width) for _ in range(3))
        self.attn_out = nn.Linear(width, width)
        self.attn_norm = nn.LayerNorm(width, eps=eps)
        self.inner = nn.Linear(width, inner)
        self.out = nn.Linear(inner, width)
        self.out_norm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = nn.Dropout(attn_dropout)
        for lin in (self.query, self.key, self.value, self.attn_out, self.inner, self.out):
            nn.init.normal_(lin.weight, std=0.02)  # BERT's init (UMT: init_bert_weights)
            nn.init.zeros_(lin.bias)

    def forward(self, x: torch.Tensor, y: torch.Tensor, y_mask: torch.Tensor) -> torch.Tensor:
        """x (B, Nx, D) queries, y (B, Ny, D) keys/values, y_mask (B, Ny) bool -> (B, Nx, D)."""
        B, Nx, D = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, -1, self.heads, self.head_dim).transpose(1, 2)  # (B, H, N, Dh)

        q, k, v = heads(self.query(x)), heads(self.key(y)), heads(self.value(y))
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)  # (B, H, Nx, Ny)
        scores = scores.masked_fill(~y_mask[:, None, None, :], torch.finfo(scores.dtype).min)
        probs = self.attn_dropout(scores.softmax(-1))
        ctx = (probs @ v).transpose(1, 2).reshape(B, Nx, D)
        h = self.attn_norm(x + self.dropout(self.attn_out(ctx)))
        return self.out_norm(h + self.dropout(self.out(F.gelu(self.inner(h)))))


class UmtVisual(nn.Module):
    """The two visual-token sequences of UMT (B, I, D) x 2 and their mask (B, I), from grid features or
    caption word pieces; slot 0 of a tweet without image / caption is a learned "no image" token."""

    def __init__(self, cfg: CatMnerConfig, lm_embeddings: nn.Module, width: int, eps: float, dropout: float):
        super().__init__()
        self.source = cfg.visual[0]  # ("grid",) or ("caption",): Umt checks that there is exactly one
        if "grid" in cfg.visual:
            in_dim = cfg.image_feature_dim
            self.caption = None
        else:  # caption: the caption source's embedding (word pieces + position + segment B, norm)
            in_dim = width
            self.caption = CaptionEmbedding(lm_embeddings, cfg.max_caption_pieces, width, eps, dropout)
        self.proj = nn.Linear(in_dim, width)  # UMT: vismap2text (text->image attention)
        self.proj_v2 = nn.Linear(in_dim, width)  # UMT: vismap2text_v2 (image->text attention)
        self.no_image = nn.Parameter(torch.randn(2, width) * 0.02)

    def forward(
        self, batch: Batch, caption_vecs: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B = len(batch)
        dtype = self.proj.weight.dtype
        if self.caption is not None:
            if caption_vecs is None or batch.caption_mask is None:  # no caption in the batch
                return self._empty(B)
            has = batch.caption_mask[:, 0]
            feats, mask = self.caption(caption_vecs, batch.caption_mask, has, B)  # (B, L, D), (B, L)
        else:
            feats, has = batch.image_features, batch.image_mask
            if feats is None:
                return self._empty(B)
            if feats.shape[-1] != self.proj.in_features:
                raise CatmnerError(
                    f"image features have width {feats.shape[-1]}, the model expects {self.proj.in_features}"
                )
            mask = has[:, None].expand(-1, feats.shape[1]).clone()
            mask[:, 0] = True
        feats = feats.to(dtype)
        v1, v2 = self.proj(feats), self.proj_v2(feats)  # (B, I, D) each
        first = has[:, None, None]
        v1 = torch.cat([torch.where(first, v1[:, :1], self.no_image[0]), v1[:, 1:]], 1)
        v2 = torch.cat([torch.where(first, v2[:, :1], self.no_image[1]), v2[:, 1:]], 1)
        return v1, v2, mask

    def _empty(self, B: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        v = self.no_image[:, None, None, :].expand(-1, B, 1, -1)  # (2, B, 1, D)
        return v[0], v[1], torch.ones((B, 1), dtype=torch.bool, device=v.device)


@dataclass
class UmtOutput:
    """What `Umt.forward` returns."""

    loss: torch.Tensor | None  # () main CRF NLL + BETA * auxiliary CRF NLL, when labels were asked for
    emissions: torch.Tensor  # (B, W, len(TAGS)) main-CRF emissions over words (the mixed ones)
    aux_emissions: torch.Tensor  # (B, W, len(SPAN_TAGS)) auxiliary-CRF emissions
    word_mask: torch.Tensor  # (B, W) bool, the CRF mask (position 0 always on)


class Umt(nn.Module):
    """UMT on a Hugging Face text encoder (see the module docstring); a registered model family."""

    def __init__(
        self,
        cfg: CatMnerConfig,
        label_words: Sequence[str] | Any = (),
        tokenizer: Any | None = None,
        encoder: nn.Module | None = None,
        image_encoder_weights: bool = True,
    ):
        super().__init__()
        if tuple(cfg.visual) not in (("grid",), ("caption",)) or cfg.variant != "mm":
            raise CatmnerError(
                f"UMT reads one visual source with variant 'mm' (visual grid or caption), got variant "
                f"{cfg.variant!r}, visual {visual_name(cfg.visual)!r}"
            )
        if cfg.trainable_image_encoder or cfg.text_context or cfg.case_features != "none":
            raise CatmnerError("UMT takes no trainable image encoder, text context or case features")
        if cfg.caption_positions != "restart":  # UMT reads the caption as a sequence of its own
            cfg = replace(cfg, caption_positions="restart")
        self.cfg = cfg
        self.label_words: list[str] = []  # UMT uses none; kept for the shared save format
        self.label_words_meta = None
        self.vision = None  # frozen grid features only
        if encoder is None:
            encoder, tokenizer = load_text_encoder(cfg.text_encoder, tokenizer)
        elif tokenizer is None:
            tokenizer = load_tokenizer(cfg.text_encoder)
        self.tokenizer, self.encoder = tokenizer, encoder
        ecfg = encoder.config
        D, H = ecfg.hidden_size, ecfg.num_attention_heads
        inner = int(getattr(ecfg, "intermediate_size", 4 * D))
        drop = cfg.dropout if cfg.dropout is not None else float(getattr(ecfg, "hidden_dropout_prob", 0.1))
        attn = float(getattr(ecfg, "attention_probs_dropout_prob", 0.1))
        eps = float(getattr(ecfg, "layer_norm_eps", None) or 1e-12)

        def layer() -> CrossLayer:
            return CrossLayer(D, H, inner, drop, attn, eps)

        self.dropout = nn.Dropout(drop)
        self.aux_self = layer()  # UMT: self_attention (auxiliary span detection)
        self.main_self = layer()  # UMT: self_attention_v2 (multimodal interaction)
        self.visual = UmtVisual(cfg, encoder.embeddings, D, eps, drop)
        self.text_image = layer()  # UMT: txt2img_attention
        self.image_text = layer()  # UMT: img2txt_attention
        self.text_text = layer()  # UMT: txt2txt_attention
        self.gate = nn.Linear(2 * D, D)
        self.classifier = nn.Linear(2 * D, len(TAGS))
        self.aux_classifier = nn.Linear(D, len(SPAN_TAGS))
        self.crf = CRF(len(TAGS))
        self.aux_crf = CRF(len(SPAN_TAGS))
        self.register_buffer("conversion", conversion_matrix(), persistent=False)  # (3, 9), fixed

    # ------------------------------------------------------------------------ the family interface
    def collator(self) -> Collator:
        return Collator(self.tokenizer, self.cfg)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        enc = {id(p) for p in self.encoder.parameters()}
        return {
            "encoder": [p for p in self.encoder.parameters() if p.requires_grad],
            "new": [p for p in self.parameters() if id(p) not in enc and p.requires_grad],
        }

    def save_pretrained(self, directory: str | os.PathLike[str]) -> Path:
        return save_model_dir(self, directory)

    @property
    def device(self) -> torch.device:
        return self.gate.weight.device

    # ------------------------------------------------------------------------------------ the model
    def fuse(self, final_text: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
        """The visual gate: ``[final_text ; sigmoid(W [final_text ; cross] + b) * cross]`` (B, T, 2D)."""
        g = torch.sigmoid(self.gate(torch.cat([final_text, cross], -1)))  # (B, T, D)
        return torch.cat([final_text, g * cross], -1)

    def encode_text(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The encoder's last states (B, T, D) and the caption pieces' word embeddings (B, L, D) or None
        (one word-embedding lookup for both)."""
        ids = batch.input_ids
        words = self.encoder.get_input_embeddings()
        cap_ids = batch.caption_ids if self.visual.caption is not None else None
        flat = ids.reshape(-1) if cap_ids is None else torch.cat([ids.reshape(-1), cap_ids.reshape(-1)])
        vecs = words(flat)
        B, T = ids.shape
        kw = {"token_type_ids": batch.token_type_ids} if batch.token_type_ids is not None else {}
        out = self.encoder(
            inputs_embeds=vecs[: B * T].view(B, T, -1), attention_mask=batch.attention_mask.long(), **kw
        )
        caption = vecs[B * T :].view(*cap_ids.shape, -1) if cap_ids is not None else None
        return out.last_hidden_state, caption

    def emissions(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mixed main emissions (B, T, len(TAGS)), auxiliary emissions (B, T, len(SPAN_TAGS))) per token."""
        text, caption = self.encode_text(batch)
        h = self.dropout(text)  # (B, T, D)
        tmask = batch.attention_mask
        aux = self.aux_classifier(self.aux_self(h, h, tmask))  # (B, T, 3)
        main = self.main_self(h, h, tmask)  # (B, T, D)
        v1, v2, vmask = self.visual(batch, caption)  # (B, I, D) x 2, (B, I)
        cross = self.text_image(main, v1, vmask)  # (B, T, D) image-aware text
        image_text = self.image_text(v2, main, tmask)  # (B, I, D) text-aware image
        final_text = self.text_text(main, image_text, vmask)  # (B, T, D)
        logits = self.classifier(self.fuse(final_text, cross))  # (B, T, 9)
        mixed = ALPHA * logits + (1 - ALPHA) * (aux @ self.conversion.to(aux.dtype))
        return mixed, aux

    def word_tags(self, batch: Batch, W: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Gold (B, W) entity-tag and span-tag indices of the kept words (from the batch's tweets)."""
        tags = torch.zeros((len(batch), W), dtype=torch.long)
        for b, (tweet, n) in enumerate(zip(batch.tweets, batch.n_words, strict=True)):
            bio = entities_to_tags(tweet.entities, len(tweet.tokens))[:n]
            tags[b, :n] = torch.tensor([TAG_INDEX[t] for t in bio], dtype=torch.long)
        span = torch.where(tags == 0, 0, torch.where(tags % 2 == 1, 1, 2))  # B-x at odd, I-x at even indices
        return tags.to(batch.input_ids.device), span.to(batch.input_ids.device)

    def forward(self, batch: Batch, labels: bool | None = None, output_attentions: bool = False) -> UmtOutput:
        """Emissions over words and, with ``labels``, the loss (main CRF + BETA x auxiliary CRF)."""
        mixed, aux = self.emissions(batch)
        idx = batch.word_index  # (B, W) first word piece of each word
        main_w = mixed.gather(1, idx[..., None].expand(-1, -1, mixed.shape[-1])).float()  # (B, W, 9)
        aux_w = aux.gather(1, idx[..., None].expand(-1, -1, aux.shape[-1])).float()  # (B, W, 3)
        mask = batch.word_mask.clone()
        mask[:, 0] = True  # the CRF needs a first position (an empty tweet has no words and is cut later)
        loss = None
        if labels is not None and labels is not False:
            tags, span = self.word_tags(batch, mask.shape[1])
            loss = self.crf(main_w, tags, mask) + BETA * self.aux_crf(aux_w, span, mask)
        return UmtOutput(loss=loss, emissions=main_w, aux_emissions=aux_w, word_mask=mask)

    @torch.no_grad()
    def decode(self, out: UmtOutput, batch: Batch) -> list[list[Entity]]:
        """Viterbi over each tweet's kept words; entities by the conlleval rule, scored by the mean marginal
        probability of their tags. One list per tweet, sorted by start."""
        paths = self.crf.decode(out.emissions, out.word_mask)
        probs = self.crf.marginals(out.emissions, out.word_mask).cpu()  # (B, W, 9)
        result = []
        for b, (path, n) in enumerate(zip(paths, batch.n_words, strict=True)):
            path = path[:n]
            ents = tags_to_entities([TAGS[k] for k in path])
            result.append(
                [
                    Entity(
                        e.start,
                        e.end,
                        e.type,
                        float(probs[b, range(e.start, e.end), path[e.start : e.end]].mean()),
                    )
                    for e in ents
                ]
            )
        return result
