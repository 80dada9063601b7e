"""kb_expand: expand entity-type labels into related words from textual and multimodal knowledge bases.

Public read API: `load_label_words(spec, db)` -> `LabelWords`.
"""

from .checksum import labels_checksum
from .labelwords import LabelWords, load_label_words
from .version import __version__

__all__ = ["LabelWords", "labels_checksum", "load_label_words", "__version__"]
