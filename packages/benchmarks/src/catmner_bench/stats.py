"""The statistics behind the report's comparisons: A minus B over seeds (`Comparison`: Welch's test, ``|Δ| >
t·SE`` with ``SE = sqrt(s_a²/n_a + s_b²/n_b)`` and t the two-sided 95% quantile of Student's t at the
Welch-Satterthwaite degrees of freedom) and over paired runs (`PairedComparison`: Figure 3's samplings, a paired
t-test at ``n - 1`` degrees of freedom)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from catmner_bench.outcomes import t_critical


@dataclass
class Comparison:
    """A minus B over seeds."""

    a: list[float]
    b: list[float]
    note: str = ""  # which records, when not those of the current code (e.g. "saliency paper")
    alike: bool = True  # False: the two were not trained alike (the note says how): no verdict rests on it

    @property
    def tested(self) -> bool:
        """Whether a verdict may rest on this comparison: trained alike, and seeds enough for the test."""
        return self.alike and self.se is not None

    @property
    def delta(self) -> float:
        return statistics.fmean(self.a) - statistics.fmean(self.b)

    @property
    def se(self) -> float | None:
        if len(self.a) < 2 or len(self.b) < 2:
            return None
        return math.sqrt(
            statistics.variance(self.a) / len(self.a) + statistics.variance(self.b) / len(self.b)
        )

    @property
    def df(self) -> float:
        """Welch-Satterthwaite degrees of freedom (both sides have >= 2 seeds)."""
        va, vb = statistics.variance(self.a) / len(self.a), statistics.variance(self.b) / len(self.b)
        if va + vb == 0:
            return math.inf
        return (va + vb) ** 2 / (va**2 / (len(self.a) - 1) + vb**2 / (len(self.b) - 1))

    @property
    def significant(self) -> bool | None:
        """True/False when both sides have >= 2 seeds (|Δ| > t·SE at 95%, two-sided); None otherwise."""
        se = self.se
        if se is None:
            return None
        return abs(self.delta) > t_critical(self.df) * se if se > 0 else self.delta != 0

    # how the report words this kind of comparison (PairedComparison says "sampling")
    ONE = "1 seed"
    UNTESTED = ", one seed: not tested"
    SPREAD = "within the seed spread"

    def count(self) -> str:
        return f"n={len(self.a)}/{len(self.b)}"

    def short(self) -> str:
        """A table cell: ``+0.08 ± 0.21 (ns)``, ``+1.20 ± 0.30 (sig.)``, or ``+0.30 (1 seed)`` / ``+0.30 (not
        tested; not trained alike: …)`` when not testable."""
        se, note = self.se, (f"; {self.note}" if self.note else "")
        if not self.alike:
            return f"{self.delta:+.2f} (not tested{note})"
        if se is None:
            return f"{self.delta:+.2f} ({self.ONE}{note})"
        return f"{self.delta:+.2f} ± {se:.2f} ({'sig.' if self.significant else 'ns'}{note})"

    def describe(self) -> str:
        se = self.se
        n = self.count() + (f", {self.note}" if self.note else "")
        if not self.alike:
            return f"Δ {self.delta:+.2f} ({n}: not tested)"
        if se is None:
            return f"Δ {self.delta:+.2f} ({n}{self.UNTESTED})"
        return (
            f"Δ {self.delta:+.2f} ± {se:.2f} SE ({n}, {'significant' if self.significant else self.SPREAD})"
        )


@dataclass
class PairedComparison(Comparison):
    """A minus B over runs that share their training data (Figure 3: the same sampling of alpha tweets and the
    same seed), ``a[i]`` paired with ``b[i]``: the SE is that of the mean per-pair difference, sd(d)/sqrt(n),
    so the spread between samplings, which both systems share, does not hide a difference."""

    @property
    def se(self) -> float | None:
        if len(self.a) < 2:
            return None
        d = [x - y for x, y in zip(self.a, self.b, strict=True)]
        return statistics.stdev(d) / math.sqrt(len(d))

    @property
    def df(self) -> float:
        return len(self.a) - 1

    ONE = "1 sampling"
    UNTESTED = ": not tested"
    SPREAD = "within the spread"

    groups: tuple[Any, Any] | None = None  # the two groups paired (`paired`), for per-type comparisons

    def count(self) -> str:
        return f"paired over {len(self.a)} samplings"


def by_sampling(group: Any, key: str = "f1") -> dict[tuple[int, Any], float]:
    """A Figure-3 group's test values by (sampling index, training seed): the record's ``spec.sample.index``
    and ``spec.seed``, so that a sampling run again with another seed is a pair of its own."""
    values = group.values(key)
    records = getattr(group, "records", None)
    if records is None:  # a stand-in without records: runs in sampling order
        return {(i, None): v for i, v in enumerate(values)}
    out: dict[tuple[int, Any], float] = {}
    for r, v in zip(records, values, strict=True):
        k = (int(r.spec.sample["index"]), r.spec.seed)
        if k in out:
            from catmner_bench.errors import BenchError

            raise BenchError(f"two Figure 3 records of {group.system} share sampling {k[0]} and seed {k[1]}")
        out[k] = v
    return out
