"""The report's figure sections and their PNGs: Figure 3 (data efficiency: F1 against training tweets) and
Figure 4 (attention of entity spans over the 4x4 image grid, and over the caption words), drawn with
matplotlib (Agg backend) and saved atomically (`save_png`)."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from catmner_model.atomic import atomic_write
from catmner_model.provenance import sha256_file_memo as sha256_file

from catmner_bench import paper
from catmner_bench.catalog import DATASET_LABEL, SYSTEM_ORDER, system_label
from catmner_bench.markdown import md_table
from catmner_bench.records import BenchRecord
from catmner_bench.report.tables import (
    TYPES,
    Group,
    encoder_of,
    fmt,
    fmt_mean,
    mean,
)

FIG3_OURS = (
    "Ours: mean ± std over samplings; each sampling of alpha training tweets trains every system on the same "
    "tweets with the same seed, and validation and test use the complete splits. 'Δ F1 vs TEXT (paired)': the "
    "mean per-sampling difference to TEXT ± its standard error, sd(d)/sqrt(n); 'sig.' when |Δ| > t·SE (a "
    "paired t-test, n - 1 degrees of freedom: t = 4.30 for 3 samplings). "
    "'Δ F1 vs MM (paired)': the same for a refined model against MM (the paper's claim of the refinement). "
    "'best epoch': the epoch each run kept (best validation F1 of the epochs it validated: about 10 a run), "
    "of the profile's epochs."
)


def _uneven_samplings(gs: list[Group]) -> list[str]:
    """Per alpha whose systems do not all have the same (sampling, seed) runs: "alpha 50 (TEXT 3, MM 2)"."""
    from catmner_bench.stats import by_sampling

    out = []
    for alpha in sorted({g.alpha for g in gs}):
        at = [g for g in gs if g.alpha == alpha]
        if len({frozenset(by_sampling(g)) for g in at}) > 1:
            out.append(f"alpha {alpha} (" + ", ".join(f"{system_label(g.system)} {g.n}" for g in at) + ")")
    return out


def fig3_section(groups: list[Group], figdir: Path, rel: str) -> tuple[str, list[Path]]:
    parts = [
        "## Figure 3: data efficiency (test F1 vs number of training tweets)",
        "",
        paper.FIG3_NOTE,
        "",
        FIG3_OURS,
    ]
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
                + [_paired_vs(g, gs, "lm-span"), _paired_vs(g, gs, "mm"), _best_epochs(g)]
            )
        header = [
            "alpha",
            "System",
            "Encoder",
            "samplings",
            "F1",
            *TYPES,
            "Δ F1 vs TEXT (paired)",
            "Δ F1 vs MM (paired)",
            "best epoch",
        ]
        png = figdir / f"fig3_{ds}.png"
        plot_fig3(gs, ds, png)
        figures.append(png)
        parts += ["", f"### {DATASET_LABEL[ds]}", "", md_table(header, rows)]
        if uneven := _uneven_samplings(gs):
            parts += [
                "",
                "Not every system has the same samplings at "
                + "; ".join(uneven)
                + ": the F1 columns and the plot average each system's own runs, so they compare different "
                "training tweets there; the paired Δ columns compare the samplings both have.",
            ]
        parts += ["", f"![Figure 3, {DATASET_LABEL[ds]}]({rel}/{png.name})"]
    return "\n".join(parts), figures


def _paired_vs(g: Group, gs: list[Group], baseline: str) -> str:
    """F1 minus ``baseline``'s at the same alpha, paired by sampling (same training tweets and seed). Against
    MM only for the models that refine with label words (MM is CAT-MNER without the refinement)."""
    from catmner_bench.verdicts import counterpart, paired

    if g.system == baseline or (baseline == "mm" and g.saliency is None):
        return ""
    if (base := counterpart(g, gs, baseline)) is None:
        return ""
    c = paired(g, base)
    return c.short() if c is not None else ""


def _best_epochs(g: Group) -> str:
    """The epoch each sampling's run kept (best validation F1), of the profile's epochs: ``7, 10, 10 of 10``."""
    kept = [r.extra.get("best_epoch") for r in g.records]
    if any(k is None for k in kept):
        return "-"
    budget = g.config.get("epochs")
    return ", ".join(str(k) for k in sorted(kept)) + (f" of {budget}" if budget else "")


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


def fig4_section(
    records: list[BenchRecord], figdir: Path, rel: str, image_dir: Path | None = None
) -> tuple[str, list[Path]]:
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
        cases = r.extra.get("attention", {}).get("cases", [])
        for c in cases:
            key = (c["imgid"], c["entity"]["start"], c["entity"]["end"], c["entity"]["type"])
            maps[(c["dataset"], encoder_of(r))][r.spec.system][key] = c
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
            note = plot_fig4(imgid, ks, unrefined, refined, png, image_dir)
            if note:
                parts.append(f"\n{imgid}: {note}")
                continue
            figures.append(png)
            parts.append(f"\n![Figure 4, {ds} {imgid}]({rel}/{png.name})")
    return "\n".join(parts), figures


FIG4_CAPTION_DRAWN = 8  # entity spans drawn per dataset in the caption heat-map


def _top(weights: list[float]) -> int:
    """The index of the largest weight."""
    return max(range(len(weights)), key=weights.__getitem__)


def _renormalised(weights: list[float]) -> list[float]:
    """``weights`` scaled to sum to 1 (empty when they sum to 0)."""
    total = sum(weights)
    return [w / total for w in weights] if total > 0 else []


def fig4_caption_section(records: list[BenchRecord], figdir: Path, rel: str) -> tuple[str, list[Path]]:
    """Figure 4 over caption words: entity spans' attention over their tweet's caption pieces, refined
    (CAT-MNER) against unrefined (MM), summarised per dataset and drawn as a text heat-map."""
    maps: dict[tuple[str, str], dict[str, dict[tuple, dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    lrs_of: dict[tuple[str, str], set[float]] = defaultdict(set)  # encoder lrs of the records behind a table
    for r in records:
        cases = r.extra.get("caption_attention", {}).get("cases", [])
        for c in cases:
            key = (c["imgid"], c["entity"]["start"], c["entity"]["end"], c["entity"]["type"])
            maps[(c["dataset"], encoder_of(r))][r.spec.system].setdefault(key, c)
        for table in {(c["dataset"], encoder_of(r)) for c in cases}:
            lrs_of[table] |= {r.spec.config.get("encoder_lr")} - {None}
    if not maps:
        return "", []
    parts = [
        "## Figure 4 (captions): attention of entity spans over the caption words",
        "",
        "The last layer's text→caption attention of each gold entity span of the first test tweets (mean over "
        "heads and the span's words), renormalised over the caption's word pieces. Unrefined = MM, refined = "
        "CAT-MNER: the caption models of the Figure 4 records (Table 1's models where their config matched; "
        "the heading names their encoder lr). Entropy in nats (lower = more focused); 'top piece agrees' = both "
        "models attend most to the same piece. A model that puts most of its weight on the caption's first "
        "piece whatever its word (an attention sink: spare attention parked on one position) attends to no "
        "content there, so a low entropy alone does not mean focus: 'weight on first piece' and 'top is first "
        "piece' show how much sits there, and 'entropy w/o first' is the entropy over the other pieces "
        "(renormalised).",
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
            rest = [w for c in cs if len(c["weights"]) > 2 and (w := _renormalised(c["weights"][1:]))]
            rows.append(
                [
                    name,
                    str(len(cs)),
                    fmt(mean(ent)) if ent else "-",
                    fmt(mean(uni)) if uni else "-",
                    fmt(mean([max(c["weights"]) for c in cs])) if cs else "-",
                    fmt(mean([c["weights"][0] for c in cs])) if cs else "-",
                    f"{sum(_top(c['weights']) == 0 for c in cs)} of {len(cs)}",
                    fmt(mean([entropy(w) for w in rest])) if rest else "-",
                ]
            )
        agree = sum(_top(refined[k]["weights"]) == _top(unrefined[k]["weights"]) for k in both)
        lrs = sorted(lrs_of[(ds, enc)])
        header = [
            "Model",
            "entity spans",
            "mean entropy",
            "uniform entropy",
            "mean top weight",
            "weight on first piece",
            "top is first piece",
            "entropy w/o first",
        ]
        parts += [
            "",
            f"### {DATASET_LABEL.get(ds, ds)}, encoder {enc}"
            + (f" (enc lr {', '.join(f'{x:g}' for x in lrs)})" if lrs else ""),
            "",
            md_table(header, rows),
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


def plot_fig4(
    imgid: str, keys: list[tuple], unrefined: dict, refined: dict, png: Path, image_dir: Path | None = None
) -> str | None:
    """One row per entity span, columns unrefined | refined: the image with the 4x4 attention drawn over it.

    The image is the recorded path, else ``image_dir/<dataset>_images/<file>`` (a record's path may be relative
    to where the run was made); its checksum must match the record's. Returns a note instead of drawing when
    the image is missing or changed since the run.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    any_case = refined.get(keys[0]) or unrefined.get(keys[0])
    path = Path(any_case["image"])
    if not path.is_file() and image_dir is not None:
        path = Path(image_dir) / path.parent.name / path.name
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
