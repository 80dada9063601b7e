"""Knowledge sources behind one interface (`Source.expand(label, seeds, k) -> ranked Candidates`)."""

from .base import Candidate, Source, finalize

SOURCE_NAMES = ("textual", "wordnet", "conceptnet", "embeddings", "relatedwords", "visualgenome")

__all__ = ["Candidate", "Source", "finalize", "SOURCE_NAMES"]
