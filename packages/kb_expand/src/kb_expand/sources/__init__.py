"""Knowledge sources behind one interface (`Source.expand(label, seeds, k) -> ranked Candidates`), and their
registry: `SOURCES` maps each name `kbx build --source` offers to its class (imported when used, so the CLI
starts without loading WordNet, gensim or networkx). Adding a source: a `Source` subclass in this package
(``name``, ``expand``, ``from_context`` if it takes options) and its line here; `build` and the CLI read it.
"""

from __future__ import annotations

from importlib import import_module

from ..errors import KbxError
from .base import Candidate, Source, SourceContext, finalize

# name -> "module:Class" in this package (or a Source subclass itself); the CLI lists them in this order
SOURCES: dict[str, str | type[Source]] = {
    "textual": "textual:TextualSource",
    "wordnet": "wordnet:WordNetSource",
    "conceptnet": "conceptnet:ConceptNetSource",
    "embeddings": "embeddings:EmbeddingSource",
    "relatedwords": "relatedwords:RelatedWordsSource",
    "visualgenome": "visualgenome:VisualGenomeSource",
}
SOURCE_NAMES: tuple[str, ...] = tuple(SOURCES)


def source_class(name: str) -> type[Source]:
    """The registered class of source ``name`` (KbxError naming the choices for an unknown name)."""
    if name not in SOURCES:
        raise KbxError(f"unknown source {name!r}: choose one of {', '.join(SOURCE_NAMES)}")
    entry = SOURCES[name]
    if isinstance(entry, type):
        return entry
    module, cls = entry.split(":")
    return getattr(import_module(f"{__name__}.{module}"), cls)


__all__ = ["Candidate", "Source", "SourceContext", "finalize", "SOURCES", "SOURCE_NAMES", "source_class"]
