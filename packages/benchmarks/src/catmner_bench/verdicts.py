"""The paper's conclusions (Sections 4.2-4.4), each checked against our run records.

Each `Claim` names the comparison that tests it; `verdicts` turns the report's record groups into one line per
claim: "holds here", "does not hold here", "not tested yet" (testable here, but the records lack the seeds or
the like-for-like runs: no verdict rests on runs not trained alike) or "cannot be tested here" (and why), with the
numbers. Differences
between two of our systems are tested over seeds: significant when ``|Δ| > t·SE`` with ``SE = sqrt(s_a²/n_a +
s_b²/n_b)`` and ``t`` the two-sided 95% quantile of Student's t at the Welch-Satterthwaite degrees of freedom
(Welch's test; with 3 seeds a side t is 2.78 or more, not 2); Figure 3 pairs runs that share their training
tweets and seed (a paired t-test, ``n - 1`` degrees of freedom: 4.30 for 3 samplings). With one seed per system
a difference is reported but not called significant. Nothing here is tuned to a result: the rules are fixed
before the records exist.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

DATASETS = ("twitter2015", "twitter2017")
# testable here, but the records do not test it yet (one seed a side, or runs not trained alike)
NOT_YET = "not tested yet"
LABEL = {"twitter2015": "Twitter-2015", "twitter2017": "Twitter-2017"}
RARE_TYPES = {"twitter2015": ("ORG", "MISC"), "twitter2017": ("MISC",)}  # the paper's "less frequent" types
FREQUENT_TYPES = ("PER", "LOC")


# two-sided 95% quantiles of Student's t (0.975) by degrees of freedom; between table points, linear in 1/df
_T975 = (
    (1, 12.706),
    (2, 4.303),
    (3, 3.182),
    (4, 2.776),
    (5, 2.571),
    (6, 2.447),
    (7, 2.365),
    (8, 2.306),
    (9, 2.262),
    (10, 2.228),
    (12, 2.179),
    (15, 2.131),
    (20, 2.086),
    (25, 2.060),
    (30, 2.042),
    (40, 2.021),
    (60, 2.000),
    (120, 1.980),
    (math.inf, 1.960),
)


def t_critical(df: float) -> float:
    """The two-sided 95% critical value of Student's t at ``df`` degrees of freedom (df < 1 counts as 1)."""
    df = max(1.0, df)
    (d0, t0), (d1, t1) = next(p for p in zip(_T975, _T975[1:], strict=False) if p[0][0] <= df <= p[1][0])
    w = (1 / d0 - 1 / df) / (1 / d0 - 1 / d1)  # 1 / inf is 0.0
    return t0 + w * (t1 - t0)


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
        k = (int(r["spec"]["sample"]["index"]), r["spec"].get("seed"))
        if k in out:
            raise ValueError(f"two Figure 3 records of {group.system} share sampling {k[0]} and seed {k[1]}")
        out[k] = v
    return out


def paired(ga: Any, gb: Any, key: str = "f1") -> PairedComparison | None:
    """``ga`` minus ``gb`` over the (sampling, seed) runs both have (None: none in common); the note names how
    they were not trained alike, and how many of their runs pair where not all do."""
    va, vb = by_sampling(ga, key), by_sampling(gb, key)
    common = sorted(set(va) & set(vb), key=str)
    if not common:
        return None
    notes = []
    if len(common) < max(len(va), len(vb)):
        notes.append(f"{len(common)} of {len(va)}/{len(vb)} runs pair")
    diff = differences(ga, gb) if ga is not gb else []
    if diff:
        notes.append(unlike_note(diff))
    a, b = [va[i] for i in common], [vb[i] for i in common]
    return PairedComparison(a, b, "; ".join(notes), not diff, (ga, gb))


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
    alpha = getattr(group, "alpha", None)
    if alpha is not None:  # Figure 3: the profile's per-alpha epochs and validation interval
        from catmner_bench.experiments import fig3_config

        return fig3_config(group.system, profile, alpha, visual=visual) == cfg
    return system_config(group.system, profile, epochs=cfg.get("epochs"), visual=visual) == cfg


def currency(group: Any) -> int:
    """How current a group's config is, for choosing among groups: 2 `is_current`; 1 current but for the
    caption placement (a caption config from before issue 28 resolved ``caption_positions`` into run configs:
    those runs placed captions as "restart"), so such records keep their rank among the older ones until the
    reruns on the current placement exist; 0 older."""
    if is_current(group):
        return 2
    cfg = _config(group)
    if "caption_positions" in cfg or "caption" not in str(cfg.get("visual") or "").split("+"):
        return 0
    import types

    placed = {**cfg, "caption_positions": _default_placement(cfg)}  # the same config on today's placement
    now = types.SimpleNamespace(system=group.system, alpha=getattr(group, "alpha", None), config=placed)
    return 1 if is_current(now) else 0


def _default_placement(cfg: dict[str, Any]) -> str:
    from catmner_bench.runner import default_caption_positions

    return default_caption_positions(str(cfg.get("text_encoder") or "minilm"))


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

    return max(cands, key=lambda g: (currency(g), g.n, newest(g))) if cands else None


# fields two systems may differ in by definition (what the system is); the rest must match to compare them
_SYSTEM_FIELDS = {"variant", "labels", "knowledge", "model_overrides", "image_encoder", "kind"}


def differences(ga: Any, gb: Any, saliency: bool = True) -> list[str]:
    """How two groups were not trained alike (e.g. "epochs 10 vs 3"): the fields both configs have, other than
    what makes them different systems; the visual source where both see one; the saliency scale where both
    refine with label words (unless ``saliency`` is False). Empty: comparable."""
    from catmner_bench.runner import saliency_of

    ca, cb = _config(ga), _config(gb)
    shared = sorted(set(ca) & set(cb) - _SYSTEM_FIELDS - {"visual", "saliency_scale"})
    out = [f"{k} {ca[k]} vs {cb[k]}" for k in shared if ca[k] != cb[k]]
    va, vb = ca.get("visual"), cb.get("visual")
    if va not in (None, "none") and vb not in (None, "none") and va != vb:
        out.append(f"visual {va} vs {vb}")
    sa, sb = saliency_of(ca), saliency_of(cb)
    if saliency and sa and sb and sa != sb:
        out.append(f"saliency {sa} vs {sb}")
    if ca.get("labels") and ca.get("labels") == cb.get("labels"):  # the same words by name: by content too?
        wa, wb = _word_checksums(ga), _word_checksums(gb)
        if wa and wb and wa != wb:
            out.append(f"label words {'/'.join(sorted(wa))} vs {'/'.join(sorted(wb))}")
    return out


def _word_checksums(group: Any) -> set[str]:
    """The label-word checksums (first 8 hex digits) of a group's records (a KB source name such as "textual"
    resolves to its latest build, so two runs of one config may have trained on different words)."""
    return {
        str(lw["checksum"])[:8]
        for r in getattr(group, "records", None) or []
        if isinstance(lw := r.get("label_words"), dict) and lw.get("checksum")
    }


def unlike_note(diff: Sequence[str]) -> str:
    """The note of a comparison whose groups differ in ``diff`` (empty when they were trained alike)."""
    return "not trained alike: " + ", ".join(diff) if diff else ""


def between(
    ga: Any, gb: Any, key: str = "f1", notes: Sequence[str] = (), saliency: bool = True
) -> Comparison:
    """``ga`` minus ``gb`` over seeds; not ``alike`` (no verdict rests on it) where `differences` finds any,
    which the note then names after ``notes``."""
    diff = differences(ga, gb, saliency)
    note = "; ".join([*notes, unlike_note(diff)] if diff else notes)
    return Comparison(ga.values(key), gb.values(key), note, not diff)


def comparable(ga: Any, gb: Any) -> bool:
    """Whether two groups differ only in what makes them different systems (`differences` is empty)."""
    return not differences(ga, gb)


def _rank(ga: Any, gb: Any) -> tuple:
    """Which pair of groups to compare: trained alike first, then both current, then ``ga`` current, then
    most runs."""
    return (comparable(ga, gb), min(currency(ga), currency(gb)), currency(ga), min(ga.n, gb.n))


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
        if min(currency(ga), currency(gb)) == 1:  # older only by the caption placement (issue 28)
            notes.append("older records: captions placed as restart")
        else:
            sal = saliency_of(_config(ga)) or saliency_of(_config(gb))
            notes.append("older records" + (f": saliency {sal}" if sal else ""))
    return between(ga, gb, key, notes)


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
    parts, fails, untested = [], False, False
    for ds in have:
        c = _compare(groups, a, b, ds, test=test_of(ds) if test_of else None)
        where = f"{LABEL[ds]} → {LABEL[test_of(ds)]}" if test_of else LABEL[ds]
        parts.append(f"{where} {c.describe()}")
        if not c.tested:
            untested = True
        elif not (c.delta > 0 and c.significant):
            fails = True
    verdict = "does not hold here" if fails else NOT_YET if untested else "holds here"
    return verdict, f"{what}: " + "; ".join(parts) + note


def _close(groups, a: str, b: str, tol: float = 1.0) -> tuple[str, str]:
    have, note = _available(groups, (a, b))
    if not have:
        return "cannot be tested here", f"no records for {', '.join(_missing(groups, (a, b)))}"
    cs = {ds: _compare(groups, a, b, ds) for ds in have}
    # closeness is read from the point estimate (one seed a side will do), but only of runs trained alike
    fails = any(c.alike and abs(c.delta) > tol for c in cs.values())
    untested = any(not c.alike for c in cs.values())
    verdict = "does not hold here" if fails else NOT_YET if untested else "holds here"
    return verdict, "; ".join(
        f"{LABEL[ds]} {c.describe()} (close = |Δ| ≤ {tol:g})" for ds, c in cs.items()
    ) + note


def _not_consistently_better(groups, a: str, b: str, what: str) -> tuple[str, str]:
    """The negation of `_better`: holds where ``a`` fails to beat ``b`` significantly on some tested dataset."""
    verdict, why = _better(groups, a, b, what)
    flip = {"holds here": "does not hold here", "does not hold here": "holds here"}
    return flip.get(verdict, verdict), why


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
    """Per dataset, ``a`` − ``b`` at each alpha where both have Figure-3 records, paired by sampling and seed;
    and a note naming the datasets without them."""
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
    the smallest alpha, and, where two alphas or more were run, the gain at the largest alpha is smaller than at
    the smallest. Untested where no dataset has two samplings and two alphas."""
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
        if first.tested:  # a significant loss (or no gain) at the smallest alpha counts
            holds = holds and first.delta > 0 and first.significant
            tested = tested or len(alphas) > 1
        if len(alphas) > 1:
            holds = holds and last.delta < first.delta
    if not tested and holds:
        return "cannot be tested here", "; ".join(parts) + note
    return ("holds here" if holds else "does not hold here"), "; ".join(parts) + note


# the types Section 4.3 names for Figure 3 ("less frequent entity types, e.g. ORG in Twitter-2015 and LOC,
# MISC in Twitter-2017"), compared with the frequent types of that dataset (Twitter-2015's MISC is rare too,
# Section 4.2, so it is on neither side)
FIG3_RARE_TYPES = {"twitter2015": ("ORG",), "twitter2017": ("LOC", "MISC")}
FIG3_FREQUENT_TYPES = {"twitter2015": ("PER", "LOC"), "twitter2017": ("PER", "ORG")}


def _data_limited_rare_types(groups, a: str, b: str) -> tuple[str, str]:
    """Holds where, on every dataset with records, ``a`` − ``b`` on the named types exceeds ``a`` − ``b`` on the
    frequent types significantly, over every (alpha, sampling) pair of runs (a paired t-test), and is positive.
    Untested with fewer than two pairs."""
    deltas, note = _fig3_deltas(groups, a, b)
    if not deltas:
        return "cannot be tested here", f"no Figure 3 records of both {a} and {b} (catmner-bench run fig3)"
    parts, holds, tested = [], True, False
    for ds, per in deltas.items():
        rare_t, freq_t = FIG3_RARE_TYPES[ds], FIG3_FREQUENT_TYPES[ds]
        rare, freq = [], []  # per pair of runs: mean Δ over the named / the frequent types
        overall_a, overall_b = [], []  # and overall F1 of each pair: does ``a`` gain at all?
        for _, f1 in sorted(per.items()):
            by_t = {t: paired(*f1.groups, t) for t in (*rare_t, *freq_t)}
            n = len(by_t[rare_t[0]].a)
            for i in range(n):
                rare.append(statistics.fmean(by_t[t].a[i] - by_t[t].b[i] for t in rare_t))
                freq.append(statistics.fmean(by_t[t].a[i] - by_t[t].b[i] for t in freq_t))
            overall_a += f1.a
            overall_b += f1.b
        c = PairedComparison(rare, freq)
        parts.append(
            f"{LABEL[ds]} over alpha {', '.join(map(str, sorted(per)))}: Δ F1 on {'/'.join(rare_t)} "
            f"{statistics.fmean(rare):+.2f} vs {'/'.join(freq_t)} {statistics.fmean(freq):+.2f}, difference "
            + c.describe().removeprefix("Δ ")
            + "; overall F1 "
            + PairedComparison(overall_a, overall_b).describe()
        )
        if c.significant is not None:
            tested = True
            holds = holds and c.delta > 0 and c.significant and statistics.fmean(rare) > 0
    if not tested:
        return "cannot be tested here", "; ".join(parts) + note
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
        lambda g: _not_consistently_better(g, "mm", "lm-span", "MM − TEXT"),
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
        "of our systems is significant when |Δ| > t·SE over seeds, t the two-sided 95% Student-t quantile "
        "(Welch's test; Figure 3: a paired test of the per-sampling differences, both systems trained on the "
        "same tweets); with one seed it is shown, not tested. 'not tested yet': testable here, but the records "
        "have one seed a side, or the compared runs were not trained alike (the evidence says how; no verdict "
        "rests on such a pair). The rules are in `catmner_bench/verdicts.py`.",
        "",
        "| § | conclusion of the paper | here | evidence |",
        "|---|---|---|---|",
    ]
    for c in CLAIMS:
        verdict, why = c.check(span)
        why = why.replace("|", "\\|")  # a literal | in a Markdown table cell
        lines.append(f"| {c.section} | {c.text} | **{verdict}** | {why} |")
    return "\n".join(lines)
