"""The interface of a visual source: where one kind of visual tokens comes from and how it reaches the model.

A visual source is one class (a subclass of `VisualSourceKind`) that owns the three places a kind of visual
tokens touches: its *example lookup* (`setup` once per run, `lookup` per tweet, called by
`visual.VisualSource`), its *collate pieces* (`collate`: the batch tensors, called by `batching.Collator`)
and its *embedding module* (`embedding`, built by the model, and `tokens`, its (B, n, D) tokens and mask in
`CatMner.encode`). The model config names its sources (``CatMnerConfig.visual``, a tuple of registry names,
empty for text only); `visual_sources.VISUAL_SOURCES` maps each name to its class.

The defaults serve a source whose lookup gives each tweet a tensor of fixed shape ``(n, F)`` (or None): its
values go to ``Example.visual[name]``, are padded into ``Batch.visual[name] = (features (B, n, F) or None,
mask (B,))`` and read by an embedding module called as ``module(features, mask, batch_size)`` (the signature
of `components.VisualEmbedding`). A new source of that shape implements `find` and `embedding` only; the grid
and caption sources (`visual_grid.py`, `visual_caption.py`) override more.

This module imports nothing of catmner_model: every other module may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch


class VisualSourceKind:
    """One kind of visual tokens (see the module docstring). Subclasses set `name` (and `attr`, the model
    attribute holding its embedding module, which prefixes its saved weights; default `name`)."""

    name: ClassVar[str] = ""
    attr: ClassVar[str] = ""
    reads_image: ClassVar[bool] = False  # its lookup needs the tweet's image file located
    lm_pieces: ClassVar[bool] = False  # its tokens are word pieces the LM's embedding layer embeds

    @property
    def module_name(self) -> str:
        return self.attr or self.name

    # ------------------------------------------------------------------------------------- the model config
    def check(self, cfg: Any) -> None:
        """Refuse a model config this source cannot serve (a ValueError naming the field)."""

    # ------------------------------------------------------------------------------------- example lookup
    def setup(self, src: Any, cfg: Any, options: dict[str, Any]) -> None:
        """Configure ``src`` (a `visual.VisualSource`) for a model with config ``cfg``; ``options`` are the
        keyword arguments of `VisualSource.for_model` (dataset, data_dir, image_dir, captions, captioner,
        feature_cache, image_encoder, finetune, cache)."""

    def find(self, src: Any, tweet: Any, image: Path | None, given: dict[str, Any]) -> Any:
        """This source's input for one tweet (None: the tweet has none). ``image``: its image file when the
        source `reads_image`; ``given``: what the caller passed for this tweet (prediction)."""
        raise NotImplementedError(f"visual source {self.name!r} implements no lookup")

    def lookup(self, src: Any, ex: Any, image: Path | None, given: dict[str, Any]) -> None:
        """Fill ``ex`` (a `batching.Example`) with this source's input for its tweet."""
        ex.visual[self.name] = self.find(src, ex.tweet, image, given.get(self.name))

    def present(self, ex: Any) -> bool:
        """Whether ``ex`` has this source's input (counted in the run's statistics)."""
        return ex.visual.get(self.name) is not None

    # ------------------------------------------------------------------------------------- collate pieces
    def collate(self, collator: Any, examples: Sequence[Any]) -> dict[str, Any]:
        """Batch tensors of this source: ``{Batch field: value}``; ``"stats"`` (a dict of counts) is added to
        the batch's stats, and a name that is no `Batch` field goes to ``Batch.visual``. Default: ``{name: (features (B, n, F) or None, mask (B,) bool)}``."""
        values = [ex.visual.get(self.name) for ex in examples]
        mask = torch.tensor([v is not None for v in values], dtype=torch.bool)
        if not bool(mask.any()):
            return {self.name: (None, mask)}
        ref = next(v for v in values if v is not None)
        out = torch.zeros((len(values), *ref.shape), dtype=torch.float32)
        for b, v in enumerate(values):
            if v is not None:
                if v.shape != ref.shape:
                    raise ValueError(
                        f"{self.name} inputs of one batch differ in shape: {tuple(v.shape)} vs {tuple(ref.shape)}"
                    )
                out[b] = v
        return {self.name: (out, mask)}

    # ------------------------------------------------------------------------------------- embedding module
    def embedding(self, model: Any, cfg: Any, width: int, eps: float, dropout: float) -> torch.nn.Module:
        """The module that turns this source's batch pieces into tokens of width ``width`` (built once, in
        registry order, by `CatMner`: its creation order fixes the seeded initialisation)."""
        raise NotImplementedError(f"visual source {self.name!r} has no embedding module")

    def tokens(
        self, model: Any, batch: Any, batch_size: int, lm_vecs: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens (B, n, D), mask (B, n) bool) of this source for ``batch``; ``lm_vecs``: the LM's word
        embeddings of this source's pieces (sources with `lm_pieces`)."""
        features, mask = batch.visual[self.name]
        return getattr(model, self.module_name)(features, mask, batch_size)

    def piece_ids(self, batch: Any) -> torch.Tensor | None:
        """The word-piece ids the LM's embedding layer embeds for this source (sources with `lm_pieces`)."""
        return None
