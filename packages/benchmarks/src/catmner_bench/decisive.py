"""The decisive experiment of issue 28 (docs/decisive-experiment.md): does CAT-MNER's refinement bring the label
words' knowledge to the words, or does its gate only mute a caption that hurts?

Five arms, paired by sampling and seed on Twitter-2017 at 100 and 200 training tweets (8 samplings each): TEXT
(lm-span), MM (mm), CAT-MNER with its textual label words (cat-textual), CAT-MNER with as many random English
words drawn at the label words' frequencies (cat-random) and MM whose caption path carries no caption
(mm-empty). The random words are `random_words.py`'s; this module owns the paired comparisons of the report
(`paired_tests`, `verdict`, `decisive_section`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from catmner_bench.catalog import system_label
from catmner_bench.records import BenchRecord

ARMS: tuple[str, ...] = ("lm-span", "mm", "cat-textual", "cat-random", "mm-empty")
# (a, b, what a > b would mean): the paired differences the verdict reads, over the 16 (alpha, sampling) pairs
CONTRASTS: tuple[tuple[str, str, str], ...] = (
    ("cat-textual", "cat-random", "the label words' knowledge helps (beyond any words)"),
    ("cat-random", "mm", "the refinement machinery helps without knowledge (the gate mutes the caption)"),
    ("cat-textual", "mm", "CAT-MNER beats its unrefined model"),
    ("mm", "mm-empty", "the caption's content helps (below: it hurts)"),
    ("mm", "lm-span", "the image (caption) helps over text alone"),
    ("mm-empty", "lm-span", "the caption machinery alone (no content) costs or gains"),
)


# ------------------------------------------------------------------------------------------------ analysis
def paired_t(diffs: Sequence[float]) -> dict[str, Any]:
    """Paired t over differences: mean, standard error, t, two-sided p (Student's t, n - 1 degrees)."""
    n = len(diffs)
    if n < 2:
        return {"n": n, "mean": diffs[0] if diffs else None, "se": None, "t": None, "p": None}
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs)
    se = sd / math.sqrt(n)
    if se == 0:
        return {"n": n, "mean": mean, "se": 0.0, "t": None, "p": 0.0 if mean else 1.0}
    t = mean / se
    return {"n": n, "mean": mean, "se": se, "t": t, "p": _t_two_sided(t, n - 1)}


def _t_two_sided(t: float, df: int) -> float:
    """Two-sided p of Student's t with ``df`` degrees: the regularised incomplete beta I_x(df/2, 1/2)."""
    x = df / (df + t * t)
    return _betainc(df / 2, 0.5, x)


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (Numerical Recipes' betacf)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x)
    )
    if x > (a + 1) / (a + b + 2):
        return 1.0 - _betainc(b, a, 1 - x)
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-12:
            break
    return front * f / a


def _score(rec: BenchRecord, split: str) -> float | None:
    f1 = ((rec.metrics.get(split) or {}).get("conlleval") or {}).get("f1")
    return None if f1 is None else float(f1)


def paired_tests(
    records: Sequence[BenchRecord], split: str = "test", alpha: int | None = None
) -> dict[str, Any]:
    """The contrasts of `CONTRASTS` over decisive records (those of training size ``alpha`` where given): per
    pair of arms, the F1 differences paired by (dataset, alpha, sampling, seed), and their paired t. Pairs where
    either arm has no record are left out (and counted)."""
    scores: dict[tuple[str, tuple], float] = {}
    for rec in records:
        if alpha is not None and rec.alpha != alpha:
            continue
        spec = rec.spec
        sample = spec.sample or {}
        f1 = _score(rec, split)
        if f1 is not None:
            key = (spec.train_dataset, sample.get("alpha"), sample.get("index"), spec.seed)
            scores[(spec.system, key)] = f1
    keys = sorted({k for _, k in scores}, key=str)
    out = {}
    for a, b, meaning in CONTRASTS:
        both = [k for k in keys if (a, k) in scores and (b, k) in scores]
        diffs = [scores[(a, k)] - scores[(b, k)] for k in both]
        out[f"{a} - {b}"] = {**paired_t(diffs), "meaning": meaning, "missing": len(keys) - len(both)}
    return out


def verdict(tests: dict[str, Any], alpha: float = 0.05, gaps: dict[int, float] | None = None) -> str:
    """The reading docs/decisive-experiment.md fixes in advance, from the paired tests; ``gaps``: MM − TEXT at
    each training size (H4 asks for more than −1.0 at every size; without them, over all pairs)."""

    def sign(name: str) -> int:  # +1 / -1 significantly, 0 not
        t = tests.get(name) or {}
        if t.get("p") is None or t.get("mean") is None or t["p"] >= alpha:
            return 0
        return 1 if t["mean"] > 0 else -1

    first = tests.get("cat-textual - cat-random") or {}
    if first.get("p") is None:  # fewer than 2 pairs: no test, so no reading either
        return (
            f"not tested yet: {int(first.get('n') or 0)} pair(s) of the design's 16 (a paired t needs at least "
            "2); the means above are a first look, not a result"
        )
    knowledge, machinery = sign("cat-textual - cat-random"), sign("cat-random - mm")
    content = sign("mm - mm-empty")
    parts = []
    if knowledge > 0:
        parts.append("real words beat random words: the label words' knowledge helps")
    elif knowledge < 0:
        parts.append("random words beat the real ones: the knowledge does not help")
    elif machinery > 0:
        parts.append(
            "real = random words (no difference detected) > MM: the refinement helps without knowledge (it mutes "
            "the caption)"
        )
    elif machinery < 0:  # not a row of the design's table (docs/decisive-experiment.md): said as measured
        parts.append(
            "no difference detected between real and random words, and CAT-MNER with random words is below MM: "
            "the refinement's machinery costs F1 whatever its words (a case the design's table did not list)"
        )
    else:
        parts.append(
            "no difference detected between real and random words, and neither beats MM: no effect of the "
            "refinement shown (read with the pairs' count: absence of evidence is not evidence of absence)"
        )
    if (tests.get("mm - mm-empty") or {}).get("p") is None:
        parts.append("MM vs empty-caption MM: not tested yet")
    elif content < 0:
        parts.append("MM below empty-caption MM: the caption's content hurts")
    elif content > 0:
        parts.append("MM above empty-caption MM: the caption's content helps")
    else:
        parts.append("no difference detected between MM and empty-caption MM")
    gap = (tests.get("mm - lm-span") or {}).get("mean")
    if gaps:  # H4: the mended caption path no longer costs MM more than 1 F1 against TEXT, at every size
        low = [a for a, g in sorted(gaps.items()) if g <= -1.0]
        each = ", ".join(f"{g:+.2f} at {a} tweets" for a, g in sorted(gaps.items()))
        side = "above −1.0 at each" if not low else f"at or below −1.0 at {', '.join(map(str, low))} tweets"
        parts.append(f"MM − TEXT {each}: {side}")
    elif gap is not None:
        side = "above" if gap > -1.0 else "at or below"
        parts.append(f"MM − TEXT {gap:+.2f} F1, {side} −1.0")
    n = int(first.get("n") or 0)
    interim = (
        f"interim, {n} of the design's 16 pairs (the reading is the design's, the power is not): "
        if n < 16
        else ""
    )
    return interim + "; ".join(parts)


def _alpha_cell(t: dict[str, Any]) -> str:
    """A contrast at one training size: ``+0.24 (8, p 0.52)``; '–' without pairs."""
    if not t["n"]:
        return "–"
    p = f", p {t['p']:.2g}" if t["p"] is not None else ""
    return f"{t['mean']:+.2f} ({t['n']}{p})"


VITALS_SHOWN = (
    "qk_i2t",
    "gs_i2t",
    "gate_i2t",
    "text_visual_mass",
    "caption_first_share",
    "saliency_entropy_norm",
)


def decisive_section(records: Sequence[BenchRecord]) -> str:
    """The report section: each arm's mean test F1 per alpha, the paired contrasts over all (alpha, sampling)
    pairs, the verdict, and the arms' mean vital signs (layers averaged, runs averaged)."""
    arms = [a for a in ARMS if any(r.spec.system == a for r in records)]
    arms += sorted({r.spec.system for r in records} - set(arms))
    alphas = sorted({r.alpha for r in records} - {None})
    lines = [
        "## The decisive experiment",
        "",
        "Arms paired by sampling and seed (docs/decisive-experiment.md). Test F1 (conlleval), mean ± std over "
        "the samplings, then the paired differences over every (alpha, sampling) pair.",
        "",
        "| arm | " + " | ".join(f"α = {a}" for a in alphas) + " |",
        "|---|" + "---|" * len(alphas),
    ]
    for arm in arms:
        cells = []
        for a in alphas:
            f1 = [
                s
                for r in records
                if r.spec.system == arm and r.alpha == a
                if (s := _score(r, "test")) is not None
            ]
            sd = f" ± {statistics.stdev(f1):.2f}" if len(f1) > 1 else ""
            cells.append(f"{statistics.fmean(f1):.2f}{sd} (n={len(f1)})" if f1 else "–")
        lines.append(f"| {system_label(arm)} | " + " | ".join(cells) + " |")
    tests = paired_tests(records)
    by_alpha = {a: paired_tests(records, alpha=a) for a in alphas}
    per = [f"α = {a}: Δ (pairs, p)" for a in alphas]
    lines += [
        "",
        "| contrast | mean Δ F1 | pairs | t | p | "
        + " | ".join(per)
        + (" | " if per else "")
        + "a > b would mean |",
        "|---|---|---|---|---|" + "---|" * len(per) + "---|",
    ]
    for name, t in tests.items():
        if not t["n"]:
            continue
        mean = f"{t['mean']:+.2f}" if t["mean"] is not None else "–"
        tt = f"{t['t']:.2f}" if t["t"] is not None else "–"
        p = f"{t['p']:.3g}" if t["p"] is not None else "–"
        cells = [_alpha_cell(by_alpha[a][name]) for a in alphas]
        lines.append(
            f"| {name} | {mean} | {t['n']} | {tt} | {p} | "
            + "".join(c + " | " for c in cells)
            + f"{t['meaning']} |"
        )
    gaps = {a: g for a in alphas if (g := by_alpha[a]["mm - lm-span"]["mean"]) is not None}
    lines += ["", f"**Verdict** (paired t, p < 0.05): {verdict(tests, gaps=gaps)}.", ""]
    vit = [(r.spec.system, r.extra.get("vitals")) for r in records]
    vit = [(s, v["mean"]) for s, v in vit if v and v.get("mean")]
    if vit:
        lines += [
            "Vital signs of the kept models (catmner_model.vitals; means over layers, then runs):",
            "",
            "| arm | " + " | ".join(VITALS_SHOWN) + " |",
            "|---|" + "---|" * len(VITALS_SHOWN),
        ]
        for arm in arms:
            rows = [m for s, m in vit if s == arm]
            if not rows:
                continue
            cells = []
            for name in VITALS_SHOWN:
                got = [m[name] for m in rows if m.get(name) is not None]
                cells.append(f"{statistics.fmean(got):.3g}" if got else "–")
            lines.append(f"| {system_label(arm)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
