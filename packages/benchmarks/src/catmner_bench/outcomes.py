"""What a difference measured here says about one of the paper's effects: one of three outcomes.

A claim of the paper is a difference between two systems (e.g. CAT-MNER − TEXT, +0.65 F1 on Twitter-2015 in
its Table 1). Ours comes with a 95% confidence interval ``[lo, hi]``. The outcome:

- **consistent with the paper**: the paper's effect lies inside our interval and ours is in its direction beyond
  the noise (the interval excludes 0 on the paper's side); or the interval lies wholly beyond the paper's effect
  in its direction (a larger effect than the paper's is still the paper's claim);
- **contradicts the paper**: the interval excludes the paper's effect (and is not wholly beyond it);
- **inconclusive**: neither; then the interval and the smallest effect these runs could detect (80% power,
  two-sided 5%) are what the reader needs, and both are printed.

A claim of closeness ("CRF and span achieve close results") is an equivalence claim instead: consistent when
the interval lies within ``±tol``, contradicted when it lies wholly outside it, inconclusive otherwise. A claim
whose effect the paper gives no number for (Figure 3 is a plot) is judged by its direction alone: the paper's
effect is then "> 0", consistent when the interval lies above 0, contradicted when it lies below 0.

Not significant is not "does not hold": with 3 seeds a side the smallest detectable difference is often larger
than the paper's effect, and the outcome is then inconclusive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

CONSISTENT = "consistent with the paper"
CONTRADICTS = "contradicts the paper"
INCONCLUSIVE = "inconclusive"

# two-sided 95% (0.975) and one-sided 80% quantiles of Student's t by degrees of freedom; between table points,
# linear in 1/df
_T = (
    (1, 12.706, 1.376),
    (2, 4.303, 1.061),
    (3, 3.182, 0.978),
    (4, 2.776, 0.941),
    (5, 2.571, 0.920),
    (6, 2.447, 0.906),
    (7, 2.365, 0.896),
    (8, 2.306, 0.889),
    (9, 2.262, 0.883),
    (10, 2.228, 0.879),
    (12, 2.179, 0.873),
    (15, 2.131, 0.866),
    (20, 2.086, 0.860),
    (25, 2.060, 0.856),
    (30, 2.042, 0.854),
    (40, 2.021, 0.851),
    (60, 2.000, 0.848),
    (120, 1.980, 0.845),
    (math.inf, 1.960, 0.842),
)


def _quantile(df: float, column: int) -> float:
    df = max(1.0, df)
    lo, hi = next(p for p in zip(_T, _T[1:], strict=False) if p[0][0] <= df <= p[1][0])
    w = (1 / lo[0] - 1 / df) / (1 / lo[0] - 1 / hi[0])  # 1 / inf is 0.0
    return lo[column] + w * (hi[column] - lo[column])


def t_critical(df: float) -> float:
    """The two-sided 95% critical value of Student's t at ``df`` degrees of freedom (df < 1 counts as 1)."""
    return _quantile(df, 1)


def t_power80(df: float) -> float:
    """The one-sided 80% quantile of Student's t: the power term of the smallest detectable effect."""
    return _quantile(df, 2)


@dataclass(frozen=True)
class Estimate:
    """Our difference A − B: its value, standard error and degrees of freedom (se None: one run a side)."""

    delta: float
    se: float | None
    df: float = math.inf

    @property
    def interval(self) -> tuple[float, float] | None:
        if self.se is None:
            return None
        half = t_critical(self.df) * self.se
        return self.delta - half, self.delta + half

    @property
    def detectable(self) -> float | None:
        """The smallest true difference these runs detect with 80% power at the 5% level (two-sided)."""
        if self.se is None:
            return None
        return (t_critical(self.df) + t_power80(self.df)) * self.se


@dataclass(frozen=True)
class Outcome:
    """One claim on one dataset: the outcome, our estimate and the paper's effect (None: a direction only)."""

    outcome: str
    estimate: Estimate
    paper: float | None
    why: str = ""

    def cell(self) -> str:
        """``+0.34 [−0.52, +1.20] vs paper +0.65: inconclusive (detectable ≥ 1.41)``."""
        e = self.estimate
        paper = "paper > 0" if self.paper is None else f"paper {self.paper:+.2f}"
        iv = e.interval
        if iv is None:
            return f"{e.delta:+.2f} (one run a side: no interval) vs {paper}: {self.outcome}"
        out = f"{e.delta:+.2f} [{iv[0]:+.2f}, {iv[1]:+.2f}] vs {paper}: {self.outcome}"
        if self.outcome == INCONCLUSIVE:
            out += f" (detectable ≥ {e.detectable:.2f})"
        if self.why:
            out += f" ({self.why})"
        return out


def judge_effect(estimate: Estimate, paper: float | None) -> Outcome:
    """The outcome for a directional claim: the paper says A − B = ``paper`` (> 0 where None)."""
    iv = estimate.interval
    if iv is None:
        return Outcome(INCONCLUSIVE, estimate, paper, "one run a side")
    lo, hi = iv
    sign = 1.0 if paper is None or paper >= 0 else -1.0
    lo_d, hi_d = sorted((sign * lo, sign * hi))  # the interval in the paper's direction
    if paper is None:
        if lo_d > 0:
            return Outcome(CONSISTENT, estimate, paper)
        if hi_d < 0:
            return Outcome(CONTRADICTS, estimate, paper, "the opposite direction")
        return Outcome(INCONCLUSIVE, estimate, paper)
    target = abs(paper)
    if lo_d <= target <= hi_d:
        if lo_d > 0:
            return Outcome(CONSISTENT, estimate, paper)
        return Outcome(INCONCLUSIVE, estimate, paper)
    if lo_d > target:
        return Outcome(CONSISTENT, estimate, paper, "larger than the paper's")
    return Outcome(
        CONTRADICTS, estimate, paper, "the opposite direction" if hi_d < 0 else "smaller than the paper's"
    )


def judge_close(estimate: Estimate, paper: float | None, tol: float) -> Outcome:
    """The outcome for a closeness claim (|A − B| ≤ ``tol``), the paper's own difference shown beside it."""
    iv = estimate.interval
    if iv is None:
        return Outcome(INCONCLUSIVE, estimate, paper, "one run a side")
    lo, hi = iv
    if -tol <= lo and hi <= tol:
        return Outcome(CONSISTENT, estimate, paper, f"within ±{tol:g}")
    if lo > tol or hi < -tol:
        return Outcome(CONTRADICTS, estimate, paper, f"beyond ±{tol:g}")
    return Outcome(INCONCLUSIVE, estimate, paper, f"close = within ±{tol:g}")


def overall(outcomes: list[Outcome]) -> str:
    """A claim over several datasets: contradicted where any dataset contradicts it, consistent where every one
    is consistent, inconclusive otherwise."""
    kinds = {o.outcome for o in outcomes}
    if not outcomes:
        return INCONCLUSIVE
    if CONTRADICTS in kinds:
        return CONTRADICTS
    if kinds == {CONSISTENT}:
        return CONSISTENT
    return INCONCLUSIVE
