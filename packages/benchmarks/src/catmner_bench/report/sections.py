"""The report's table sections, ours beside the paper's: Table 1 (main comparison), Table 2 (cross-dataset),
Table 3 (ablations), and how the numbers were produced (`provenance_section`)."""

from __future__ import annotations

from typing import Any

from catmner_bench import paper
from catmner_bench.records import METRIC_DEFINITION
from catmner_bench.report.tables import (
    DATASET_LABEL,
    TYPES,
    Group,
    fmt,
    fmt_delta,
    fmt_mean,
    md_table,
    mean,
    system_label,
)


def table1_section(groups: list[Group]) -> str:
    parts = ["## Table 1: main comparison (test split)", ""]
    parts.append(
        "Ours: mean ± std over seeds, conlleval entity-level micro scores (strict IOB2 F1 beside). 'Paper row' is "
        "the reported system ours is compared with (same system family; the paper's backbone may differ from our "
        "encoder, see the Encoder column); Δ F1 = ours − paper. Rows marked 'reported' are the paper's numbers "
        "only (systems this harness does not run, and the paper's own rows for reference)."
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
                    "reported",
                    row.backbone or "-",
                    *[fmt(sc.per_type_f1.get(t)) for t in TYPES],
                    fmt(sc.precision),
                    fmt(sc.recall),
                    fmt(sc.f1),
                    "-",
                    "-",
                    "-",
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


def table2_section(groups: list[Group]) -> str:
    parts = [
        "## Table 2: cross-dataset generalisation (trained on one dataset, tested on the other's test split)",
        "",
    ]
    parts.append(
        paper.TABLE2_NOTE
        + " Our CAT-MNER (textual KB) is compared with the paper's CAT-MNER; Δ = ours − paper."
    )
    rows = []
    for train_ds, test_ds in (("twitter2017", "twitter2015"), ("twitter2015", "twitter2017")):
        direction = f"{train_ds}->{test_ds}"
        label = f"{DATASET_LABEL[train_ds]} → {DATASET_LABEL[test_ds]}"
        ref = paper.TABLE2["cat-mner"][direction]
        for g in (g for g in groups if g.train_dataset == train_ds and g.test_dataset == test_ds):
            f1 = g.values("f1")
            is_cat = g.system == "cat-textual"
            rows.append(
                [
                    label,
                    system_label(g.system),
                    g.source,
                    g.encoder,
                    fmt_mean(g.values("precision")),
                    fmt_mean(g.values("recall")),
                    fmt_mean(f1),
                    fmt(ref[2]) if is_cat else "-",
                    fmt_delta(mean(f1) - ref[2]) if is_cat and f1 else "",
                ]
            )
        for key, vals in paper.TABLE2.items():
            p, r, f = vals[direction]
            rows.append(
                [label, paper.TABLE2_LABELS[key], "reported", "bert-base", fmt(p), fmt(r), fmt(f), fmt(f), ""]
            )
    header = ["Direction", "System", "Source", "Encoder", "P", "R", "F1", "Paper CAT-MNER F1", "Δ F1"]
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


def table3_section(groups: list[Group]) -> str:
    parts = ["## Table 3: ablations (test F1)", ""]
    parts.append(
        paper.TABLE3_NOTE + " 'Δ vs CAT' is each row minus its own CAT-MNER row (the paper's ↓ column); "
        "'ours − paper' compares the F1 values directly (our encoder is usually much smaller than RoBERTa-large)."
    )
    settings = sorted({(g.encoder, g.profile) for g in groups})
    for enc, prof in settings:
        rows = []
        by_sys = {
            (g.system, g.train_dataset): g
            for g in groups
            if (g.encoder, g.profile) == (enc, prof) and g.train_dataset == g.test_dataset
        }
        for system, row_key in TABLE3_SYSTEM_TO_ROW.items():
            label, p15, p17 = paper.TABLE3[row_key]
            reported = {"twitter2015": p15, "twitter2017": p17}
            cells = [label, system_label(system)]
            for ds in paper.DATASETS:
                g = by_sys.get((system, ds))
                base = by_sys.get(("cat-textual", ds))
                ours = mean(g.values("f1")) if g else None
                ours_base = mean(base.values("f1")) if base else None
                cells += [
                    fmt_mean(g.values("f1")) if g else "-",
                    fmt_delta(ours - ours_base)
                    if ours is not None and ours_base is not None and system != "cat-textual"
                    else "",
                    fmt(reported[ds]),
                    fmt_delta(reported[ds] - paper.TABLE3["cat"][1 + paper.DATASETS.index(ds)])
                    if system != "cat-textual"
                    else "",
                    fmt_delta(ours - reported[ds]) if ours is not None else "",
                ]
            rows.append(cells)
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


def provenance_section(records: list[dict[str, Any]]) -> str:
    parts = ["## How these numbers were produced", "", f"Metric: {METRIC_DEFINITION}", ""]
    commands = sorted({(r["spec"]["experiment"], r.get("extra", {}).get("command") or "?") for r in records})
    parts.append("Commands (as recorded in the run records):")
    parts.append("")
    parts += [f"- {exp}: `{cmd}`" for exp, cmd in commands]
    gits = sorted({(str(r["git"].get("commit")), str(r["git"].get("dirty"))) for r in records})
    parts += ["", "Source: " + "; ".join(f"commit {c}{' (dirty)' if d == 'True' else ''}" for c, d in gits)]
    hws = sorted(
        {
            f"{r['hardware'].get('platform')}, {r['hardware'].get('cpu_count')} CPUs, GPU: {', '.join(r['hardware'].get('gpus', [])) or 'none'}"
            for r in records
        }
    )
    parts += ["", "Hardware: " + "; ".join(hws)]
    pk = records[0]["packages"]
    parts += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in pk.items() if v)]
    lw = sorted(
        {
            (
                str((r.get("label_words") or {}).get("source")),
                str((r.get("label_words") or {}).get("checksum"))[:12],
            )
            for r in records
            if r.get("label_words")
        }
    )
    if lw:
        parts += ["", "Label words: " + "; ".join(f"{s} (sha256 {c}…)" for s, c in lw)]
    total = sum(r["wall_time_s"] for r in records)
    parts += ["", f"Runs: {len(records)}, total wall time {total / 60:.1f} min."]
    return "\n".join(parts)
