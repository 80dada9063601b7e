"""The statistics behind the report's comparisons: A minus B over seeds (`Comparison`: Welch's test, ``|Δ| >
t·SE`` with ``SE = sqrt(s_a²/n_a + s_b²/n_b)`` and t the two-sided 95% quantile of Student's t at the
Welch-Satterthwaite degrees of freedom), with the seed SD pooled over the systems of a table where Bartlett's test
finds their variances alike (`PooledComparison`, `bartlett`), and over paired runs (`PairedComparison`: Figure
3's samplings, a paired t-test at ``n - 1`` degrees of freedom)."""

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


@dataclass(frozen=True)
class Pool:
    """The seed SD pooled over ``k`` groups of runs: ``sd² = Σ (n_i − 1) s_i² / Σ (n_i − 1)`` with ``df =
    Σ (n_i − 1)``; ``p`` is Bartlett's test of equal variances over the groups."""

    sd: float
    df: int
    k: int
    p: float


def pool(samples: list[list[float]]) -> Pool | None:
    """The pooled seed SD of ``samples`` (each >= 2 values); None where fewer than two samples or a sample
    has no spread (Bartlett's statistic is then undefined)."""
    if len(samples) < 2 or any(len(v) < 2 for v in samples):
        return None
    variances = [statistics.variance(v) for v in samples]
    if min(variances) <= 0:
        return None
    df = sum(len(v) - 1 for v in samples)
    pooled = sum((len(v) - 1) * s2 for v, s2 in zip(samples, variances, strict=True)) / df
    return Pool(math.sqrt(pooled), df, len(samples), bartlett(samples)[1])


def bartlett(samples: list[list[float]]) -> tuple[float, float]:
    """Bartlett's test that ``samples`` (each >= 2 values, each with spread) have one variance: (statistic,
    p-value of the chi-square with k − 1 degrees of freedom)."""
    k = len(samples)
    dfs = [len(v) - 1 for v in samples]
    variances = [statistics.variance(v) for v in samples]
    n = sum(dfs)
    pooled = sum(d * s2 for d, s2 in zip(dfs, variances, strict=True)) / n
    num = n * math.log(pooled) - sum(d * math.log(s2) for d, s2 in zip(dfs, variances, strict=True))
    den = 1 + (sum(1 / d for d in dfs) - 1 / n) / (3 * (k - 1))
    stat = num / den
    return stat, chi2_sf(stat, k - 1)


def chi2_sf(x: float, df: int) -> float:
    """P(X > x) for X chi-square with ``df`` degrees of freedom: the regularized upper incomplete gamma
    Q(df/2, x/2), by its series below a + 1 and its continued fraction above (Numerical Recipes, 6.2)."""
    if x <= 0:
        return 1.0
    a, z = df / 2, x / 2
    log_front = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1:  # P by the series, Q = 1 - P
        term = total = 1 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= z / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return max(0.0, 1 - total * math.exp(log_front))
    tiny = 1e-300  # Q by the continued fraction (modified Lentz)
    b = z + 1 - a
    c, d = 1 / tiny, 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        step = d * c
        h *= step
        if abs(step - 1) < 1e-15:
            break
    return math.exp(log_front) * h


@dataclass
class PooledComparison(Comparison):
    """A minus B over seeds with the seed SD pooled over the groups of their table (`Pool`): ``SE = sd ·
    sqrt(1/n_a + 1/n_b)`` at the pool's degrees of freedom. Sound where the systems' seed variances are one
    (Bartlett's test does not reject it); the report says so beside each such cell."""

    pooled: Pool | None = None

    @property
    def se(self) -> float | None:
        if len(self.a) < 2 or len(self.b) < 2 or self.pooled is None:
            return None
        return self.pooled.sd * math.sqrt(1 / len(self.a) + 1 / len(self.b))

    @property
    def df(self) -> float:
        return float(self.pooled.df) if self.pooled else math.inf

    def count(self) -> str:
        p = self.pooled
        pooled = f", seed SD pooled over {p.k} groups (df {p.df}, Bartlett p {p.p:.2f})" if p else ""
        return f"n={len(self.a)}/{len(self.b)}{pooled}"


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
