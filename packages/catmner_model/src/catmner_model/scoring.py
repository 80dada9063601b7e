"""Public facade: scoring entities the way the literature scores MNER, and the BIO chunking behind it.

Code outside catmner_model (the benchmarks' CRF baselines, anything that scores tag paths or entity sets)
imports these names from here; they live in `metrics.py` (micro P/R/F1, lenient ``conlleval`` and IOB2
``strict``, per type) and `data.py` (the conlleval chunking rule, tags <-> entities). Nothing is defined here.
"""

from __future__ import annotations

from catmner_model.data import entities_to_tags, tags_to_entities
from catmner_model.metrics import METRIC_DEFINITION, score, score_both, score_tags

__all__ = [
    "METRIC_DEFINITION",
    "entities_to_tags",
    "score",
    "score_both",
    "score_tags",
    "tags_to_entities",
]
