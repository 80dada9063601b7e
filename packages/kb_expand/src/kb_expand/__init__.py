"""kb_expand: expand entity-type labels into related words from textual and multimodal knowledge bases.

Public read API: `load_label_words(spec, db)` -> `LabelWords`.
"""

__version__ = "0.1.0"

from .labelwords import LabelWords, labels_checksum, load_label_words  # noqa: E402

__all__ = ["LabelWords", "labels_checksum", "load_label_words", "__version__"]
