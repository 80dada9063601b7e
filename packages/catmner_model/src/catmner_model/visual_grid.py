"""The ``grid`` visual source: the image's 4x4 grid through a frozen image encoder, read from the content-keyed
`FeatureCache` (or, for a model that fine-tunes its image encoder, the image file, read at collation into
cell pixels the model encodes itself); tokens through `components.VisualEmbedding`."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from catmner_model.visual_base import VisualSourceKind


def build_extractor(image_encoder: str | None) -> Any | None:
    """The frozen grid-feature extractor for ``image_encoder`` (None for "none")."""
    if image_encoder in ("none", "", None):
        return None
    from catmner_model.encoders import GridFeatureExtractor, VisionConfig

    return GridFeatureExtractor(VisionConfig(encoder=image_encoder))


@functools.lru_cache(maxsize=1)
def _image_pool() -> ThreadPoolExecutor:
    """The image-reading threads shared by all collators (created on first use)."""
    return ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="catmner-images")


class GridSource(VisualSourceKind):
    name = "grid"
    attr = "visual"  # CatMner.visual: the weights are saved as visual.*
    reads_image = True

    def check(self, cfg: Any) -> None:
        if cfg.image_feature_dim < 1 or cfg.num_image_tokens < 1:
            raise ValueError("image_feature_dim and num_image_tokens must be positive")

    # ------------------------------------------------------------------------------------- example lookup
    def setup(self, src: Any, cfg: Any, options: dict[str, Any]) -> None:
        from catmner_model.data import resolve_image_dir

        src.image_dir = resolve_image_dir(options.get("image_dir"), options.get("data_dir"))
        if options.get("finetune") or getattr(cfg, "trainable_image_encoder", None):
            src.files = True
            return
        src.image_encoder = options.get("image_encoder") or getattr(cfg, "image_encoder", None)
        feature_cache = options.get("feature_cache")
        src.feature_cache_dir = Path(feature_cache) if feature_cache else None
        src.feature_dim = int(cfg.image_feature_dim)
        if options.get("cache") is not None:
            src.cache = options["cache"]

    @staticmethod
    def cache(src: Any) -> Any | None:
        """The FeatureCache of ``src``, built on first use (loading an image encoder takes seconds)."""
        if src.cache is None and src.image_encoder not in (None, "", "none"):
            from catmner_model.feature_cache import FeatureCache, feature_cache_root

            extractor = build_extractor(src.image_encoder)
            fdim = int(extractor.feature_dim)
            if src.feature_dim is not None and fdim != src.feature_dim:
                raise ValueError(
                    f"image encoder {src.image_encoder!r} gives {fdim}-d features, the model expects "
                    f"{src.feature_dim}"
                )
            src.cache = FeatureCache(feature_cache_root(src.feature_cache_dir), extractor, memory_items=2048)
        return src.cache

    def lookup(self, src: Any, ex: Any, image: Path | None, given: dict[str, Any]) -> None:
        if image is None:
            return
        if src.files:
            ex.image_file = str(image) if image.is_file() else None
        elif image.is_file() and self.cache(src) is not None:
            ex.image_features = src.cache.get(image)
            if ex.image_features is None:
                src.stats.unreadable_images += 1

    def present(self, ex: Any) -> bool:
        return ex.image_features is not None or ex.image_file is not None

    # ------------------------------------------------------------------------------------- collate pieces
    def collate(self, collator: Any, examples: Sequence[Any]) -> dict[str, Any]:
        """image_mask (B,), frozen grid features (B, I, F) or None, grid-cell pixels (B, I, 3, S, S) or None:
        pixels when the model runs its own image encoder, else the examples' precomputed features."""
        B = len(examples)
        if collator.image_cells is not None:
            cells = self._read_images(collator.image_cells, examples)
            image_mask = torch.tensor([c is not None for c in cells], dtype=torch.bool)
            image_pixels = None
            if bool(image_mask.any()):
                ref = next(c for c in cells if c is not None)
                image_pixels = torch.zeros((B, *ref.shape), dtype=ref.dtype)  # (B, I, 3, S, S)
                for b, c in enumerate(cells):
                    if c is not None:
                        image_pixels[b] = c
            return {"image_mask": image_mask, "image_features": None, "image_pixels": image_pixels}
        image_mask = torch.tensor([ex.image_features is not None for ex in examples], dtype=torch.bool)
        image_features = None
        if bool(image_mask.any()):
            ref = next(ex.image_features for ex, m in zip(examples, image_mask, strict=True) if m)
            image_features = torch.zeros((B, *ref.shape), dtype=torch.float32)  # (B, I, F)
            for b, ex in enumerate(examples):
                if image_mask[b]:
                    if ex.image_features.shape != ref.shape:
                        raise ValueError(
                            f"image features of tweet {ex.tweet.imgid} have shape {tuple(ex.image_features.shape)}"
                            f", others in the batch {tuple(ref.shape)}"
                        )
                    image_features[b] = ex.image_features
        return {"image_mask": image_mask, "image_features": image_features, "image_pixels": None}

    @staticmethod
    def _read_images(image_cells: Any, examples: Sequence[Any]) -> list[torch.Tensor | None]:
        """Cell pixels of each example's image file (None: no or unusable image), decoded in threads (PIL
        releases the GIL while decoding and resizing), so a GPU step does not wait on one core."""
        files = [ex.image_file for ex in examples]
        todo = [i for i, f in enumerate(files) if f]
        out: list[torch.Tensor | None] = [None] * len(files)
        if len(todo) > 1 and (os.cpu_count() or 1) > 1:
            results = list(_image_pool().map(image_cells, [files[i] for i in todo]))
        else:
            results = [image_cells(files[i]) for i in todo]
        for i, r in zip(todo, results, strict=True):
            out[i] = r
        return out

    # ------------------------------------------------------------------------------------- embedding module
    def embedding(self, model: Any, cfg: Any, width: int, eps: float, dropout: float) -> torch.nn.Module:
        from catmner_model.components import VisualEmbedding

        return VisualEmbedding(cfg.image_feature_dim, cfg.num_image_tokens, width, eps, dropout)

    def tokens(
        self, model: Any, batch: Any, batch_size: int, lm_vecs: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return model.visual(model.image_features(batch), batch.image_mask, batch_size)  # (B, I, D), (B, I)
