"""The report's recipe-search section: each round's settings by validation F1, the round's choice (the best
setting replaces the profile default only when it beats it by more than the seed spread), and the runs' cost."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from catmner_bench import paper
from catmner_bench.catalog import DATASET_LABEL, SEARCH_ROUNDS, system_label
from catmner_bench.markdown import md_table
from catmner_bench.report.tables import (
    Group,
    fmt,
    fmt_delta,
    fmt_mean,
    mean,
)


def search_choice(
    named: list[tuple[str, Group]], table1: list[Group] | None = None
) -> tuple[Group, Group, str]:
    """(best, chosen, why) of one system's search rows ``(setting name, group)`` on one dataset.

    ``best`` has the highest mean validation F1. It is ``chosen`` over the profile default only when it beats
    the default by more than t standard errors of that difference, the seed noise taken from the default's
    validation F1 over Table 1's n seeds (SE = sigma * sqrt(1/n_best + 1/n_default); t the two-sided 95%
    quantile of Student's t at n - 1 degrees of freedom, since sigma is estimated from n seeds): one seed per setting
    cannot tell a 0.2 gain from another seed. Where the best and the default have >= 2 seeds each (a round run
    with several seeds a setting), the noise is the round's own instead (`_choose_on_own_seeds`): the seed SD
    pooled over its settings (t at the pooled df), or Welch's test of the best against the default. Without a default row, or without Table 1 seeds of the
    default to measure the noise, the best is chosen and ``why`` says the noise is unknown. When the default
    has no Table 1 seeds of its own (a later round's base), the noise of the system's recipe with the most
    Table 1 seeds stands in, and ``why`` says so."""
    best_name, best = max(named, key=lambda t: mean(t[1].values("f1", split="valid")) or 0.0)
    default = next((g for name, g in named if name == "profile default"), None)
    if default is None or best is default:
        return best, best, ""
    gain = mean(best.values("f1", split="valid")) - mean(default.values("f1", split="valid"))
    if best.n >= 2 and default.n >= 2:
        return _choose_on_own_seeds(named, best_name, best, default, gain)
    seeded = [
        t
        for t in table1 or ()
        if t.system == default.system
        and t.train_dataset == default.train_dataset == t.test_dataset
        and t.n >= 2
    ]
    # the default's own Table 1 seeds, else those of the same system's recipe with the most seeds
    twin = next((t for t in seeded if t.config == default.config), None)
    earlier = twin is None and bool(seeded)
    if earlier:
        twin = max(seeded, key=lambda t: t.n)
    if twin is None:
        return best, best, "seed noise unknown (no Table 1 seeds of this system): the best is chosen"
    sigma = statistics.stdev(twin.values("f1", split="valid"))
    se = sigma * math.sqrt(1 / best.n + 1 / default.n)
    where = f"Table 1, n={twin.n}" + (", another recipe of this system" if earlier else "")
    noise = f"seed σ {sigma:.2f} on validation ({where}), SE of the difference {se:.2f}"
    return _choose(best_name, best, default, gain, se, twin.n - 1, noise)


def _choose_on_own_seeds(
    named: list[tuple[str, Group]], best_name: str, best: Group, default: Group, gain: float
) -> tuple[Group, Group, str]:
    """`search_choice` where the best and the default have >= 2 seeds each: the seed SD pooled over the round's
    settings with seed spread (t at the pooled df), or Welch's test of the best against the default where the
    settings' variances differ (Bartlett p < 0.05) or fewer than two settings have spread to pool."""
    from catmner_bench.stats import Comparison, PooledComparison, pool

    a, b = best.values("f1", split="valid"), default.values("f1", split="valid")
    spread = [v for _, g in named if g.n >= 2 and statistics.variance(v := g.values("f1", split="valid")) > 0]
    own = pool(spread)
    if own is not None and own.p >= 0.05:
        pooled = PooledComparison(a, b, pooled=own)
        noise = (
            f"seed σ {own.sd:.2f} on validation, the round's {own.k} settings with seed spread pooled "
            f"({own.df} df), SE of the difference {pooled.se:.2f}"
        )
        return _choose(best_name, best, default, gain, pooled.se, pooled.df, noise)
    welch = Comparison(a, b)
    why_not = (
        "Bartlett's test (p < 0.05) says the settings' variances differ"
        if own is not None
        else "fewer than two settings have seed spread to pool"
    )
    se = welch.se or 0.0
    if se == 0:
        return (
            best,
            default,
            f"the best, {best_name}, and the default have no seed spread: untested, the default is kept",
        )
    return _choose(
        best_name, best, default, gain, se, welch.df, f"Welch's SE of the difference {se:.2f}, as {why_not}"
    )


def _choose(
    best_name: str, best: Group, default: Group, gain: float, se: float, df: float, noise: str
) -> tuple[Group, Group, str]:
    """(best, chosen, why): the best replaces the default when ``gain`` > t SE, t the two-sided 95% Student-t
    quantile at ``df`` (the df of the noise estimate); ``noise`` says where SE comes from."""
    from catmner_bench.stats import t_critical

    t = t_critical(df)
    bar = f"{t:.2f} SE = {t * se:.2f} (Student's t, {df:.3g} df)"
    if gain > t * se:
        return best, best, f"{best_name} beats the default by {gain:+.2f} > {bar} ({noise})"
    more = (
        f"seeds 2 and 3 of {best_name} would settle it"
        if best.n == 1
        else f"more seeds of {best_name} would narrow it"
    )
    return (
        best,
        default,
        f"the best, {best_name}, is {gain:+.2f} over the default, within {bar} ({noise}): the default is kept; "
        + more,
    )


def search_rows(groups: list[Group], system: str, ds: str) -> list[tuple[str, list[tuple[str, Group]]]]:
    """Each round of the search (`catalog.SEARCH_ROUNDS`, in order) with its (setting name, group) rows of one
    system and dataset, in the round's order: the settings the groups' records are (`records.Recipe`); groups
    that are no setting of any round come last, as "other" rows of the last round."""
    mine = [g for g in groups if g.system == system and g.train_dataset == ds and g.alpha is None]
    out: list[tuple[str, list[tuple[str, Group]]]] = []
    for rnd in SEARCH_ROUNDS:
        found = sorted(
            ((s.index, s.setting, g) for g in mine for s in g.search if s.round == rnd), key=lambda t: t[0]
        )
        named = dict((name, g) for _, name, g in reversed(found))  # the first group of a setting
        out.append((rnd, [(name, named[name]) for name in dict.fromkeys(name for _, name, _ in found)]))
    others = [("other", g) for g in mine if not g.search]
    if others and out:
        out[-1][1].extend(others)
    return [(rnd, rows) for rnd, rows in out if rows]


def search_minutes(g: Group) -> str:
    """Minutes per run of a search row; a row that reused Table 1's run shows that run's training time."""
    reused = [r.extra.get("reused_model") or {} for r in g.records]
    if all(reused):
        secs = [float(x["wall_time_s"]) for x in reused if x.get("wall_time_s") is not None]
        return f"{sum(secs) / len(secs) / 60:.1f} (Table 1's run)" if secs else "Table 1's run"
    return f"{g.wall_minutes:.1f}" if g.wall_minutes is not None else "-"


def search_section(groups: list[Group], table1: list[Group] | None = None) -> str:
    """The recipe search: validation F1 (mean ± std over seeds), seconds per epoch and minutes per run of each
    setting of each round, per dataset and system; each round's choice (`search_choice`) is marked, and the
    last round's is the recipe. Test F1 is not in these records (the search never scores test); where Table 1
    has runs of a chosen setting, their test F1 is shown beside it."""
    parts = [
        "## Recipe search (validation F1)",
        "",
        "Rounds of one factor at a time (`catmner_bench.search_plan.SEARCH_ROUNDS`), each around its base "
        "recipe, scored on the validation split only. **chosen** marks the setting a round keeps for each "
        "system and dataset: the best mean validation F1 when it beats the round's default by more than t "
        "standard errors of the difference, else the default. The seed noise is the round's own where the "
        "best and the default have several seeds (the SD pooled over its settings' seeds; t the two-sided 95% "
        "Student-t quantile at the pooled df), else that of Table 1's n seeds of the default (t at n - 1 df: "
        "4.30 for 3 seeds). The bar is that of one comparison, the best against the default: the best of "
        "several settings passes it by chance more often than 5%, so a round-3 setting enters the profile "
        "only when it is chosen on both datasets. A "
        "setting two rounds share is one run, shown in both; a later round, planned around an earlier one's "
        "lead, decides the recipe. Test F1 is scored only for a chosen setting, "
        "through Table 1 once it is the default (shown where such Table 1 records exist).",
    ]
    for ds in paper.DATASETS:
        for system in dict.fromkeys(g.system for g in groups if g.train_dataset == ds):
            rounds = search_rows(groups, system, ds)
            for i, (rnd, named) in enumerate(rounds):
                later = rounds[i + 1][0] if i + 1 < len(rounds) else None  # the round that supersedes it
                best, chosen, why = search_choice(named, table1)
                default = next((g for name, g in named if name == "profile default"), None)
                d_valid = mean(default.values("f1", split="valid")) if default else None
                rows = []
                for name, g in named:
                    v = g.values("f1", split="valid")
                    test = "-"
                    if g is chosen and later is None:
                        twin = next(
                            (
                                t
                                for t in table1 or ()
                                if t.system == system
                                and t.train_dataset == ds == t.test_dataset
                                and t.config == g.config
                            ),
                            None,
                        )
                        test = (
                            fmt_mean(twin.values("f1")) + f" (Table 1, n={twin.n})"
                            if twin
                            else "(not yet: Table 1)"
                        )
                    label = name
                    if g is chosen and later is not None:
                        label = f"{name} (chosen in round {rnd}; round {later} decides the recipe)"
                    elif g is chosen:
                        label = f"**{name}** (chosen)"
                    elif g is best:
                        label = f"{name} (best, within noise)"
                    rows.append(
                        [
                            label,
                            str(g.n),
                            fmt_mean(v),
                            fmt_delta(mean(v) - d_valid) if d_valid is not None and g is not default else "",
                            fmt(g.seconds_per_epoch) if g.seconds_per_epoch is not None else "-",
                            search_minutes(g),
                            test,
                        ]
                    )
                header = ["Setting", "seeds", "valid F1", "Δ vs default", "s/epoch", "min/run", "test F1"]
                parts += [
                    "",
                    f"### {DATASET_LABEL[ds]}: {system_label(system)}, round {rnd}",
                    "",
                    f"Round {rnd}: {SEARCH_ROUNDS[rnd]}.",
                    "",
                    md_table(header, rows),
                ]
                if why:
                    parts += ["", f"Choice: {why}."]
    return "\n".join(parts)


def _curve_rows(groups: list[Group]) -> list[tuple[str, str, str, Group]]:
    """(dataset, system, schedule, group) of each search setting with early stopping (its config has a
    patience) and the default of that setting's round beside it, where their runs recorded validation curves."""
    out = []
    for ds in paper.DATASETS:
        for system in dict.fromkeys(g.system for g in groups if g.train_dataset == ds):
            mine = [g for g in groups if g.system == system and g.train_dataset == ds and g.alpha is None]
            for long in (g for g in mine if g.config.get("patience") and g.valid_curves()):
                rounds = {s.round for s in long.search}
                default = next(
                    (
                        g
                        for g in mine
                        if g.valid_curves()
                        and any(s.round in rounds and s.setting == "profile default" for s in g.search)
                    ),
                    None,
                )
                schedule = f"{long.config.get('epochs')} epochs, patience {long.config.get('patience')}"
                if not any(g is long for *_, g in out):
                    out.append((ds, system, schedule, long))
                if default is not None and not any(g is default for *_, g in out):
                    out.append((ds, system, f"{default.config.get('epochs')} epochs (the default)", default))
    return out


def search_epochs_section(groups: list[Group], figdir: Path, rel: str) -> tuple[str | None, list[Path]]:
    """How many epochs the search's early-stopping setting trained: validation F1 after each epoch (mean over
    the runs that reached it), the epoch each run kept and where it stopped, beside the round's default (its
    schedule decays the learning rate to 0 at its last epoch), as a table and one PNG per dataset. None where
    no search record trained with a patience."""
    rows = _curve_rows(groups)
    if not rows:
        return None, []
    width = max(len(g.valid_by_epoch()) for *_, g in rows)
    table = []
    for ds, system, schedule, g in rows:
        runs = len(g.valid_curves())
        cells = [fmt(m) + (f" ({n})" if n < runs else "") for m, n in g.valid_by_epoch()]
        best = ", ".join(g.kept_epochs())
        table.append(
            [
                DATASET_LABEL[ds],
                system_label(system),
                schedule,
                str(runs),
                *cells,
                *["-"] * (width - len(cells)),
            ]
            + [best, search_minutes(g)]
        )
    header = ["Dataset", "System", "Schedule", "runs", *[f"ep {i + 1}" for i in range(width)], "best epoch"]
    figures = []
    for ds in dict.fromkeys(ds for ds, *_ in rows):
        png = figdir / f"search-epochs-{ds}.png"
        _plot_epochs([(system, schedule, g) for d, system, schedule, g in rows if d == ds], ds, png)
        figures.append(png)
    text = [
        "### How many epochs: validation F1 by epoch (recipe search)",
        "",
        "Validation F1 (conlleval) after each epoch of the search's early-stopping runs (the learning rate "
        "decays linearly to 0 at the schedule's last epoch; a run stops after 'patience' validations in a row "
        "without a gain and keeps its best epoch), mean over the runs that reached that epoch (their count in "
        "parentheses where early stopping ended some), beside the round's default, whose shorter schedule "
        "decays to 0 at its own last epoch. 'runs': those that recorded a curve. 'best epoch': the epoch each "
        "run kept ('stopped N': it ended after epoch N). In the figure each run is a faint line, and a hollow "
        "point is a mean over fewer runs than its row has.",
        "",
        md_table(header + ["min/run"], table),
        "",
        *[
            f"![validation F1 by epoch, {DATASET_LABEL[ds]}]({rel}/{png.name})"
            for ds, png in zip(dict.fromkeys(ds for ds, *_ in rows), figures, strict=True)
        ],
    ]
    return "\n".join(text), figures


def _plot_epochs(rows: list[tuple[str, str, Group]], ds: str, png: Path) -> None:
    """Each system's mean validation curve (solid: early stopping; dashed: the default), its runs faint; a hollow
    point is a mean over fewer runs than the row has (early stopping ended the others)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from catmner_bench.report.figures import save_png

    fig, ax = plt.subplots(figsize=(7, 4))
    colors: dict[str, Any] = {}
    for system, schedule, g in rows:
        color = colors.setdefault(system, f"C{len(colors)}")
        style = "--" if "default" in schedule else "-"
        for c in g.valid_curves():
            ax.plot(range(1, len(c) + 1), c, style, color=color, alpha=0.25, linewidth=0.8)
        pts = g.valid_by_epoch()
        runs = len(g.valid_curves())
        ax.plot(
            range(1, len(pts) + 1),
            [m for m, _ in pts],
            style,
            color=color,
            label=f"{system_label(system)}, {schedule} (n={runs})",
        )
        for i, (m, n) in enumerate(pts):  # hollow: a mean over fewer runs, as early stopping ended the others
            ax.plot(
                i + 1, m, "o", color=color, markersize=3.5, markerfacecolor=color if n == runs else "white"
            )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation F1")
    ax.set_title(f"Validation F1 by epoch, {DATASET_LABEL[ds]} (recipe search)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_png(fig, png)
    plt.close(fig)
