"""The paper's conclusions (Sections 4.2-4.4), each checked against our run records.

Each `Claim` names the comparison that tests it; `verdicts` turns the report's record groups into one line per
claim: "holds here", "does not hold here" or "cannot be tested here" (and why), with the numbers. Differences
between two of our systems are tested over seeds: significant when ``|Δ| > 2 SE`` with ``SE = sqrt(s_a²/n_a +
s_b²/n_b)`` (a two-sided Welch-style test at about 95%); with one seed per system a difference is reported
but not called significant. Nothing here is tuned to a result: the rules are fixed before the records exist.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

DATASETS = ("twitter2015", "twitter2017")
LABEL = {"twitter2015": "Twitter-2015", "twitter2017": "Twitter-2017"}
RARE_TYPES = {"twitter2015": ("ORG", "MISC"), "twitter2017": ("MISC",)}  # the paper's "less frequent" types
FREQUENT_TYPES = ("PER", "LOC")


@dataclass
class Comparison:
    """A minus B over seeds."""

    a: list[float]
    b: list[float]
    note: str = ""  # which records, when not those of the current code (e.g. "saliency paper")

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
    def significant(self) -> bool | None:
        """True/False when both sides have >= 2 seeds; None otherwise (not testable)."""
        se = self.se
        if se is None:
            return None
        return abs(self.delta) > 2 * se if se > 0 else self.delta != 0

    def short(self) -> str:
        """A table cell: ``+0.08 ± 0.21 (ns)``, ``+1.20 ± 0.30 (sig.)``, or ``+0.30 (1 seed)`` when not testable."""
        se = self.se
        if se is None:
            return f"{self.delta:+.2f} (1 seed)"
        return f"{self.delta:+.2f} ± {se:.2f} ({'sig.' if self.significant else 'ns'})"

    def describe(self) -> str:
        se = self.se
        n = f"n={len(self.a)}/{len(self.b)}" + (f", {self.note}" if self.note else "")
        if se is None:
            return f"Δ {self.delta:+.2f} ({n}, one seed: not tested)"
        return f"Δ {self.delta:+.2f} ± {se:.2f} SE ({n}, {'significant' if self.significant else 'within the seed spread'})"


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

    def short(self) -> str:
        se = self.se
        if se is None:
            return f"{self.delta:+.2f} (1 sampling)"
        return f"{self.delta:+.2f} ± {se:.2f} ({'sig.' if self.significant else 'ns'})"

    def describe(self) -> str:
        se = self.se
        n = f"paired over {len(self.a)} samplings" + (f", {self.note}" if self.note else "")
        if se is None:
            return f"Δ {self.delta:+.2f} ({n}: not tested)"
        return f"Δ {self.delta:+.2f} ± {se:.2f} SE ({n}, {'significant' if self.significant else 'within the spread'})"


def by_sampling(group: Any, key: str = "f1") -> dict[int, float]:
    """A Figure-3 group's test values by sampling index (the record's ``spec.sample.index``)."""
    values = group.values(key)
    records = getattr(group, "records", None)
    if records is None:  # a stand-in without records: runs in sampling order
        return dict(enumerate(values))
    return {int(r["spec"]["sample"]["index"]): v for r, v in zip(records, values, strict=True)}


def paired(ga: Any, gb: Any, key: str = "f1") -> PairedComparison | None:
    """``ga`` minus ``gb`` over the samplings both have (None: none in common)."""
    va, vb = by_sampling(ga, key), by_sampling(gb, key)
    common = sorted(set(va) & set(vb))
    if not common:
        return None
    return PairedComparison([va[i] for i in common], [vb[i] for i in common])


def _config(group: Any) -> dict[str, Any]:
    return getattr(group, "config", None) or {}


def is_current(group: Any) -> bool:
    """Whether a group's config is what its profile resolves the system to today (same data sizes, epochs and
    visual source as the group's): the model the code on main trains, e.g. the current saliency default."""
    import dataclasses

    from catmner_bench.profiles import PROFILES
    from catmner_bench.runner import SYSTEMS, system_config

    cfg = _config(group)
    if group.system not in SYSTEMS or cfg.get("profile") not in PROFILES:
        return False
    profile = dataclasses.replace(
        PROFILES[cfg["profile"]], n_train=cfg.get("n_train"), n_eval=cfg.get("n_eval")
    )
    visual = cfg.get("visual") if cfg.get("visual") not in (None, "none") else None
    return system_config(group.system, profile, epochs=cfg.get("epochs"), visual=visual) == cfg


def candidates(
    groups: Sequence[Any], system: str, train: str, test: str | None = None, alpha: Any = None
) -> list[Any]:
    """The groups of ``system`` trained on ``train`` and tested on ``test`` (default: ``train``)."""
    test = test or train
    return [
        g
        for g in groups
        if g.system == system and g.train_dataset == train and g.test_dataset == test and g.alpha == alpha
    ]


def _pick(groups: Sequence[Any], system: str, train: str, test: str | None = None, alpha: Any = None) -> Any:
    """The group of ``system`` on train/test. Where several configs exist (e.g. records from before a default
    changed), the one the current code trains (`is_current`), then the one with most runs, then the newest."""
    cands = candidates(groups, system, train, test, alpha)

    def newest(g: Any) -> str:
        return max((str(r.get("created", "")) for r in getattr(g, "records", [])), default="")

    return max(cands, key=lambda g: (is_current(g), g.n, newest(g))) if cands else None


# fields two systems may differ in by definition (what the system is); the rest must match to compare them
_SYSTEM_FIELDS = {"variant", "labels", "knowledge", "model_overrides", "image_encoder", "kind"}


def differences(ga: Any, gb: Any) -> list[str]:
    """How two groups were not trained alike (e.g. "epochs 10 vs 3"): the fields both configs have, other than
    what makes them different systems; the visual source where both see one; the saliency scale where both
    refine with label words. Empty: comparable."""
    from catmner_bench.runner import saliency_of

    ca, cb = _config(ga), _config(gb)
    shared = sorted(set(ca) & set(cb) - _SYSTEM_FIELDS - {"visual", "saliency_scale"})
    out = [f"{k} {ca[k]} vs {cb[k]}" for k in shared if ca[k] != cb[k]]
    va, vb = ca.get("visual"), cb.get("visual")
    if va not in (None, "none") and vb not in (None, "none") and va != vb:
        out.append(f"visual {va} vs {vb}")
    sa, sb = saliency_of(ca), saliency_of(cb)
    if sa and sb and sa != sb:
        out.append(f"saliency {sa} vs {sb}")
    return out


def comparable(ga: Any, gb: Any) -> bool:
    """Whether two groups differ only in what makes them different systems (`differences` is empty)."""
    return not differences(ga, gb)


def _rank(ga: Any, gb: Any) -> tuple:
    """Which pair of groups to compare: trained alike first, then both current, then ``ga`` current, then
    most runs."""
    return (comparable(ga, gb), is_current(ga) and is_current(gb), is_current(ga), min(ga.n, gb.n))


def counterpart(group: Any, groups: Sequence[Any], system: str) -> Any:
    """The group of ``system`` on ``group``'s datasets to compare it with (best by `_rank`; None: none)."""
    cands = candidates(groups, system, group.train_dataset, group.test_dataset, group.alpha)
    return max(cands, key=lambda b: _rank(group, b)) if cands else None


def _pair(groups, a: str, b: str, ds: str, test: str | None = None, alpha: Any = None) -> tuple[Any, Any]:
    """The groups of ``a`` and ``b`` to compare (best by `_rank`). (None, None) when either has no group."""
    pairs = [
        (x, y) for x in candidates(groups, a, ds, test, alpha) for y in candidates(groups, b, ds, test, alpha)
    ]
    return max(pairs, key=lambda p: _rank(*p)) if pairs else (None, None)


def _compare(groups, a: str, b: str, ds: str, key: str = "f1", test: str | None = None) -> Comparison | None:
    from catmner_bench.runner import saliency_of

    ga, gb = _pair(groups, a, b, ds, test)
    if ga is None or gb is None:
        return None
    notes = []
    if not (is_current(ga) and is_current(gb)) and _config(ga):
        sal = saliency_of(_config(ga)) or saliency_of(_config(gb))
        notes.append("older records" + (f": saliency {sal}" if sal else ""))
    if diff := differences(ga, gb):
        notes.append("not trained alike: " + ", ".join(diff))
    return Comparison(ga.values(key), gb.values(key), "; ".join(notes))


def _missing(groups, systems: Sequence[str], datasets=DATASETS, test_of=None) -> list[str]:
    out = []
    for ds in datasets:
        for s in systems:
            if _pick(groups, s, ds, test_of(ds) if test_of else None) is None:
                out.append(f"{s} on {LABEL[ds]}")
    return out


def _available(groups, systems: Sequence[str], test_of=None) -> tuple[list[str], str]:
    """Datasets on which every system has records, and a note naming the datasets left out."""
    have = [ds for ds in DATASETS if not _missing(groups, systems, (ds,), test_of)]
    left = [LABEL[ds] for ds in DATASETS if ds not in have]
    return have, (f" ({', '.join(left)}: not run)" if left and have else "")


def _better(groups, a: str, b: str, what: str, test_of=None) -> tuple[str, str]:
    """'a beats b (significantly)' on every dataset that has records of both."""
    have, note = _available(groups, (a, b), test_of)
    if not have:
        return (
            "cannot be tested here",
            f"no records for {', '.join(_missing(groups, (a, b), test_of=test_of))}",
        )
    parts, holds = [], True
    for ds in have:
        c = _compare(groups, a, b, ds, test=test_of(ds) if test_of else None)
        where = f"{LABEL[ds]} → {LABEL[test_of(ds)]}" if test_of else LABEL[ds]
        parts.append(f"{where} {c.describe()}")
        holds = holds and c.delta > 0 and c.significant is True
    return ("holds here" if holds else "does not hold here"), f"{what}: " + "; ".join(parts) + note


def _close(groups, a: str, b: str, tol: float = 1.0) -> tuple[str, str]:
    have, note = _available(groups, (a, b))
    if not have:
        return "cannot be tested here", f"no records for {', '.join(_missing(groups, (a, b)))}"
    cs = {ds: _compare(groups, a, b, ds) for ds in have}
    holds = all(abs(c.delta) <= tol for c in cs.values())
    return ("holds here" if holds else "does not hold here"), "; ".join(
        f"{LABEL[ds]} {c.describe()} (close = |Δ| ≤ {tol:g})" for ds, c in cs.items()
    ) + note


def _not_consistently_better(groups, a: str, b: str) -> tuple[str, str]:
    have, note = _available(groups, (a, b))
    if not have:
        return "cannot be tested here", f"no records for {', '.join(_missing(groups, (a, b)))}"
    cs = {ds: _compare(groups, a, b, ds) for ds in have}
    consistent = all(c.delta > 0 and c.significant is True for c in cs.values())
    return ("does not hold here" if consistent else "holds here"), "; ".join(
        f"{LABEL[ds]} {c.describe()}" for ds, c in cs.items()
    ) + note


def _rare_types_gain_more(groups, a: str, b: str) -> tuple[str, str]:
    have, note = _available(groups, (a, b))
    if not have:
        return "cannot be tested here", f"no records for {', '.join(_missing(groups, (a, b)))}"
    parts, holds = [], True
    for ds in have:
        rare = statistics.fmean(_compare(groups, a, b, ds, t).delta for t in RARE_TYPES[ds])
        freq = statistics.fmean(_compare(groups, a, b, ds, t).delta for t in FREQUENT_TYPES)
        parts.append(
            f"{LABEL[ds]} mean Δ F1 on {'/'.join(RARE_TYPES[ds])} {rare:+.2f} vs PER/LOC {freq:+.2f}"
        )
        holds = holds and rare > freq and rare > 0
    return ("holds here" if holds else "does not hold here"), "; ".join(parts) + note


def _fig3_deltas(
    groups, a: str, b: str, key: str = "f1"
) -> tuple[dict[str, dict[int, PairedComparison]], str]:
    """Per dataset, ``a`` − ``b`` at each alpha where both have Figure-3 records, paired by sampling; and a note
    naming the datasets without them."""
    out: dict[str, dict[int, PairedComparison]] = {}
    for ds in DATASETS:
        alphas = sorted({g.alpha for g in groups if g.alpha is not None and g.train_dataset == ds})
        per = {}
        for al in alphas:
            ga, gb = _pair(groups, a, b, ds, alpha=al)
            if ga is not None and gb is not None and (c := paired(ga, gb, key)) is not None:
                per[al] = c
        if per:
            out[ds] = per
    left = [LABEL[ds] for ds in DATASETS if ds not in out]
    return out, (f" ({', '.join(left)}: not run)" if left and out else "")


def _data_efficiency(groups, a: str, b: str) -> tuple[str, str]:
    """Holds where, on every dataset with records, ``a`` beats ``b`` significantly (paired over samplings) at
    the smallest alpha, and the gain at the largest alpha is smaller than at the smallest."""
    deltas, note = _fig3_deltas(groups, a, b)
    if not deltas:
        return "cannot be tested here", f"no Figure 3 records of both {a} and {b} (catmner-bench run fig3)"
    parts, holds, tested = [], True, False
    for ds, per in deltas.items():
        alphas = sorted(per)
        first, last = per[alphas[0]], per[alphas[-1]]
        parts.append(
            f"{LABEL[ds]} alpha={alphas[0]}: {first.describe()}; Δ by alpha "
            + ", ".join(f"{al}: {per[al].delta:+.2f}" for al in alphas)
            + ("" if len(alphas) > 1 else " (one alpha: the trend is not tested)")
        )
        if len(alphas) > 1:
            tested = True
            holds = holds and first.delta > 0 and first.significant is True and last.delta < first.delta
    if not tested:
        return "cannot be tested here", "; ".join(parts) + note
    return ("holds here" if holds else "does not hold here"), "; ".join(parts) + note


# the types Section 4.3 names for Figure 3 ("less frequent entity types, e.g. ORG in Twitter-2015 and LOC,
# MISC in Twitter-2017"), compared with the dataset's other types
FIG3_RARE_TYPES = {"twitter2015": ("ORG",), "twitter2017": ("LOC", "MISC")}
TYPES = ("PER", "LOC", "ORG", "MISC")


def _data_limited_rare_types(groups, a: str, b: str) -> tuple[str, str]:
    """Holds where, on every dataset with records, ``a`` − ``b`` averaged over alphas (each paired over
    samplings) is positive on the named types and larger there than on the other types."""
    deltas, note = _fig3_deltas(groups, a, b)
    if not deltas:
        return "cannot be tested here", f"no Figure 3 records of both {a} and {b} (catmner-bench run fig3)"
    parts, holds = [], True
    for ds, per in deltas.items():
        rare_t = FIG3_RARE_TYPES[ds]
        other_t = tuple(t for t in TYPES if t not in rare_t)
        by_type = {t: _fig3_deltas(groups, a, b, key=t)[0].get(ds, {}) for t in TYPES}
        mean_of = {t: statistics.fmean(c.delta for c in by_type[t].values()) for t in TYPES}
        rare = statistics.fmean(mean_of[t] for t in rare_t)
        other = statistics.fmean(mean_of[t] for t in other_t)
        parts.append(
            f"{LABEL[ds]} mean Δ F1 over alpha {', '.join(map(str, sorted(per)))} on {'/'.join(rare_t)} "
            f"{rare:+.2f} vs {'/'.join(other_t)} {other:+.2f}"
        )
        holds = holds and rare > other and rare > 0
    return ("holds here" if holds else "does not hold here"), "; ".join(parts) + note


def _cross_dataset(groups, a: str, b: str) -> tuple[str, str]:
    other = {"twitter2015": "twitter2017", "twitter2017": "twitter2015"}
    return _better(groups, a, b, "trained on one dataset, tested on the other", test_of=lambda ds: other[ds])


@dataclass(frozen=True)
class Claim:
    section: str
    text: str
    check: Callable[[Sequence[Any]], tuple[str, str]]


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "4.2",
        "CRF-based and span-based textual baselines achieve close results",
        lambda g: _close(g, "lm-span", "lm-crf"),
    ),
    Claim(
        "4.2",
        "replacing the BERT backbone with RoBERTa improves the results",
        lambda g: (
            "cannot be tested here",
            "no RoBERTa (or other cased) weights install offline on this machine",
        ),
    ),
    Claim(
        "4.2",
        "multimodal fusion without refinement does not consistently beat the textual model",
        lambda g: _not_consistently_better(g, "mm", "lm-span"),
    ),
    Claim(
        "4.2",
        "CAT-MNER significantly improves over the textual baseline",
        lambda g: _better(g, "cat-textual", "lm-span", "CAT-MNER − TEXT"),
    ),
    Claim(
        "4.2",
        "the improvement is more prominent on less frequent types (ORG, MISC in 2015; MISC in 2017)",
        lambda g: _rare_types_gain_more(g, "cat-textual", "lm-span"),
    ),
    Claim(
        "4.3",
        "with very little training data CAT-MNER beats TEXT significantly, less so as data grows (Fig. 3)",
        lambda g: _data_efficiency(g, "cat-textual", "lm-span"),
    ),
    Claim(
        "4.3",
        "with little training data CAT-MNER gains over MM most on less frequent types (ORG in 2015; LOC, MISC "
        "in 2017) (Fig. 3)",
        lambda g: _data_limited_rare_types(g, "cat-textual", "mm"),
    ),
    Claim(
        "4.3",
        "CAT-MNER generalises across datasets better than the textual baseline (Table 2)",
        lambda g: _cross_dataset(g, "cat-textual", "lm-span"),
    ),
    Claim(
        "4.3",
        "the refinement matters: CAT-MNER beats the same model without refinement (MM)",
        lambda g: _better(g, "cat-textual", "mm", "CAT-MNER − MM"),
    ),
    Claim(
        "4.3",
        "I2T refinement matters more than T2I (w/o T2I beats w/o I2T)",
        lambda g: _better(g, "i2t", "t2i", "w/o T2I − w/o I2T"),
    ),
    Claim(
        "4.3",
        "textual-KB label words beat multimodal-KB (Visual Genome) label words",
        lambda g: _better(g, "cat-textual", "cat-visualgenome", "textual − Visual Genome words"),
    ),
    Claim(
        "4.4",
        "refined attention moves entity spans' attention to the relevant image regions (Fig. 4)",
        lambda g: (
            "cannot be tested here",
            "a qualitative claim; see the Figure 4 maps, over 30 real images only",
        ),
    ),
)


def verdicts_section(groups: Sequence[Any]) -> str:
    """Markdown: every conclusion of Sections 4.2-4.4 with its verdict on our records."""
    span = [g for g in groups]
    lines = [
        "## The paper's conclusions, checked here",
        "",
        "Each conclusion of Sections 4.2-4.4 against our records (test F1, conlleval). A difference between two "
        "of our systems is significant when |Δ| > 2 SE over seeds (Figure 3: of the per-sampling differences, "
        "both systems trained on the same tweets); with one seed it is shown, not tested. The rules are in "
        "`catmner_bench/verdicts.py`.",
        "",
        "| § | conclusion of the paper | here | evidence |",
        "|---|---|---|---|",
    ]
    for c in CLAIMS:
        verdict, why = c.check(span)
        lines.append(f"| {c.section} | {c.text} | **{verdict}** | {why.replace('|', '/')} |")
    return "\n".join(lines)
