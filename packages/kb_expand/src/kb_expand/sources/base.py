"""The source interface and the shared post-processing every source's candidates go through."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..scheme import LabelSpec
from ..text import acceptable, dedup_key, excluded_keys, normalize


@dataclass
class Candidate:
    word: str  # normalised candidate word ("police officer")
    score: float  # source-specific relatedness, higher is better
    evidence: dict = field(default_factory=dict)  # relation path / edge / co-occurrence count / cosine


class Source:
    """A knowledge source. Subclasses set `name` and implement `expand`.

    prepare(labels) runs once before expansion (e.g. one streaming pass over a dump for all labels);
    params() and inputs() are recorded with the build (inputs: {name: sha256 or URL}).
    """

    name = "source"

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
