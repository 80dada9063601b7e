"""The paper's textual KB ("Retrieve from Textual KB"): a fusion of wordnet + conceptnet + embeddings.

Related Words itself fuses several KBs; here each source ranks its own candidates, and a candidate is kept when
the knowledge agrees on it and it is what the label means:
- support: the sources that vouch for the word, at most one each -
  wordnet: the wordnet source listed it, or the word's most frequent noun sense is one of the label's senses
  or a kind of one (any depth), or that sense's gloss names the label itself ("football": "... two teams
  ..."; a gloss naming another seed is not enough: "word" is defined by "language" without being one);
  conceptnet: it listed it; embeddings: cosine to the mean seed vector >= min_cosine.
  Words with at least `min_support` supports rank first; single-support words only fill up, and then only
  when the word vectors vouch for them and the word's main sense is the same kind of thing (lexicographer
  file) as one of the label's senses ("hardware" for product, not "combination").
- abstract words (most of the word's noun uses fall in abstract lexicographer files: noun.act, noun.state,
  ...) are dropped unless WordNet ties their main sense to the label ("tour" is an act, and an event).
- spelling variants of the label or a seed ("organisation") are dropped.
- within the same support: score = sum_s weight_s / (rrf_k + rank_s) (a word WordNet ties to the label but
  did not list counts as ranked last by wordnet), times relatedness ((cos - 0.3) / 0.5, clipped to [0, 1],
  squared), times a mild frequency preference (GloVe is frequency-sorted), halved for compounds (rarer in
  tweets than their head word) and halved again when the head is a seed ("football team" says no more than
  "team").
The stored score is n_support + that product (< 1), so the integer part reads as the number of supports.
A source that cannot be used is skipped and recorded in `missing` (the build records it too).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Sequence

from ..errors import SourceUnavailable
from ..scheme import LabelSpec
from ..text import content_tokens, singular
from .base import Candidate, Source, SourceContext, finalize

RANKING_VERSION = 2  # recorded with every build: 1 = reciprocal-rank fusion only


class TextualSource(Source):
    name = "textual"
    uses_http = True

    @classmethod
    def from_context(cls, ctx: SourceContext) -> TextualSource:
        """wordnet + conceptnet + embeddings; a missing one is recorded in ``missing``, not fatal."""
        from .conceptnet import ConceptNetSource
        from .embeddings import EmbeddingSource
        from .wordnet import WordNetSource

        parts: list[Source] = []
        missing: dict[str, str] = {}
        _, why = ctx.noun_filter()
        for sname, part in (
            ("wordnet", WordNetSource),
            ("conceptnet", ConceptNetSource),
            ("embeddings", EmbeddingSource),
        ):
            if sname == "wordnet" and why:
                missing[sname] = why
                continue
            try:
                parts.append(part.from_context(ctx))
            except SourceUnavailable as e:
                missing[sname] = str(e)
        return cls(parts, missing)

    def __init__(
        self,
        sources: Sequence[Source],
        missing: dict[str, str] | None = None,
        weights: dict[str, float] | None = None,
        per_source: int = 50,
        rrf_k: float = 10.0,
        min_cosine: float = 0.65,
        min_support: int = 2,
    ):
        self.sources = list(sources)  # the fused sources that are available
        self.missing = dict(missing or {})  # source name -> why it is missing
        self.weights = weights or {"wordnet": 1.0, "conceptnet": 1.0, "embeddings": 1.0}  # per-source weight
        self.per_source = per_source  # candidates taken from each source before fusion
        self.rrf_k = rrf_k  # reciprocal-rank constant: larger = flatter
        self.min_cosine = min_cosine  # cosine to the seeds from which the word vectors vouch for a word
        self.min_support = min_support  # supports a word needs to rank before single-support fill-ins
        if not self.sources:
            raise SourceUnavailable("textual: no source available (" + "; ".join(self.missing.values()) + ")")

    def params(self) -> dict:
        return {
            "fused": [s.name for s in self.sources],
            "weights": self.weights,
            "per_source": self.per_source,
            "rrf_k": self.rrf_k,
            "min_cosine": self.min_cosine,
            "min_support": self.min_support,
            "ranking": RANKING_VERSION,
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

    # -- what the judge reads: WordNet senses and word vectors, when they are available ------------------
    def _vectors(self):
        return next((s.kv for s in self.sources if s.name == "embeddings"), None)

    def _wordnet(self) -> bool:
        return any(s.name == "wordnet" for s in self.sources)

    def expand(self, label: str, seeds: Sequence[str], k: int) -> list[Candidate]:
        ranks: dict[str, dict[str, int]] = defaultdict(dict)
        evidence: dict[str, dict] = defaultdict(dict)
        for s in list(self.sources):
            try:
                ranked = s.expand(label, seeds, self.per_source)
            except SourceUnavailable as e:  # e.g. the web API went away mid-build
                self._drop(s, str(e))
                continue
            for rank, c in enumerate(ranked, start=1):
                ranks[c.word][s.name] = rank
                evidence[c.word][s.name] = {"rank": rank, "score": round(c.score, 4), **c.evidence}
        judge = _Judge(label, seeds, self._vectors(), self._wordnet(), self.min_cosine)
        cands = []
        for word in sorted(ranks):
            verdict = judge(word, ranks[word])
            if verdict is None:
                continue
            support, quality, detail = verdict
            if len(support) < self.min_support and "embeddings" not in support:
                continue  # a lone source the word vectors do not back
            fused = sum(self.weights.get(name, 1.0) / (self.rrf_k + r) for name, r in ranks[word].items())
            if "wordnet" in support and "wordnet" not in ranks[word]:
                fused += self.weights.get("wordnet", 1.0) / (self.rrf_k + self.per_source)
            score = min(len(support), 3) + min(fused * quality, 0.999)
            ev = {"sources": sorted(ranks[word]), "support": support, **detail, **evidence[word]}
            cands.append(Candidate(word, round(score, 6), ev))
        return finalize(cands, label, k, max_tokens=2)


class _Judge:
    """Per label: which sources vouch for a word, whether it is abstract, and how related and common it is."""

    def __init__(self, label: str, seeds: Sequence[str], kv, use_wordnet: bool, min_cosine: float):
        self.kv = kv
        self.min_cosine = min_cosine
        self.terms = {singular(t) for s in seeds for t in content_tokens(s)}  # label and seed words
        self.label_terms = {singular(t) for t in content_tokens(label)}
        self.variants = [s for s in seeds if len(s) >= 6]
        self.senses = ()
        self.lexnames: set[str] = set()
        if use_wordnet:
            from .wordnet import label_senses

            self.senses = label_senses(seeds)
            self.lexnames = {s.lexname() for s in self.senses}
        self.query = None
        if kv is not None:
            import numpy as np

            from .embeddings import phrase_vector

            vecs = [v for v in (phrase_vector(kv, s) for s in seeds) if v is not None]
            if vecs:
                q = np.mean(vecs, axis=0)
                self.query = q / float(np.linalg.norm(q))

    def _sense(self, word: str) -> dict:
        """The word's main noun sense and how WordNet ties it to the label (kind of a label sense, gloss)."""
        from .wordnet import abstractness, noun_senses, sense_under

        senses = noun_senses(word)
        if not senses:
            return {}
        main = senses[0][0]
        out = {"synset": main.name(), "lexname": main.lexname(), "abstract": round(abstractness(word), 3)}
        under = sense_under(main, self.senses)
        if under is not None:
            out["kind_of"] = under.name()
        own = {singular(t) for t in word.split()}
        gloss = {singular(t) for t in re.findall(r"[a-z]+", main.definition().lower())}
        named = sorted((gloss - own) & self.label_terms)
        if named:
            out["gloss_names"] = named[0]
        return out

    def __call__(self, word: str, ranks: dict[str, int]) -> tuple[list[str], float, dict] | None:
        """(supporting sources, quality in [0, 1], evidence) or None when the word is dropped."""
        if any(_variant(word, s) for s in self.variants):
            return None
        detail: dict = {}
        sense = self._sense(word) if self.senses else {}
        tied = "kind_of" in sense or "gloss_names" in sense
        if sense:
            detail["sense"] = sense
            if sense["abstract"] >= 0.5 and not tied:
                return None  # abstract, and WordNet does not tie it to the label
        support = []
        if "wordnet" in ranks or tied:
            support.append("wordnet")
        if "conceptnet" in ranks:
            support.append("conceptnet")
        quality = 1.0
        if self.query is not None:
            from .embeddings import phrase_vector

            v = phrase_vector(self.kv, word)
            cos = float(v @ self.query) if v is not None else 0.0
            detail["cosine"] = round(cos, 4)
            if cos >= self.min_cosine:
                support.append("embeddings")
            quality = min(1.0, max(0.0, (cos - 0.3) / 0.5)) ** 2
            freq_rank = self.kv.key_to_index.get(word.split()[-1])
            if freq_rank is not None:
                detail["freq_rank"] = freq_rank
                quality /= 1.0 + 0.1 * math.log2(1.0 + freq_rank / 5000.0)
        if " " in word:
            quality *= 0.25 if singular(word.split()[-1]) in self.terms else 0.5
        if not support:
            return None
        if support == ["embeddings"] and sense and self.lexnames and sense["lexname"] not in self.lexnames:
            return None  # only the word vectors vouch for it, and it is another kind of thing
        return support, quality, detail


def _variant(word: str, other: str) -> bool:
    """A spelling variant: same length and one letter apart ("organisation"), for words of 6+ letters."""
    return (
        word != other
        and len(word) == len(other) >= 6
        and sum(a != b for a, b in zip(word, other, strict=True)) == 1
    )
