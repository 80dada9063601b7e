"""Image features for CAT-MNER, in three modules (this one re-exports their public names):

- `images`: safe image loading (``load_image_safely`` / ``decode_image``: untrusted files become an RGB image or
  a one-line reason, never an exception) and grid cropping;
- `encoders`: ``VisionConfig``, the grid encoders (EfficientNet-Lite0 offline, any open_clip model, ``tiny``)
  and ``GridFeatureExtractor`` (image -> ``(16, F)`` features of the 4x4 grid, L_I = 16);
- `feature_cache`: the content-keyed on-disk ``FeatureCache`` and the functions behind ``catmner features``.

Cell order everywhere is row-major from the top-left cell: index = row * grid + col.
"""

from __future__ import annotations

from catmner_model.encoders import (
    EFFICIENTNET_LITE0,
    GridFeatureExtractor,
    VisionConfig,
    as_extractor,
    build_backend,
    image_cells,
    parse_encoder,
)
from catmner_model.feature_cache import (
    CacheFailure,
    FeatureCache,
    bench_extraction,
    default_cache_dir,
    precompute_dataset,
)
from catmner_model.images import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_PIXELS,
    IMAGE_FAILURES,
    PREPROCESS_VERSION,
    ImageLoad,
    VisionError,
    decode_image,
    grid_boxes,
    grid_crops,
    load_image_safely,
    resized_grid_tensor,
)

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_PIXELS",
    "EFFICIENTNET_LITE0",
    "IMAGE_FAILURES",
    "PREPROCESS_VERSION",
    "CacheFailure",
    "FeatureCache",
    "GridFeatureExtractor",
    "ImageLoad",
    "VisionConfig",
    "VisionError",
    "as_extractor",
    "bench_extraction",
    "build_backend",
    "decode_image",
    "default_cache_dir",
    "grid_boxes",
    "grid_crops",
    "image_cells",
    "load_image_safely",
    "parse_encoder",
    "precompute_dataset",
    "resized_grid_tensor",
]
