"""The report's table sections, ours beside the paper's: Table 1 (main comparison), Table 2 (cross-dataset),
Table 3 (ablations), and how the numbers were produced (`provenance_section`)."""

from __future__ import annotations

from catmner_bench import paper
from catmner_bench.catalog import DATASET_LABEL, system_label
from catmner_bench.markdown import md_table
from catmner_bench.records import METRIC_DEFINITION, BenchRecord
from catmner_bench.report.tables import (
    TYPES,
    Group,
    fmt,
    fmt_delta,
    fmt_mean,
    mean,
)

SIGNIFICANCE_NOTE = (
    "'Δ F1 vs TEXT': test F1 minus that of our LM-SPAN (TEXT) row of the same dataset (the one trained most "
    "alike: same epochs, data and learning rates where one is, else the current code's; a cell names what "
    "differs), ± its standard error over seeds, SE = sqrt(s_a²/n_a + s_b²/n_b); 'sig.' when |Δ| > t·SE, t the "
    "two-sided 95% quantile of Student's t at the Welch-Satterthwaite degrees of freedom (Welch's test: with 3 "
    "seeds a side, t ≥ 2.78), 'ns' otherwise; a row with one seed is not tested."
)


def _vs(groups: list[Group], g: Group, baseline: str) -> str:
    """The seed test of ``g`` against our ``baseline`` system on the same train/test datasets (a table cell)."""
    from catmner_bench.verdicts import between, counterpart

    if g.system == baseline or g.alpha is not None:
        return ""
    base = counterpart(g, groups, baseline)
    if base is None:
        return "-"
    return between(g, base).short()


def epochs_section(groups: list[Group]) -> str | None:
    """How many epochs: validation F1 by epoch of the Table 1 runs that recorded their curve (mean over seeds),
    and the epoch whose model was kept. None when no record has a curve (records from before the field)."""
    rows = []
    for g in groups:
        runs = len(g.valid_curves())
        if not runs or g.train_dataset != g.test_dataset:
            continue
        best = g.kept_epochs()
        stopped = any("stopped" in b for b in best)  # early stopping ended a run: its budget did not
        rows.append((g, g.valid_by_epoch(), best, runs, stopped))
    if not rows:
        return None
    width = max(len(by_epoch) for _, by_epoch, *_ in rows)
    header = ["Dataset", "System", "Source", "runs", *[f"epoch {i + 1}" for i in range(width)], "best epoch"]
    table = [
        [
            DATASET_LABEL[g.train_dataset],
            system_label(g.system),
            g.source,
            str(n),
            *[fmt(m) + (f" ({k})" if k < n else "") for m, k in by_epoch],
            *["-"] * (width - len(by_epoch)),
            ", ".join(best),
        ]
        for g, by_epoch, best, n, _ in rows
    ]
    budget = [[m for m, _ in by_epoch] for _, by_epoch, _, _, stopped in rows if not stopped]
    rising = sum(1 for curve in budget if curve[-1] >= max(curve))
    early = len(rows) - len(budget)
    return "\n".join(
        [
            "## Epochs: validation F1 by epoch",
            "",
            "Validation F1 (conlleval) after each epoch, mean over the runs that recorded it; 'best epoch': the "
            "epoch whose model each run kept (best validation F1; test is scored only for it). "
            f"In {rising} of {len(budget)} rows validation F1 is highest at the last epoch: the profile's epoch "
            "budget, not the curve, ends training there."
            + (
                f" In {early} row(s) early stopping ended runs ('stopped N': after epoch N, its patience of "
                "validations without a gain spent); an epoch's mean is over the runs that reached it, their count in "
                "parentheses where that is fewer than the row's."
                if early
                else ""
            ),
            "",
            md_table(header, table),
        ]
    )


def table1_section(groups: list[Group]) -> str:
    parts = ["## Table 1: main comparison (test split)", ""]
    parts.append(
        "Ours: mean ± std over seeds, conlleval entity-level micro scores (strict IOB2 F1 beside). 'Paper row' is "
        "the reported system ours is compared with (same system family; the paper's backbone may differ from our "
        "encoder, see the Encoder column); Δ F1 = ours − paper. Rows marked 'reported' are the paper's numbers "
        "only (systems this harness does not run, and the paper's own rows for reference). "
        + SIGNIFICANCE_NOTE
        + " 'min/run': mean wall time of one run (training with validation each epoch, and scoring)."
    )
    for ds in paper.DATASETS:
        rows = []
        for g in (g for g in groups if g.train_dataset == ds and g.test_dataset == ds):
            ref = paper.reference_row_for(
                g.system, g.encoder if g.system not in ("bilstm-crf", "cnn-bilstm-crf") else ""
            )
            ref_row = paper.table1_row(ref) if ref else None
            ref_f1 = ref_row.scores[ds].f1 if ref_row else None
            f1 = g.values("f1")
            rows.append(
                [
                    system_label(g.system),
                    g.source,
                    g.encoder,
                    *[fmt_mean(g.values(t)) for t in TYPES],
                    fmt_mean(g.values("precision")),
                    fmt_mean(g.values("recall")),
                    fmt_mean(f1),
                    fmt_mean(g.values("f1", "strict")),
                    fmt_mean(g.values("f1", split="valid")),
                    fmt(g.seconds_per_epoch) if g.seconds_per_epoch is not None else "-",
                    f"{g.wall_minutes:.1f}" if g.wall_minutes is not None else "-",
                    _vs(groups, g, "lm-span"),
                    ref_row.label if ref_row else "-",
                    fmt(ref_f1),
                    fmt_delta(mean(f1) - ref_f1 if ref_f1 is not None and f1 else None),
                ]
            )
        for row in paper.TABLE1:
            sc = row.scores[ds]
            rows.append(
                [
                    row.label,
                    f"reported; {row.here}" if row.here else "reported",
                    row.backbone or "-",
                    *[fmt(sc.per_type_f1.get(t)) for t in TYPES],
                    fmt(sc.precision),
                    fmt(sc.recall),
                    fmt(sc.f1),
                    "-",
                    "-",
                    "-",
                    "-",
                    "",
                    row.label,
                    fmt(sc.f1),
                    "",
                ]
            )
        header = [
            "System",
            "Source",
            "Encoder",
            *TYPES,
            "P",
            "R",
            "F1",
            "F1 strict",
            "valid F1",
            "s/epoch",
            "min/run",
            "Δ F1 vs TEXT",
            "Paper row",
            "Paper F1",
            "Δ F1",
        ]
        parts += ["", f"### {DATASET_LABEL[ds]}", "", md_table(header, rows)]
    parts += [
        "",
        "Paper provenance: " + "; ".join(sorted({f"{r.label}: {r.provenance}" for r in paper.TABLE1})),
    ]
    return "\n".join(parts)


TABLE2_PAPER_ROW = {"cat-textual": "cat-mner", "umt": "umt", "umt-grid": "umt"}  # our system -> paper.TABLE2


def table2_section(groups: list[Group]) -> str:
    parts = [
        "## Table 2: cross-dataset generalisation (trained on one dataset, tested on the other's test split)",
        "",
    ]
    parts.append(
        paper.TABLE2_NOTE
        + " Our CAT-MNER (textual KB) is compared with the paper's CAT-MNER, our UMT with the paper's UMT; Δ = "
        "ours − paper. Our models are the "
        "Table 1 models of the training dataset, scored on the other dataset's test split. "
        + SIGNIFICANCE_NOTE.replace("of the same dataset", "of the same direction")
    )
    rows = []
    for train_ds, test_ds in (("twitter2017", "twitter2015"), ("twitter2015", "twitter2017")):
        direction = f"{train_ds}->{test_ds}"
        label = f"{DATASET_LABEL[train_ds]} → {DATASET_LABEL[test_ds]}"
        ref = paper.TABLE2["cat-mner"][direction]
        for g in (g for g in groups if g.train_dataset == train_ds and g.test_dataset == test_ds):
            f1 = g.values("f1")
            key = TABLE2_PAPER_ROW.get(g.system)  # the paper's row of the same system, if any
            ref = paper.TABLE2[key][direction] if key else None
            rows.append(
                [
                    label,
                    system_label(g.system),
                    g.source,
                    g.encoder,
                    fmt_mean(g.values("precision")),
                    fmt_mean(g.values("recall")),
                    fmt_mean(f1),
                    _vs(groups, g, "lm-span"),
                    fmt(ref[2]) if ref else "-",
                    fmt_delta(mean(f1) - ref[2]) if ref and f1 else "",
                ]
            )
        for key, vals in paper.TABLE2.items():
            p, r, f = vals[direction]
            rows.append(
                [
                    label,
                    paper.TABLE2_LABELS[key],
                    "reported",
                    "bert-base",
                    fmt(p),
                    fmt(r),
                    fmt(f),
                    "",
                    fmt(f),
                    "",
                ]
            )
    header = [
        "Direction",
        "System",
        "Source",
        "Encoder",
        "P",
        "R",
        "F1",
        "Δ F1 vs TEXT",
        "Paper F1",
        "Δ F1",
    ]
    parts += ["", md_table(header, rows)]
    return "\n".join(parts)


TABLE3_SYSTEM_TO_ROW = {
    "cat-textual": "cat",
    "mm": "mm",
    "t2i": "t2i",
    "i2t": "i2t",
    "lm-span": "text",
    "cat-visualgenome": "cat-visualgenome",
}


SALIENCY_ROWS = {  # our saliency-scale rows of Table 3 (the paper has none: Eq. 6 is its only scale)
    "paper": "CAT-MNER, saliency as Eq. 6 (the paper's)",
    "keys": "CAT-MNER, saliency x #keys",
    "learned": "CAT-MNER, learned saliency scale",
}


def _saliency_groups(pool: list[Group], ds: str, cat: Group | None) -> dict[str, Group]:
    """Per saliency scale, the CAT-MNER (textual words, same visual source as ``cat``) group trained with
    ``cat``'s recipe if there is one, else the one with most runs."""
    from catmner_bench.verdicts import differences

    out: dict[str, Group] = {}
    if cat is None:
        return out

    def rank(g: Group) -> tuple:
        return (not differences(g, cat, saliency=False), g.n)

    for g in pool:
        if (
            g.system in ("cat-textual", "cat-sal-paper", "cat-sal-keys", "cat-sal-learned")
            and g.train_dataset == g.test_dataset == ds
            and g.alpha is None
            and g.config.get("visual") == cat.config.get("visual")
            and g.config.get("epochs") == cat.config.get("epochs")
            and g.saliency in SALIENCY_ROWS
            and (g.saliency not in out or rank(g) > rank(out[g.saliency]))
        ):
            out[g.saliency] = g
    return out


def _delta_vs_cat(g: Group, shown: Group, cats: list[Group], saliency_row: bool = False) -> str:
    """``g`` − CAT-MNER, ± SE over seeds: against the CAT-MNER row shown when ``g`` was trained alike, else
    against the CAT-MNER group of ``g``'s own recipe (named in the cell), so that a row from before a recipe
    change is not compared with a model trained differently. A saliency row compares with CAT-MNER at the
    shown row's (default) scale."""
    from catmner_bench.stats import Comparison
    from catmner_bench.verdicts import between, differences

    def alike(b: Group) -> bool:
        if saliency_row:
            return not differences(g, b, saliency=False) and b.saliency == shown.saliency
        return not differences(g, b)

    if alike(shown):
        base = shown
    else:
        ok = [b for b in cats if alike(b)]
        if not ok:  # the closest CAT-MNER, not tested, with what differs
            same = [b for b in cats if not saliency_row or b.saliency == shown.saliency] or cats
            base = min(same, key=lambda b: (len(differences(g, b, saliency=not saliency_row)), -b.n))
            cell = between(g, base, saliency=not saliency_row).short()
            return f"{cell} vs CAT-MNER {fmt_mean(base.values('f1'))}"
        base = max(ok, key=lambda b: (b.currency, b.n))
    cell = Comparison(g.values("f1"), base.values("f1")).short()
    if base is shown:
        return cell
    how = differences(base, shown, saliency=not saliency_row)
    return f"{cell} vs CAT-MNER {fmt_mean(base.values('f1'))} ({'; '.join(how)})"


def table3_section(groups: list[Group], others: list[Group] | None = None) -> str:
    """Table 3 from its own records, plus our saliency-scale rows, which may come from any experiment's records
    (``others``, e.g. Table 1's CAT-MNER runs with the paper's scale)."""
    from catmner_bench.verdicts import pick

    parts = ["## Table 3: ablations (test F1)", ""]
    parts.append(
        paper.TABLE3_NOTE
        + " 'Δ vs CAT' is each row minus its own CAT-MNER row (the paper's ↓ column), ours ± "
        "the standard error over seeds, 'sig.' by Welch's test as in Table 1 (a row with one seed is not tested); a row from "
        "an older recipe is compared with the CAT-MNER of its own recipe, named in the cell; "
        "'ours − paper' compares the F1 values directly (our encoder is usually much smaller than RoBERTa-large). "
        "Where one of our systems has records of several configs (e.g. from before a default changed), the row is "
        "the config the current code trains; a system without Table 3 runs shows its runs of another experiment "
        "(the same model, e.g. Table 1's). The saliency rows are ours only (the paper has one scale, Eq. 6)."
    )
    settings = sorted({(g.encoder, g.profile) for g in groups})
    for enc, prof in settings:
        rows = []
        mine = [
            g for g in groups if (g.encoder, g.profile) == (enc, prof) and g.train_dataset == g.test_dataset
        ]
        pool = [g for g in (*mine, *(others or ())) if (g.encoder, g.profile) == (enc, prof)]
        # a row without Table 3 records of its own shows the system's runs of another experiment (e.g. Table 1's
        # CAT-MNER with Visual Genome words: the same model)
        picked = {
            (system, ds): pick(mine, system, ds) or pick(pool, system, ds)
            for system in TABLE3_SYSTEM_TO_ROW
            for ds in paper.DATASETS
        }
        by_sys = {k: g for k, g in picked.items() if g is not None}
        sal = {ds: _saliency_groups(pool, ds, by_sys.get(("cat-textual", ds))) for ds in paper.DATASETS}
        cats = {
            ds: [
                g
                for g in pool
                if g.system == "cat-textual" and g.train_dataset == g.test_dataset == ds and g.alpha is None
            ]
            for ds in paper.DATASETS
        }
        for scale, label in SALIENCY_ROWS.items():
            cells = ["-", label]
            shown = False
            for ds in paper.DATASETS:
                g, base = sal[ds].get(scale), by_sys.get(("cat-textual", ds))
                same = g is not None and base is not None and g.records == base.records
                if g is None or same:
                    cells += ["-" if g is None else "(the CAT-MNER row)", "", "-", "", ""]
                    continue
                shown = True
                cells += [
                    fmt_mean(g.values("f1")),
                    _delta_vs_cat(g, base, cats[ds], saliency_row=True) if base else "",
                    "-",
                    "",
                    "",
                ]
            if shown:
                rows.append(cells)
        sal_rows, rows = rows, []
        for system, row_key in TABLE3_SYSTEM_TO_ROW.items():
            label, p15, p17 = paper.TABLE3[row_key]
            reported = {"twitter2015": p15, "twitter2017": p17}
            cells = [label, system_label(system)]
            for ds in paper.DATASETS:
                g = by_sys.get((system, ds))
                base = by_sys.get(("cat-textual", ds))
                ours = mean(g.values("f1")) if g else None
                cells += [
                    fmt_mean(g.values("f1")) if g else "-",
                    _delta_vs_cat(g, base, cats[ds])
                    if g is not None and base is not None and system != "cat-textual"
                    else "",
                    fmt(reported[ds]),
                    fmt_delta(reported[ds] - paper.TABLE3["cat"][1 + paper.DATASETS.index(ds)])
                    if system != "cat-textual"
                    else "",
                    fmt_delta(ours - reported[ds]) if ours is not None else "",
                ]
            rows.append(cells)
        rows += sal_rows
        header = ["Paper row", "Our system"]
        for ds in paper.DATASETS:
            d = DATASET_LABEL[ds]
            header += [
                f"{d} ours",
                f"{d} ours Δ vs CAT",
                f"{d} paper",
                f"{d} paper Δ vs CAT",
                f"{d} ours − paper",
            ]
        title = f"Encoder: {enc}" + (f" (profile {prof})" if len(settings) > 1 else "")
        parts += ["", f"### {title}", "", md_table(header, rows)]
    return "\n".join(parts)


def provenance_section(records: list[BenchRecord]) -> str:
    parts = ["## How these numbers were produced", "", f"Metric: {METRIC_DEFINITION}", ""]
    commands = sorted({(r.spec.experiment, r.extra.get("command") or "?") for r in records})
    parts.append("Commands (as recorded in the run records):")
    parts.append("")
    parts += [f"- {exp}: `{cmd}`" for exp, cmd in commands]
    gits = sorted({(str(r.git.get("commit")), str(r.git.get("dirty"))) for r in records})
    parts += ["", "Source: " + "; ".join(f"commit {c}{' (dirty)' if d == 'True' else ''}" for c, d in gits)]
    hws = sorted(
        {
            f"{r.hardware.get('platform')}, {r.hardware.get('cpu_count')} CPUs, "
            f"GPU: {', '.join(r.hardware.get('gpus', [])) or 'none'}"
            for r in records
        }
    )
    parts += ["", "Hardware: " + "; ".join(hws)]
    pk = records[0].packages
    parts += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in pk.items() if v)]
    lw = sorted(
        {
            (str(r.label_words.get("source")), str(r.label_words.get("checksum"))[:12])
            for r in records
            if r.label_words
        }
    )
    if lw:
        parts += ["", "Label words: " + "; ".join(f"{s} (sha256 {c}…)" for s, c in lw)]
    total = sum(r.wall_time_s for r in records)
    parts += ["", f"Runs: {len(records)}, total wall time {total / 60:.1f} min.{compute_total(records)}"]
    parts += ["", rerun_note()]
    return "\n".join(parts)


def compute_total(records: list[BenchRecord]) -> str:
    """The provenance's compute sentence, summed over the runs whose record names the resources that ran
    them (its ``extra["compute"]``: executor, node, CPUs, GPUs): CPU-hours and GPU-hours (wall time x
    resources), the nodes and executors; "" when no record names them (records from before they did)."""
    known = [(r, r.extra.get("compute")) for r in records]
    known = [(r, c) for r, c in known if isinstance(c, dict) and isinstance(c.get("resources"), dict)]
    if not known:
        return ""
    hours = {
        k: sum(float(r.wall_time_s) * float(c["resources"].get(k) or 0) for r, c in known) / 3600
        for k in ("CPU", "GPU")
    }
    nodes = sorted({str(c.get("node")) for _, c in known})
    executors = sorted({str(c.get("executor")) for _, c in known})
    of = "" if len(known) == len(records) else f" (the {len(known)} runs whose records name their resources)"
    return (
        f" Compute: {hours['CPU']:.2f} CPU-hours, {hours['GPU']:.2f} GPU-hours{of}, on {len(nodes)} "
        f"node(s) ({', '.join(nodes)}), executor {', '.join(executors)}."
    )


def rerun_note() -> str:
    """How to rerun every record of this page, and how a user with a GPU reruns it with the paper's setting."""
    p = paper.SETTING  # what `--profile paper` runs
    return (
        "Rerun: each command above, at the commit its records name (Source), reproduces them (finished runs are "
        "skipped, an interrupted one resumes from its last epoch); at a later commit it trains that commit's "
        "recipe, and a run of another config is a new record. `catmner-bench report DIR --out docs --title "
        "TITLE --image-dir IMAGES` renders this page. With a GPU and the paper's "
        f"encoders, `--profile paper` runs Section 4.1's setting: text encoder `{p.text_encoder}`, image encoder "
        f"`{p.image_encoder}` (both must be available to transformers / open_clip), {p.epochs} epochs, batch "
        f"{p.batch_size}, lr {p.lr:g} (encoder {p.encoder_lr:g}), seeds {', '.join(map(str, p.seeds))}, "
        f"Figure 3 with {p.fig3_samplings} samplings of {', '.join(map(str, p.fig3_alphas))} tweets and "
        f"{p.fig3_epochs} epochs; e.g. `catmner-bench run table1 --profile paper --visual grid --data-dir DATA "
        "--output runs/paper` (`--text-encoder bert-base-cased` for the BERT-base rows)."
    )
