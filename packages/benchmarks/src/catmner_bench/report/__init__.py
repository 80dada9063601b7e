"""Render benchmark run records into a Markdown report with PNG plots, the paper's numbers beside ours.

This module owns the report: it reads ONLY run records (``records.iter_records``), the paper's numbers
(``paper.py``) and the report's names (``catalog.py``); nothing here trains or types a result, and nothing here
imports the planner (systems, experiments, profiles, the runner): what judging a run needs of its recipe is in
its record (``records.Recipe``). Runs that differ only by seed (or, for Figure 3, by
sampling) are aggregated as mean ± sample std over runs; "Δ" is ours minus the paper's.

Output: ``<out>/results.md`` and ``<out>/figures/*.png`` (matplotlib, Agg backend).

The package, by responsibility: `tables.py` (grouping records, number formats; `md_table` is
`catmner_bench.markdown`'s), `sections.py` (Tables 1-3, provenance), `search.py` (the recipe search),
`figures.py` (Figures 3 and 4, PNGs), `speed.py` (speed records), `document.py` (`write_report`: the sections in
order into results.md). Every name is importable from ``catmner_bench.report`` as before the split.
"""

from __future__ import annotations

from catmner_bench.catalog import DATASET_LABEL, SYSTEM_ORDER, system_label
from catmner_bench.markdown import md_table
from catmner_bench.report.document import write_report
from catmner_bench.report.figures import (
    FIG4_CAPTION_DRAWN,
    entropy,
    fig3_section,
    fig4_caption_section,
    fig4_section,
    plot_fig3,
    plot_fig4,
    plot_fig4_caption,
    save_png,
)
from catmner_bench.report.sections import (
    TABLE3_SYSTEM_TO_ROW,
    provenance_section,
    table1_section,
    table2_section,
    table3_section,
)
from catmner_bench.report.tables import (
    TYPES,
    Group,
    encoder_of,
    fmt,
    fmt_delta,
    fmt_mean,
    group_key,
    groups_of,
    mean,
    unique_runs,
)

__all__ = [
    "DATASET_LABEL",
    "FIG4_CAPTION_DRAWN",
    "SYSTEM_ORDER",
    "TABLE3_SYSTEM_TO_ROW",
    "TYPES",
    "Group",
    "encoder_of",
    "entropy",
    "fig3_section",
    "fig4_caption_section",
    "fig4_section",
    "fmt",
    "fmt_delta",
    "fmt_mean",
    "group_key",
    "groups_of",
    "md_table",
    "mean",
    "plot_fig3",
    "plot_fig4",
    "plot_fig4_caption",
    "provenance_section",
    "save_png",
    "system_label",
    "table1_section",
    "table2_section",
    "table3_section",
    "unique_runs",
    "write_report",
]
