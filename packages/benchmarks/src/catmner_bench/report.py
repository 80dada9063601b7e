"""Render benchmark run records into a Markdown report with PNG plots, the paper's numbers beside ours.

This module owns the report: it reads ONLY run records (``records.iter_records``) and the paper's numbers
(``paper.py``); nothing here trains or types a result. Runs that differ only by seed (or, for Figure 3, by
sampling) are aggregated as mean ± sample std over runs; "Δ" is ours minus the paper's.

Output: ``<out>/results.md`` and ``<out>/figures/*.png`` (matplotlib, Agg backend).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from catmner_model.utils import atomic_write, atomic_write_text

from catmner_bench import paper
from catmner_bench.records import METRIC_DEFINITION, RecordError, iter_records, sha256_file

TYPES = paper.ENTITY_TYPES
DATASET_LABEL = {"twitter2015": "Twitter-2015", "twitter2017": "Twitter-2017"}


def _system_order() -> tuple[str, ...]:
    from catmner_bench.runner import SYSTEMS

    return tuple(SYSTEMS)  # report rows follow the registry's order


SYSTEM_ORDER = _system_order()


# ------------------------------------------------------------------------------------------------ aggregation
def fmt(x: float | None) -> str:
    """A number as the report prints it (2 decimals), '-' for missing."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def fmt_mean(values: Sequence[float]) -> str:
    """'m' for one value, 'm ± s' (sample std) for several."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return f"{fmt(statistics.fmean(values))} ± {fmt(statistics.stdev(values))}"


def fmt_delta(x: float | None) -> str:
    return "" if x is None else f"{x:+.2f}"


def mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def encoder_of(rec: dict[str, Any]) -> str:
    c = rec["spec"]["config"]
    if c.get("kind") == "crf" and rec["spec"]["system"] != "lm-crf":
        return c.get("word_vectors", "-")
    return str(c.get("text_encoder", "-"))


def group_key(rec: dict[str, Any]) -> tuple:
    """Records with equal keys differ only by seed: they are aggregated into one row."""
    s = rec["spec"]
    cfg = {k: v for k, v in s["config"].items()}
    alpha = s["sample"]["alpha"] if s.get("sample") else None
    return (s["system"], s["train_dataset"], s["test_dataset"], alpha, repr(sorted(cfg.items())))


class Group:
    """Runs that differ only by seed (or Figure-3 sampling)."""

    def __init__(self, records: list[dict[str, Any]]):
        self.records = records
        first = records[0]["spec"]
        self.system = first["system"]
        self.train_dataset = first["train_dataset"]
        self.test_dataset = first["test_dataset"]
        self.config = first["config"]
        self.alpha = first["sample"]["alpha"] if first.get("sample") else None
        self.encoder = encoder_of(records[0])
        self.profile = self.config.get("profile", "?")

    def values(self, key: str, mode: str = "conlleval", split: str = "test") -> list[float]:
        """Overall P/R/F1 ("precision"/"recall"/"f1") or a type's F1 ("PER" ...) over the runs."""
        out = []
        for r in self.records:
            m = r["metrics"][split][mode]
            out.append(float(m["per_type"][key]["f1"]) if key in TYPES else float(m[key]))
        return out

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def seconds_per_epoch(self) -> float | None:
        """Median seconds per training epoch (with validation) over the runs' epochs; None for CRF runs."""
        secs = [
            float(x)
            for r in self.records
            for x in (r.get("seconds_per_epoch") or (r.get("extra") or {}).get("seconds_per_epoch") or [])
        ]
        return statistics.median(secs) if secs else None

    @property
    def source(self) -> str:
        epochs = self.config.get("epochs")
        visual = self.config.get("visual")
        vis = f", {visual}" if visual and visual != "none" else ""
        sal = ""
        if self.config.get("kind") == "span" and self.config.get("labels"):
            # records from before the field was resolved into the config trained with the paper's scale
            scale = self.config.get("saliency_scale") or (self.config.get("model_overrides") or {}).get(
                "saliency_scale", "paper"
            )
            sal = f", saliency {scale}"
        return f"ours ({self.profile}{f', {epochs} ep' if epochs else ''}{vis}{sal}, n={self.n})"


def unique_runs(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per run (system, datasets, config, seed, sample), across experiments: a Table 3 or Figure 4
    record that reuses a Table 1 run (or trained the same spec again) is not another seed of it. Table 1's
    record is kept where there is one."""
    rank = {"table1": 0}
    out: dict[tuple, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: rank.get(r["spec"]["experiment"], 1)):
        s = r["spec"]
        out.setdefault((group_key(r), s["seed"], repr(s.get("sample"))), r)
    return list(out.values())


def groups_of(records: Iterable[dict[str, Any]]) -> list[Group]:
    by: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by[group_key(r)].append(r)
    out = [
        Group(sorted(v, key=lambda r: (r["spec"]["seed"], str(r["spec"].get("sample"))))) for v in by.values()
    ]
    order = {s: i for i, s in enumerate(SYSTEM_ORDER)}
    out.sort(
        key=lambda g: (g.train_dataset, g.test_dataset, g.alpha or 0, order.get(g.system, 99), g.encoder)
    )
    return out


def system_label(system: str) -> str:
    from catmner_bench.runner import SYSTEMS

    return SYSTEMS[system].label if system in SYSTEMS else system


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    def clean(c: str) -> str:
        return str(c).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(clean(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------- sections
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


def fig3_section(groups: list[Group], figdir: Path, rel: str) -> tuple[str, list[Path]]:
    parts = ["## Figure 3: data efficiency (test F1 vs number of training tweets)", "", paper.FIG3_NOTE]
    figures = []
    for ds in paper.DATASETS:
        gs = [g for g in groups if g.train_dataset == ds and g.alpha is not None]
        if not gs:
            continue
        rows = []
        for g in gs:
            rows.append(
                [str(g.alpha), system_label(g.system), g.encoder, str(g.n), fmt_mean(g.values("f1"))]
                + [fmt_mean(g.values(t)) for t in TYPES]
            )
        header = ["alpha", "System", "Encoder", "samplings", "F1", *TYPES]
        png = figdir / f"fig3_{ds}.png"
        plot_fig3(gs, ds, png)
        figures.append(png)
        parts += [
            "",
            f"### {DATASET_LABEL[ds]}",
            "",
            md_table(header, rows),
            "",
            f"![Figure 3, {DATASET_LABEL[ds]}]({rel}/{png.name})",
        ]
    return "\n".join(parts), figures


def plot_fig3(gs: list[Group], ds: str, png: Path) -> None:
    """Overall and per-type F1 vs alpha, one line per system, mean with a ±std band and each run as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = ("f1", *TYPES)
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.4), squeeze=False)
    systems = [s for s in SYSTEM_ORDER if any(g.system == s for g in gs)]
    for ax, key in zip(axes[0], panels, strict=True):
        for system in systems:
            sg = sorted((g for g in gs if g.system == system), key=lambda g: g.alpha)
            xs = [g.alpha for g in sg]
            means = [statistics.fmean(g.values(key)) for g in sg]
            stds = [statistics.stdev(g.values(key)) if g.n > 1 else 0.0 for g in sg]
            (line,) = ax.plot(xs, means, marker="o", label=system_label(system))
            ax.fill_between(
                xs,
                [m - s for m, s in zip(means, stds, strict=True)],
                [m + s for m, s in zip(means, stds, strict=True)],
                alpha=0.2,
                color=line.get_color(),
            )
            for g in sg:
                ax.scatter([g.alpha] * g.n, g.values(key), s=8, color=line.get_color(), alpha=0.5)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sorted({g.alpha for g in gs}))
        ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.set_title("overall F1" if key == "f1" else f"{key} F1")
        ax.set_xlabel("training tweets (alpha)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test F1")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Data efficiency, {DATASET_LABEL[ds]} (ours; the paper gives no numbers for Fig. 3)")
    fig.tight_layout()
    save_png(fig, png)
    plt.close(fig)


def entropy(p: Sequence[float]) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


def fig4_section(records: list[dict[str, Any]], figdir: Path, rel: str) -> tuple[str, list[Path]]:
    parts = ["## Figure 4: attention of entity spans over the 4x4 image grid", "", paper.FIG4_NOTE]
    parts.append(
        "Each map is the last layer's text→visual attention of an entity span (mean over heads and the span's "
        "words), renormalised over the 16 grid cells. Unrefined = MM (no refinement), refined = CAT-MNER. "
        "'max cell' is the row-major index (0 = top-left) of the most attended cell; entropy is in nats "
        f"(uniform = {math.log(16):.2f})."
    )
    # (dataset, encoder) -> system -> case key -> case
    maps: dict[tuple[str, str], dict[str, dict[tuple, dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for r in records:
        cases = r.get("extra", {}).get("attention", {}).get("cases", [])
        for c in cases:
            key = (c["imgid"], c["entity"]["start"], c["entity"]["end"], c["entity"]["type"])
            maps[(c["dataset"], encoder_of(r))][r["spec"]["system"]][key] = c
    figures = []
    for (ds, enc), by_system in sorted(maps.items()):
        refined = by_system.get("cat-textual") or by_system.get("cat-visualgenome") or {}
        unrefined = by_system.get("mm") or {}
        keys = sorted(set(refined) | set(unrefined), key=lambda k: (k[0], k[1]))
        rows = []
        for k in keys:
            c = refined.get(k) or unrefined.get(k)
            words = " ".join(c["tokens"][k[1] : k[2]])
            row = [c["imgid"], words, f"{k[1]}:{k[2]}", k[3]]
            for m in (unrefined.get(k), refined.get(k)):
                row += (
                    [str(max(range(16), key=lambda i: m["grid"][i])), fmt(entropy(m["grid"]))]
                    if m
                    else ["-", "-"]
                )
            rows.append(row)
        header = [
            "IMGID",
            "Entity",
            "Span",
            "Type",
            "unrefined max cell",
            "unrefined entropy",
            "refined max cell",
            "refined entropy",
        ]
        parts += ["", f"### {DATASET_LABEL.get(ds, ds)}, encoder {enc}", "", md_table(header, rows)]
        for imgid in sorted({k[0] for k in keys}):
            ks = [k for k in keys if k[0] == imgid]
            png = figdir / f"fig4_{ds}_{_safe(enc)}_{imgid}.png"
            note = plot_fig4(imgid, ks, unrefined, refined, png)
            if note:
                parts.append(f"\n{imgid}: {note}")
                continue
            figures.append(png)
            parts.append(f"\n![Figure 4, {ds} {imgid}]({rel}/{png.name})")
    return "\n".join(parts), figures


FIG4_CAPTION_DRAWN = 8  # entity spans drawn per dataset in the caption heat-map


def fig4_caption_section(records: list[dict[str, Any]], figdir: Path, rel: str) -> tuple[str, list[Path]]:
    """Figure 4 over caption words: entity spans' attention over their tweet's caption pieces, refined
    (CAT-MNER) against unrefined (MM), summarised per dataset and drawn as a text heat-map."""
    maps: dict[tuple[str, str], dict[str, dict[tuple, dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for r in records:
        for c in r.get("extra", {}).get("caption_attention", {}).get("cases", []):
            key = (c["imgid"], c["entity"]["start"], c["entity"]["end"], c["entity"]["type"])
            maps[(c["dataset"], encoder_of(r))][r["spec"]["system"]].setdefault(key, c)
    if not maps:
        return "", []
    parts = [
        "## Figure 4 (captions): attention of entity spans over the caption words",
        "",
        "The last layer's text→caption attention of each gold entity span of the first test tweets (mean over "
        "heads and the span's words), renormalised over the caption's word pieces. Unrefined = MM, refined = "
        "CAT-MNER, the Table 1 caption models. Entropy in nats (lower = more focused); 'top piece agrees' = both "
        "models attend most to the same piece.",
    ]
    figures = []
    for (ds, enc), by_system in sorted(maps.items()):
        refined = by_system.get("cat-textual") or by_system.get("cat-visualgenome") or {}
        unrefined = by_system.get("mm") or {}
        both = sorted(set(refined) & set(unrefined), key=lambda k: (k[0], k[1]))
        rows = []
        for name, src in (("unrefined (MM)", unrefined), ("refined (CAT-MNER)", refined)):
            cs = [src[k] for k in both]
            ent = [entropy(c["weights"]) for c in cs]
            uni = [math.log(len(c["weights"])) for c in cs if len(c["weights"]) > 1]
            rows.append(
                [
                    name,
                    str(len(cs)),
                    fmt(mean(ent)) if ent else "-",
                    fmt(mean(uni)) if uni else "-",
                    fmt(mean([max(c["weights"]) for c in cs])) if cs else "-",
                ]
            )
        agree = sum(
            max(range(len(refined[k]["weights"])), key=refined[k]["weights"].__getitem__)
            == max(range(len(unrefined[k]["weights"])), key=unrefined[k]["weights"].__getitem__)
            for k in both
        )
        parts += [
            "",
            f"### {DATASET_LABEL.get(ds, ds)}, encoder {enc}",
            "",
            md_table(["Model", "entity spans", "mean entropy", "uniform entropy", "mean top weight"], rows),
            "",
            f"Top piece agrees on {agree} of {len(both)} spans.",
        ]
        if both:
            png = figdir / f"fig4_caption_{ds}_{_safe(enc)}.png"
            plot_fig4_caption(both[:FIG4_CAPTION_DRAWN], unrefined, refined, png)
            figures.append(png)
            parts.append(f"\n![Figure 4 (captions), {ds}]({rel}/{png.name})")
    return "\n".join(parts), figures


def plot_fig4_caption(keys: list[tuple], unrefined: dict, refined: dict, png: Path) -> None:
    """A text heat-map: per entity span, the caption's pieces shaded by unrefined and by refined attention
    (one colour scale per span)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("YlOrRd")  # light to dark; capped below its darkest so the text stays legible
    lines = 3 * len(keys)
    fig, ax = plt.subplots(figsize=(11, max(2.5, 0.32 * lines + 0.4)))
    ax.set_xlim(0, 110)
    ax.set_ylim(lines, 0)
    ax.axis("off")
    y = 0.5
    for k in keys:
        c = refined[k]
        words = " ".join(c["tokens"][k[1] : k[2]])
        ax.text(0, y, f"{c['imgid']}  '{words}' ({k[3]})", fontsize=8, weight="bold", va="center")
        y += 1
        vmax = max(max(src[k]["weights"]) for src in (unrefined, refined)) or 1.0
        for name, src in (("MM", unrefined), ("CAT-MNER", refined)):
            ax.text(0, y, name, fontsize=7, va="center", family="monospace")
            x = 10.0
            for piece, w in zip(src[k]["pieces"], src[k]["weights"], strict=True):
                ax.text(
                    x,
                    y,
                    piece,
                    fontsize=7,
                    va="center",
                    family="monospace",
                    bbox={"facecolor": cmap(0.7 * w / vmax), "edgecolor": "none", "pad": 1.0},
                )
                x += 0.75 * len(piece) + 1.2
            y += 1
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99)
    save_png(fig, png)
    plt.close(fig)


def _safe(s: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in Path(s).name or s)


def plot_fig4(imgid: str, keys: list[tuple], unrefined: dict, refined: dict, png: Path) -> str | None:
    """One row per entity span, columns unrefined | refined: the image with the 4x4 attention drawn over it.

    Returns a note instead of drawing when the recorded image is missing or changed since the run.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    any_case = refined.get(keys[0]) or unrefined.get(keys[0])
    path = Path(any_case["image"])
    if not path.is_file():
        return f"image {path} not found; attention maps are in the records but not drawn"
    if sha256_file(path) != any_case["image_sha256"]:
        return f"image {path} changed since the run (checksum differs); not drawn"
    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((320, 320))  # the grid is coarse; a small copy draws fast and keeps the aspect ratio
        img = np.asarray(im)
    h, w = img.shape[:2]
    fig, axes = plt.subplots(len(keys), 2, figsize=(6, 2.8 * len(keys)), squeeze=False)
    for row, k in enumerate(keys):
        # one colour scale per entity so that unrefined and refined maps compare directly
        vmax = max(max(src[k]["grid"]) for src in (unrefined, refined) if k in src)
        for col, (name, src) in enumerate((("unrefined (MM)", unrefined), ("refined (CAT-MNER)", refined))):
            ax = axes[row][col]
            ax.imshow(img)
            case = src.get(k)
            if case is not None:
                grid = np.asarray(case["grid"], dtype=float).reshape(4, 4)
                ax.imshow(
                    grid,
                    cmap="jet",
                    alpha=0.45,
                    extent=(0, w, h, 0),
                    interpolation="nearest",
                    vmin=0.0,
                    vmax=vmax,
                )
                for i in range(1, 4):
                    ax.axhline(h * i / 4, color="white", lw=0.5)
                    ax.axvline(w * i / 4, color="white", lw=0.5)
            words = " ".join((case or refined.get(k) or unrefined.get(k))["tokens"][k[1] : k[2]])
            ax.set_title(f"{name}: '{words}' ({k[3]})" if case else f"{name}: no map", fontsize=8)
            ax.axis("off")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.93, wspace=0.04, hspace=0.18)
    save_png(fig, png)
    plt.close(fig)
    return None


def save_png(fig: Any, png: Path, dpi: int = 80) -> None:
    """Save a matplotlib figure atomically."""
    atomic_write(png, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


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


# --------------------------------------------------------------------------------------------------- entry
def write_report(
    directory: str | Path, out: str | Path | None = None, title: str = "CAT-MNER benchmark results"
) -> dict[str, Any]:
    """Read every record under ``directory`` and write ``<out>/results.md`` + ``<out>/figures/*.png``.

    Returns {"markdown": path, "figures": [paths], "n_records": int, "sections": [experiments]}.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordError(f"{directory}: not a folder of benchmark records")
    loaded = [rec for _, rec in iter_records(directory)]
    if not loaded:
        raise RecordError(f"{directory}: no run records found (run `catmner-bench run ...` first)")
    out = Path(out) if out else directory / "report"
    figdir = out / "figures"
    by_exp: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in loaded:
        by_exp[r["spec"]["experiment"]].append(r)
    sections = [
        f"# {title}",
        "",
        "Generated by `catmner-bench report` from run records; do not edit by hand.",
    ]
    figures: list[Path] = []
    if "table1" in by_exp:
        sections += ["", table1_section(groups_of(by_exp["table1"]))]
    if "table2" in by_exp:
        sections += ["", table2_section(groups_of(by_exp["table2"]))]
    if "table3" in by_exp:
        sections += ["", table3_section(groups_of(by_exp["table3"]))]
    if "fig3" in by_exp:
        text, figs = fig3_section(groups_of(by_exp["fig3"]), figdir, "figures")
        sections += ["", text]
        figures += figs
    if "fig4" in by_exp:
        text, figs = fig4_section(by_exp["fig4"], figdir, "figures")
        sections += ["", text]
        figures += figs
        text, figs = fig4_caption_section(by_exp["fig4"], figdir, "figures")
        if text:
            sections += ["", text]
            figures += figs
    if "speed" in by_exp:
        from catmner_bench.speed import speed_section

        sections += ["", speed_section(by_exp["speed"])]
    from catmner_bench.verdicts import verdicts_section

    sections += ["", verdicts_section(groups_of(unique_runs(loaded)))]
    sections += ["", provenance_section(loaded), ""]
    md = out / "results.md"
    atomic_write_text(md, "\n".join(sections))
    return {"markdown": md, "figures": figures, "n_records": len(loaded), "sections": sorted(by_exp)}
