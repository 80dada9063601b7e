"""The paper's textual KB ("Retrieve from Textual KB"): a fusion of wordnet + conceptnet + embeddings.

Related Words itself fuses several KBs; here each source ranks its own candidates and the fused score is a
weighted reciprocal-rank sum, so a word several sources agree on beats a word only one source ranks high:
    score(w) = sum_s weight_s / (rrf_k + rank_s(w))
A source that cannot be used is skipped and recorded in `missing` (the build records it too).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ..errors import SourceUnavailable
from ..scheme import LabelSpec
from .base import Candidate, Source, finalize


class TextualSource(Source):
    name = "textual"

    def __init__(
        self,
        sources: Sequence[Source],
        missing: dict[str, str] | None = None,
        weights: dict[str, float] | None = None,
        per_source: int = 30,
        rrf_k: float = 10.0,
    ):
        self.sources = list(sources)  # the fused sources that are available
        self.missing = dict(missing or {})  # source name -> why it is missing
        self.weights = weights or {"wordnet": 1.0, "conceptnet": 1.0, "embeddings": 1.0}  # per-source weight
        self.per_source = per_source  # candidates taken from each source before fusion
        self.rrf_k = rrf_k  # reciprocal-rank constant: larger = flatter
        if not self.sources:
            raise SourceUnavailable("textual: no source available (" + "; ".join(self.missing.values()) + ")")

    def params(self) -> dict:
        return {
            "fused": [s.name for s in self.sources],
            "weights": self.weights,
            "per_source": self.per_source,
            "rrf_k": self.rrf_k,
            "sources": {s.name: s.params() for s in self.sources},
        }

    def inputs(self) -> dict:
        out: dict = {}
        for s in self.sources:
            out.update(s.inputs())
        return out

    def prepare(self, labels: Sequence[LabelSpec]) -> None:
        for s in list(self.sources):
            try:
                s.prepare(labels)
            except SourceUnavailable as e:
                self._drop(s, str(e))

    def _drop(self, source: Source, why: str) -> None:
        self.sources.remove(source)
        self.missing[source.name] = why
        if not self.sources:
            raise SourceUnavailable("textual: no source available (" + "; ".join(self.missing.values()) + ")")

    def expand(self, label: str, seeds: Sequence[str], k: int) -> list[Candidate]:
        fused: dict[str, float] = defaultdict(float)
        evidence: dict[str, dict] = defaultdict(dict)
        for s in list(self.sources):
            try:
                ranked = s.expand(label, seeds, self.per_source)
            except SourceUnavailable as e:  # e.g. the web API went away mid-build
                self._drop(s, str(e))
                continue
            for rank, c in enumerate(ranked, start=1):
                fused[c.word] += self.weights.get(s.name, 1.0) / (self.rrf_k + rank)
                evidence[c.word][s.name] = {"rank": rank, "score": round(c.score, 4), **c.evidence}
        cands = [
            Candidate(w, round(sc, 6), {"sources": sorted(evidence[w]), **evidence[w]})
            for w, sc in fused.items()
        ]
        # tie-break (equal fused score): more sources agreeing first
        cands.sort(key=lambda c: (-c.score, -len(c.evidence["sources"]), c.word))
        return finalize(cands, label, k, max_tokens=2)
