"""Compatibility: the names `catmner_model.modeling` had before the model was split by responsibility.

New code imports from the owning module: `config.py` (CatMnerConfig, variants, named configs), `model.py`
(CatMner, create_model), `r_transformer.py` (its layer computations), `components.py` (gate, embeddings,
span head, decoding), `text_encoder.py` (text encoders and tokenizers), `model_io.py` (the saved-model
format).
"""

from __future__ import annotations

from catmner_model.components import (
    O_PRIOR_BIAS,
    CaptionEmbedding,
    CatMnerOutput,
    Gate,
    SpanHead,
    VisualEmbedding,
    decode_spans,
)
from catmner_model.config import (
    R_TRANSFORMERS,
    VARIANT_SPECS,
    VARIANTS,
    CatMnerConfig,
    Variant,
    config_from_dict,
    list_configs,
    load_config,
)
from catmner_model.model import CatMner, count_parameters, create_model
from catmner_model.model_io import FORMAT_NAME, FORMAT_VERSION, ModelFormatError
from catmner_model.text_encoder import (
    TINY_ENCODER,
    encoder_path,
    load_text_encoder,
    load_tokenizer,
    minilm_path,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "O_PRIOR_BIAS",
    "R_TRANSFORMERS",
    "TINY_ENCODER",
    "VARIANTS",
    "VARIANT_SPECS",
    "CaptionEmbedding",
    "CatMner",
    "CatMnerConfig",
    "CatMnerOutput",
    "Gate",
    "ModelFormatError",
    "SpanHead",
    "Variant",
    "VisualEmbedding",
    "config_from_dict",
    "count_parameters",
    "create_model",
    "decode_spans",
    "encoder_path",
    "list_configs",
    "load_config",
    "load_text_encoder",
    "load_tokenizer",
    "minilm_path",
]
