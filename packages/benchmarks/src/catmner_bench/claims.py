"""The paper's conclusions (Sections 4.2-4.4), each judged on our run records by the three-outcome rule of
`catmner_bench.outcomes` (consistent with the paper / contradicts it / inconclusive), with the comparison
machinery of `catmner_bench.verdicts` (which records to compare, Welch's and paired t over seeds)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from catmner_bench.outcomes import (
    CONSISTENT,
    CONTRADICTS,
    INCONCLUSIVE,
    Estimate,
    Outcome,
    judge_close,
    judge_effect,
    overall,
)
from catmner_bench.paper import TABLE2, TABLE3, table1_row
from catmner_bench.verdicts import (
    DATASETS,
    FREQUENT_TYPES,
    LABEL,
    RARE_TYPES,
    Comparison,
    PairedComparison,
    available,
    compare,
    differences,
    missing,
    pair,
    paired,
    unlike_note,
)

# ---- the claims, each judged by the three-outcome rule of `catmner_bench.outcomes` ----

UNTESTABLE = "cannot be tested here"


@dataclass
class Judged:
    """One claim on our records: its outcome, one cell per dataset, and what would decide it."""

    outcome: str  # CONSISTENT / CONTRADICTS / INCONCLUSIVE, or UNTESTABLE
    cells: dict[str, str] = field(default_factory=dict)  # "Twitter-2015" -> Δ [interval] vs paper: outcome
    evidence: str = ""
    # per inconclusive dataset: (dataset label, runs a side that would detect the paper's effect, minutes a run)
    needs: list[tuple[str, int, float | None]] = field(default_factory=list)


def _untestable(why: str) -> Judged:
    return Judged(UNTESTABLE, evidence=why)


def estimate(c: Comparison) -> Estimate:
    """Our difference as an `Estimate`: no interval where one side has one run or the runs differ in recipe."""
    if not c.alike or c.se is None:
        return Estimate(c.delta, None)
    return Estimate(c.delta, c.se, c.df)


def _cell(o: Outcome, c: Comparison) -> str:
    extra = c.count() + (f"; {c.note}" if c.note else "")
    return f"{o.cell()} ({extra})"


def _runs_needed(c: Comparison, e: Estimate, paper: float | None) -> int | None:
    """Runs a side that would detect the paper's effect with 80% power (SE shrinks as 1/sqrt(runs))."""
    if paper is None or paper == 0 or e.detectable is None:
        return None
    n = min(len(c.a), len(c.b))
    return max(n, math.ceil(n * (e.detectable / abs(paper)) ** 2))


def _minutes(*gs: Any) -> float | None:
    mins = [g.wall_minutes for g in gs if g is not None and getattr(g, "wall_minutes", None) is not None]
    return sum(mins) if mins else None


def _judge(c: Comparison, paper: float | None, close: float | None = None) -> Outcome:
    e = estimate(c)
    if not c.alike:
        return Outcome(INCONCLUSIVE, e, paper, "not trained alike")
    return judge_close(e, paper, close) if close is not None else judge_effect(e, paper)


def _claim(
    groups,
    a: str,
    b: str,
    what: str,
    paper: Callable[[str], float | None],
    test_of: Callable[[str], str] | None = None,
    close: float | None = None,
    key: str = "f1",
    evidence: str = "",
) -> Judged:
    """``a`` − ``b`` on every dataset with records of both, against the paper's effect ``paper(dataset)``."""
    have, note = available(groups, (a, b), test_of)
    if not have:
        return Judged(
            INCONCLUSIVE,
            evidence=f"not run: no records for {', '.join(missing(groups, (a, b), test_of=test_of))}",
        )
    outs, cells, needs = [], {}, []
    for ds in have:
        test = test_of(ds) if test_of else None
        c = compare(groups, a, b, ds, key, test=test)
        o = _judge(c, paper(ds), close)
        outs.append(o)
        where = f"{LABEL[ds]} → {LABEL[test]}" if test else LABEL[ds]
        cells[where] = _cell(o, c)
        if o.outcome == INCONCLUSIVE and close is None and c.alike:
            n = _runs_needed(c, o.estimate, o.paper)
            if n is not None:
                needs.append((where, n, _minutes(*pair(groups, a, b, ds, test))))
    return Judged(overall(outs), cells, f"{what}{note}" + (f". {evidence}" if evidence else ""), needs)


def _table1_delta(a: str, b: str, type_: str | None = None) -> Callable[[str], float | None]:
    def delta(ds: str) -> float | None:
        sa, sb = table1_row(a).scores[ds], table1_row(b).scores[ds]
        if type_ is None:
            return None if sa.f1 is None or sb.f1 is None else round(sa.f1 - sb.f1, 2)
        return round(sa.per_type_f1[type_] - sb.per_type_f1[type_], 2)

    return delta


def _table3_delta(a: str, b: str) -> Callable[[str], float]:
    col = {"twitter2015": 1, "twitter2017": 2}
    return lambda ds: round(TABLE3[a][col[ds]] - TABLE3[b][col[ds]], 2)


def _rare_contrast(group: Any, ds: str) -> list[float]:
    """Per run: mean F1 over the dataset's rare types minus mean F1 over PER/LOC."""
    rare = [group.values(t) for t in RARE_TYPES[ds]]
    freq = [group.values(t) for t in FREQUENT_TYPES]
    return [
        statistics.fmean(r[i] for r in rare) - statistics.fmean(f[i] for f in freq) for i in range(group.n)
    ]


def _paper_rare_contrast(ds: str) -> float:
    """The paper's contrast on its RoBERTa-large rows, where the claim is made (its BERT-base rows show a
    smaller MISC gain than PER/LOC gain on Twitter-2017)."""
    cat, span = table1_row("cat-mner-roberta-large").scores[ds], table1_row("roberta-large-span").scores[ds]

    def d(t: str) -> float:
        return cat.per_type_f1[t] - span.per_type_f1[t]

    return round(
        statistics.fmean(d(t) for t in RARE_TYPES[ds]) - statistics.fmean(d(t) for t in FREQUENT_TYPES), 2
    )


def _rare_types_gain_more(groups, a: str, b: str) -> Judged:
    have, note = available(groups, (a, b))
    if not have:
        return Judged(INCONCLUSIVE, evidence=f"not run: no records for {', '.join(missing(groups, (a, b)))}")
    outs, cells, needs = [], {}, []
    for ds in have:
        ga, gb = pair(groups, a, b, ds)
        diff = differences(ga, gb)
        c = Comparison(_rare_contrast(ga, ds), _rare_contrast(gb, ds), unlike_note(diff), not diff)
        o = _judge(c, _paper_rare_contrast(ds))
        outs.append(o)
        cells[LABEL[ds]] = _cell(o, c)
        if o.outcome == INCONCLUSIVE and c.alike and (n := _runs_needed(c, o.estimate, o.paper)):
            needs.append((LABEL[ds], n, _minutes(ga, gb)))
    rare = "; ".join(f"{LABEL[ds]}: {'/'.join(RARE_TYPES[ds])}" for ds in have)
    return Judged(
        overall(outs),
        cells,
        f"(CAT-MNER − TEXT on the rare types) − (on PER/LOC), per run (paper: Table 1, RoBERTa-large); rare "
        f"types {rare}{note}",
        needs,
    )


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
            ga, gb = pair(groups, a, b, ds, alpha=al)
            if ga is not None and gb is not None and (c := paired(ga, gb, key)) is not None:
                per[al] = c
        if per:
            out[ds] = per
    left = [LABEL[ds] for ds in DATASETS if ds not in out]
    return out, (f" ({', '.join(left)}: not run)" if left and out else "")


def _pooled(per: dict[int, PairedComparison]) -> PairedComparison:
    """One paired comparison over every (alpha, sampling) pair of runs."""
    a = [x for c in per.values() for x in c.a]
    b = [x for c in per.values() for x in c.b]
    notes = sorted({c.note for c in per.values() if c.note})
    return PairedComparison(a, b, "; ".join(notes), all(c.alike for c in per.values()))


def _data_efficiency(groups, a: str, b: str, names: str = "CAT-MNER − TEXT") -> Judged:
    """Two parts, each judged by its direction (the paper's Figure 3 gives no numbers): ``a`` − ``b`` at the
    smallest alpha (paired over samplings), and, where two alphas or more were run, that gain minus the gain at
    the largest alpha (Welch over the per-sampling gains: different tweets at each alpha)."""
    deltas, note = _fig3_deltas(groups, a, b)
    if not deltas:
        return Judged(INCONCLUSIVE, evidence=f"not run: no Figure 3 records of both {a} and {b}")
    outs, cells = [], {}
    for ds, per in deltas.items():
        alphas = sorted(per)
        first, last = per[alphas[0]], per[alphas[-1]]
        o = _judge(first, None)
        outs.append(o)
        cell = f"alpha={alphas[0]}: {_cell(o, first)}"
        if len(alphas) > 1:
            gains = [x - y for x, y in zip(first.a, first.b, strict=True)]
            later = [x - y for x, y in zip(last.a, last.b, strict=True)]
            trend = Comparison(gains, later, "", first.alike and last.alike)
            t = _judge(trend, None)
            outs.append(t)
            cell += f"; gain at {alphas[0]} − gain at {alphas[-1]}: {t.cell()}"
        else:
            outs.append(Outcome(INCONCLUSIVE, Estimate(0.0, None), None, "one alpha"))
            cell += "; one alpha: the trend is not tested"
        cells[LABEL[ds]] = cell + "; Δ by alpha " + ", ".join(f"{al}: {per[al].delta:+.2f}" for al in alphas)
    return Judged(
        overall(outs),
        cells,
        f"{names} at the smallest training set, and how much larger it is there than at the largest "
        "(the paper's Figure 3 is a plot: directions only)" + note,
    )


# the types Section 4.3 names for Figure 3 ("less frequent entity types, e.g. ORG in Twitter-2015 and LOC,
# MISC in Twitter-2017"), compared with the frequent types of that dataset (Twitter-2015's MISC is rare too,
# Section 4.2, so it is on neither side)
FIG3_RARE_TYPES = {"twitter2015": ("ORG",), "twitter2017": ("LOC", "MISC")}
FIG3_FREQUENT_TYPES = {"twitter2015": ("PER", "LOC"), "twitter2017": ("PER", "ORG")}


def _data_limited_rare_types(groups, a: str, b: str) -> Judged:
    """``a`` − ``b`` on the named types minus ``a`` − ``b`` on the frequent types, paired over every (alpha,
    sampling) pair of runs, judged by its direction (Figure 3 has no numbers)."""
    deltas, note = _fig3_deltas(groups, a, b)
    if not deltas:
        return Judged(INCONCLUSIVE, evidence=f"not run: no Figure 3 records of both {a} and {b}")
    outs, cells = [], {}
    for ds, per in deltas.items():
        rare_t, freq_t = FIG3_RARE_TYPES[ds], FIG3_FREQUENT_TYPES[ds]
        rare, freq = [], []  # per pair of runs: mean Δ over the named / the frequent types
        for _, f1 in sorted(per.items()):
            by_t = {t: paired(*f1.groups, t) for t in (*rare_t, *freq_t)}
            for i in range(len(by_t[rare_t[0]].a)):
                rare.append(statistics.fmean(by_t[t].a[i] - by_t[t].b[i] for t in rare_t))
                freq.append(statistics.fmean(by_t[t].a[i] - by_t[t].b[i] for t in freq_t))
        alike = all(c.alike for c in per.values())
        c = PairedComparison(rare, freq, "" if alike else "not trained alike", alike)
        o = _judge(c, None)
        outs.append(o)
        cells[LABEL[ds]] = (
            f"{'/'.join(rare_t)} {statistics.fmean(rare):+.2f} vs {'/'.join(freq_t)} "
            f"{statistics.fmean(freq):+.2f}: {_cell(o, c)}"
        )
    return Judged(
        overall(outs),
        cells,
        "(CAT-MNER − MM on the named types) − (on the frequent types), over alpha "
        + ", ".join(str(al) for al in sorted({al for per in deltas.values() for al in per}))
        + note,
    )


def _refinement(groups, a: str, b: str) -> Judged:
    """Full data (Table 1 runs, against the paper's Table 3 effect) and Figure 3 (paired over every (alpha,
    sampling) pair, direction only), each shown; the outcome rests on both."""
    full = _claim(groups, a, b, "CAT-MNER − MM, full data", _table3_delta("cat", "mm"))
    deltas, _ = _fig3_deltas(groups, a, b)
    outs: list[Outcome] = []
    cells = dict(full.cells)
    for ds, per in deltas.items():
        c = _pooled(per)
        o = _judge(c, None)
        outs.append(o)
        label = f"{LABEL[ds]}, Figure 3 (alpha {', '.join(map(str, sorted(per)))})"
        cells[label] = _cell(o, c)
    if full.outcome == UNTESTABLE or not full.cells:
        verdict = overall(outs) if outs else full.outcome
    else:
        kinds = [full.outcome, *(o.outcome for o in outs)]
        verdict = (
            CONTRADICTS
            if CONTRADICTS in kinds
            else CONSISTENT
            if set(kinds) == {CONSISTENT}
            else INCONCLUSIVE
        )
    return Judged(verdict, cells, full.evidence + "; Figure 3: paired over samplings", full.needs)


def _cross_dataset(groups, a: str) -> Judged:
    """Table 2: against UMT where it has records (the paper's own comparison), else TEXT as a stand-in (the paper
    has no TEXT row in Table 2: direction only)."""
    other = {"twitter2015": "twitter2017", "twitter2017": "twitter2015"}
    if any(g.system == "umt" and g.train_dataset != g.test_dataset for g in groups):

        def paper(ds: str) -> float:
            k = f"{ds}->{other[ds]}"
            return round(TABLE2["cat-mner"][k][2] - TABLE2["umt"][k][2], 2)

        return _claim(
            groups,
            a,
            "umt",
            "CAT-MNER − UMT, trained on one dataset, tested on the other",
            paper,
            test_of=lambda ds: other[ds],
        )
    return _claim(
        groups,
        a,
        "lm-span",
        "CAT-MNER − TEXT, trained on one dataset, tested on the other",
        lambda ds: None,
        test_of=lambda ds: other[ds],
        evidence="The paper's Table 2 compares CAT-MNER with UMT and UMGF; TEXT stands in for them here "
        "(direction only) until UMT has Table 2 records",
    )


@dataclass(frozen=True)
class Claim:
    section: str
    text: str
    check: Callable[[Sequence[Any]], Judged]


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "4.2",
        "CRF-based and span-based textual baselines achieve close results",
        lambda g: _claim(
            g,
            "lm-span",
            "lm-crf",
            "span − CRF (Table 1, BERT-base)",
            _table1_delta("bert-base-span", "bert-base-crf"),
            close=1.0,
        ),
    ),
    Claim(
        "4.2",
        "replacing the BERT backbone with RoBERTa improves the results",
        lambda g: _untestable("no RoBERTa (or other cased) weights install offline on this machine"),
    ),
    Claim(
        "4.2",
        "multimodal fusion without refinement does not consistently beat the textual model",
        lambda g: _claim(
            g,
            "mm",
            "lm-span",
            "MM − TEXT (paper: Table 3's w/o Refine − textual baseline, RoBERTa-large)",
            _table3_delta("mm", "text"),
            close=1.0,
        ),
    ),
    Claim(
        "4.2",
        "CAT-MNER significantly improves over the textual baseline",
        lambda g: _claim(
            g,
            "cat-textual",
            "lm-span",
            "CAT-MNER − TEXT (paper: Table 1, BERT-base)",
            _table1_delta("cat-mner-bert-base", "bert-base-span"),
        ),
    ),
    Claim(
        "4.2",
        "CAT-MNER beats UMT, the seed paper's multimodal model (Table 1)",
        lambda g: _claim(
            g,
            "cat-textual",
            "umt",
            "CAT-MNER − UMT on the same encoder and visual inputs (paper: Table 1, "
            "UMT's own BERT-base numbers)",
            _table1_delta("cat-mner-bert-base", "umt"),
        ),
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
        "with very little training data CAT-MNER beats UMT significantly, less so as data grows (Fig. 3)",
        lambda g: _data_efficiency(g, "cat-textual", "umt", "CAT-MNER − UMT"),
    ),
    Claim(
        "4.3",
        "with little training data CAT-MNER gains over MM most on less frequent types (ORG in 2015; LOC, MISC "
        "in 2017) (Fig. 3)",
        lambda g: _data_limited_rare_types(g, "cat-textual", "mm"),
    ),
    Claim(
        "4.3",
        "CAT-MNER generalises across datasets better than the other models (Table 2)",
        lambda g: _cross_dataset(g, "cat-textual"),
    ),
    Claim(
        "4.3",
        "the refinement matters: CAT-MNER beats the same model without refinement (MM)",
        lambda g: _refinement(g, "cat-textual", "mm"),
    ),
    Claim(
        "4.3",
        "I2T refinement matters more than T2I (w/o T2I beats w/o I2T)",
        lambda g: _claim(g, "i2t", "t2i", "w/o T2I − w/o I2T (paper: Table 3)", _table3_delta("i2t", "t2i")),
    ),
    Claim(
        "4.3",
        "textual-KB label words beat multimodal-KB (Visual Genome) label words",
        lambda g: _claim(
            g,
            "cat-textual",
            "cat-visualgenome",
            "textual − Visual Genome words (paper: Table 3)",
            _table3_delta("cat", "cat-visualgenome"),
            evidence="Our multimodal KB is Visual Genome's VG-150 scene graphs, which have no objects for "
            "organisations or events: it stands in for the paper's multimodal KB, it is not the same KB",
        ),
    ),
    Claim(
        "4.4",
        "refined attention moves entity spans' attention to the relevant image regions (Fig. 4)",
        lambda g: _untestable("a qualitative claim; see the Figure 4 maps, over 30 real images only"),
    ),
)


def judge_all(groups: Sequence[Any]) -> list[tuple[Claim, Judged]]:
    return [(c, c.check(groups)) for c in CLAIMS]
