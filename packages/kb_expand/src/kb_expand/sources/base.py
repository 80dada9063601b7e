"""The source interface and the shared post-processing every source's candidates go through."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..scheme import LabelSpec
from ..text import acceptable, dedup_key, excluded_keys, normalize

if TYPE_CHECKING:  # pragma: no cover
    from ..web import HttpClient


@dataclass
class Candidate:
    word: str  # normalised candidate word ("police officer")
    score: float  # source-specific relatedness, higher is better
    evidence: dict = field(default_factory=dict)  # relation path / edge / co-occurrence count / cosine


@dataclass
class SourceContext:
    """What `kbx build` gives a source to configure itself from (`Source.from_context`)."""

    cfg: Any  # the build's options (build.BuildConfig: paths, URLs, flags)
    http: HttpClient  # the store-cached HTTP client of the build
    # computes (WordNet's "mainly a noun" test, None) or (None, why not): `kbx build` passes
    # sources.wordnet.noun_filter (given, not imported here: wordnet.py builds on this module)
    nouns: Callable[[], tuple[Callable[[str], bool] | None, str | None]] | None = None
    _nouns: tuple[Callable[[str], bool] | None, str | None] | None = None

    @property
    def conceptnet_dump(self) -> str | None:
        """The ConceptNet dump to read (--conceptnet-dump, else $KBX_CONCEPTNET_DUMP), None: the REST API."""
        return self.cfg.conceptnet_dump or os.environ.get("KBX_CONCEPTNET_DUMP") or None

    def noun_filter(self) -> tuple[Callable[[str], bool] | None, str | None]:
        """(WordNet's "mainly a noun" test, None) or (None, why WordNet is unavailable); computed once."""
        if self._nouns is None:
            self._nouns = self.nouns() if self.nouns else (None, "no noun filter given to this build")
        return self._nouns


class Source:
    """A knowledge source. Subclasses set `name`, implement `expand` and, when `kbx build` must pass them
    options, `from_context`; a source is offered by `kbx build --source` once listed in `sources.SOURCES`.

    prepare(labels) runs once before expansion (e.g. one streaming pass over a dump for all labels);
    params() and inputs() are recorded with the build (inputs: {name: sha256 or URL}).
    """

    name = "source"
    uses_http = False  # True: the build's parameters record its HTTP settings (timeouts, retries, offline)

    @classmethod
    def from_context(cls, ctx: SourceContext) -> Any:
        """This source configured for a `kbx build` (default: no options)."""
        return cls()

    def prepare(self, labels: Sequence[LabelSpec]) -> None:  # noqa: B027 - optional hook
        pass

    def expand(self, label: str, seeds: Sequence[str], k: int) -> list[Candidate]:
        """Ranked candidates (best first, at most k) for `label` queried through its seed terms."""
        raise NotImplementedError

    def params(self) -> dict:
        return {}

    def inputs(self) -> dict:
        return {}


def finalize(
    candidates: Iterable[Candidate],
    label: str,
    k: int,
    max_tokens: int = 2,
    keep: Callable[[str], bool] | None = None,
    exclude: Iterable[str] = (),
) -> list[Candidate]:
    """Normalise, filter (stop words, non-words, > max_tokens tokens, `keep`), drop the label and plural
    duplicates (first occurrence wins), sort by score, cut to k.

    Ties are broken by the word (then by the source's order, which every source keeps deterministic), so the
    result never depends on set or dict iteration order (PYTHONHASHSEED)."""
    banned = excluded_keys(label, exclude)
    best: dict[str, Candidate] = {}
    for c in sorted(candidates, key=lambda c: (-c.score, normalize(c.word))):  # stable within one word
        word = normalize(c.word)
        key = dedup_key(word)
        if key in banned or key in best or not acceptable(word, max_tokens):
            continue
        if keep is not None and not keep(word):
            continue
        best[key] = Candidate(word, float(c.score), c.evidence)
        if len(best) >= k:
            break
    return list(best.values())
