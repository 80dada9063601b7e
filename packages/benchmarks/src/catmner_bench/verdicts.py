"""Comparing two of our systems on the run records: which groups of runs to compare, whether they were trained
alike, and their difference over seeds.

Differences are tested over seeds: ``SE = sqrt(s_a²/n_a + s_b²/n_b)`` with the Welch-Satterthwaite degrees of
freedom (Welch's test); the paper's claims (`compare`) pool the seed SD over the span models of a table trained
with one budget where Bartlett's test finds their variances alike (`seed_pool`); Figure 3 pairs runs that share their training tweets and seed (a paired t, ``n - 1``
degrees of freedom). With one run a side a difference is shown, never tested. `catmner_bench.claims` judges
the paper's conclusions with these comparisons.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from catmner_bench.catalog import DATASET_LABEL as LABEL
from catmner_bench.paper import DATASETS
from catmner_bench.stats import Comparison, PairedComparison, PooledComparison, by_sampling, pool

RARE_TYPES = {"twitter2015": ("ORG", "MISC"), "twitter2017": ("MISC",)}  # the paper's "less frequent" types
FREQUENT_TYPES = ("PER", "LOC")


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


def pick(groups: Sequence[Any], system: str, train: str, test: str | None = None, alpha: Any = None) -> Any:
    """The group of ``system`` on train/test. Where several configs exist (e.g. records from before a default
    changed), the most current (``Group.currency``: the config the planner trains today first), then the one
    with most runs, then the newest."""
    cands = candidates(groups, system, train, test, alpha)

    def newest(g: Any) -> str:
        return max((r.created for r in g.records or ()), default="")

    return max(cands, key=lambda g: (g.currency, g.n, newest(g))) if cands else None


# fields two systems may differ in by definition (what the system is); the rest must match to compare them
_SYSTEM_FIELDS = {"variant", "labels", "knowledge", "model_overrides", "image_encoder", "kind", "model"}


def differences(ga: Any, gb: Any, saliency: bool = True) -> list[str]:
    """How two groups were not trained alike (e.g. "epochs 10 vs 3"): the fields both configs have, other than
    what makes them different systems; the visual source where both see one; the saliency scale where both
    refine with label words (unless ``saliency`` is False). Empty: comparable."""
    ca, cb = _config(ga), _config(gb)
    shared = sorted(set(ca) & set(cb) - _SYSTEM_FIELDS - {"visual", "saliency_scale"})
    out = [f"{k} {ca[k]} vs {cb[k]}" for k in shared if ca[k] != cb[k]]
    va, vb = ca.get("visual"), cb.get("visual")
    if va not in (None, "none") and vb not in (None, "none") and va != vb:
        out.append(f"visual {va} vs {vb}")
    sa, sb = ga.saliency, gb.saliency
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
        for r in group.records or ()
        if isinstance(lw := r.label_words, dict) and lw.get("checksum")
    }


def unlike_note(diff: Sequence[str]) -> str:
    """The note of a comparison whose groups differ in ``diff`` (empty when they were trained alike)."""
    return "not trained alike: " + ", ".join(diff) if diff else ""


def between(
    ga: Any,
    gb: Any,
    key: str = "f1",
    notes: Sequence[str] = (),
    saliency: bool = True,
    split: str = "test",
) -> Comparison:
    """``ga`` minus ``gb`` over seeds (on ``split``); not ``alike`` (no verdict rests on it) where
    `differences` finds any, which the note then names after ``notes``."""
    diff = differences(ga, gb, saliency)
    note = "; ".join([*notes, unlike_note(diff)] if diff else notes)
    return Comparison(ga.values(key, split=split), gb.values(key, split=split), note, not diff)


def pooled(
    groups: Sequence[Any], ga: Any, gb: Any, c: Comparison, key: str = "f1", split: str = "test"
) -> Comparison:
    """``c`` (`between` ``ga`` and ``gb``) with the seed SD pooled over their table (`seed_pool`) where that is
    sound; Welch's, with a note, where Bartlett's test finds the variances unlike; ``c`` itself otherwise."""
    if not c.alike or c.se is None:
        return c
    pool_ = seed_pool(groups, ga, gb, key, split)
    if pool_ is None:
        return c
    if pool_.p < 0.05:  # the systems' seed variances differ: each side's own (Welch), and said
        note = "; ".join(n for n in (c.note, f"seed variances unlike (Bartlett p {pool_.p:.3f})") if n)
        return Comparison(c.a, c.b, note)
    return PooledComparison(c.a, c.b, c.note, True, pool_)


def comparable(ga: Any, gb: Any) -> bool:
    """Whether two groups differ only in what makes them different systems (`differences` is empty)."""
    return not differences(ga, gb)


def _rank(ga: Any, gb: Any) -> tuple:
    """Which pair of groups to compare: trained alike first, then both current, then ``ga`` current, then
    most runs."""
    return (comparable(ga, gb), min(ga.currency, gb.currency), ga.currency, min(ga.n, gb.n))


def counterpart(group: Any, groups: Sequence[Any], system: str) -> Any:
    """The group of ``system`` on ``group``'s datasets to compare it with (best by `_rank`; None: none)."""
    cands = candidates(groups, system, group.train_dataset, group.test_dataset, group.alpha)
    return max(cands, key=lambda b: _rank(group, b)) if cands else None


def pair(groups, a: str, b: str, ds: str, test: str | None = None, alpha: Any = None) -> tuple[Any, Any]:
    """The groups of ``a`` and ``b`` to compare (best by `_rank`). (None, None) when either has no group."""
    pairs = [
        (x, y) for x in candidates(groups, a, ds, test, alpha) for y in candidates(groups, b, ds, test, alpha)
    ]
    return max(pairs, key=lambda p: _rank(*p)) if pairs else (None, None)


def compare(groups, a: str, b: str, ds: str, key: str = "f1", test: str | None = None) -> Comparison | None:
    ga, gb = pair(groups, a, b, ds, test)
    if ga is None or gb is None:
        return None
    notes = []
    if min(ga.currency, gb.currency) < 2 and _config(ga):  # not both the config the planner trains today
        if min(ga.currency, gb.currency) == 1:  # older only by the caption placement (issue 28)
            notes.append("older records: captions placed as restart")
        else:
            sal = ga.saliency or gb.saliency
            notes.append("older records" + (f": saliency {sal}" if sal else ""))
    return pooled(groups, ga, gb, between(ga, gb, key, notes), key)


# what a run's budget is: groups that agree on these (and on their datasets) share one seed SD in `seed_pool`
_BUDGET = ("kind", "profile", "epochs", "n_train", "n_eval", "patience")


def seed_pool(groups: Sequence[Any], ga: Any, gb: Any, key: str = "f1", split: str = "test") -> Any:
    """The seed SD of ``key`` pooled over the groups of ``ga``'s table: span models on the same datasets and
    full training split, trained with the same budget (`_BUDGET`), >= 2 runs each, ``ga`` and ``gb`` among
    them; None where both are not span models or the pool has fewer than 3 groups (nothing gained over
    Welch's test)."""
    ca, cb = _config(ga), _config(gb)
    if ca.get("kind") != "span" or cb.get("kind") != "span" or ga.alpha is not None:
        return None
    budget = [ca.get(k) for k in _BUDGET]
    members = [
        g
        for g in groups
        if g.train_dataset == ga.train_dataset
        and g.test_dataset == ga.test_dataset
        and g.alpha is None
        and g.n >= 2
        and [_config(g).get(k) for k in _BUDGET] == budget
    ]
    if ga not in members or gb not in members or len(members) < 3:
        return None
    return pool([g.values(key, split=split) for g in members])


def missing(groups, systems: Sequence[str], datasets=DATASETS, test_of=None) -> list[str]:
    out = []
    for ds in datasets:
        for s in systems:
            if pick(groups, s, ds, test_of(ds) if test_of else None) is None:
                out.append(f"{s} on {LABEL[ds]}")
    return out


def available(groups, systems: Sequence[str], test_of=None) -> tuple[list[str], str]:
    """Datasets on which every system has records, and a note naming the datasets left out."""
    have = [ds for ds in DATASETS if not missing(groups, systems, (ds,), test_of)]
    left = [LABEL[ds] for ds in DATASETS if ds not in have]
    return have, (f" ({', '.join(left)}: not run)" if left and have else "")
