"""The report's sections on the paper's conclusions: the summary that opens the page and the table of claims,
each judged by `catmner_bench.claims`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from catmner_bench.claims import UNTESTABLE, judge_all
from catmner_bench.outcomes import CONSISTENT, CONTRADICTS, INCONCLUSIVE

RULE = (
    "Each conclusion of Sections 4.2-4.4 against our records (test F1, conlleval), by one rule: our difference "
    "Δ with its 95% interval (over seeds: Student's t with the seed SD pooled over the span models of the "
    "table trained with the same budget, where Bartlett's test (p ≥ 0.05) finds their seed variances alike, "
    "each cell naming the pool; else Welch's t; Figure 3: a paired t over runs trained on the same tweets "
    "with the same seed) against the paper's effect. **consistent with the paper**: the paper's effect lies in "
    "our interval and the interval excludes 0 on its side (or lies wholly beyond it); **contradicts the "
    "paper**: the interval excludes the paper's effect; **inconclusive**: neither, shown with the smallest "
    "effect these runs detect (80% power, 5% two-sided). A closeness claim is consistent when the interval lies "
    "within ±1 F1, contradicted when it lies wholly outside. The paper gives no numbers for Figure 3: its "
    "claims are judged by their direction. One run a side, or runs not trained alike, give no interval and so "
    "no verdict other than inconclusive. The paper's effects come from its Table 1 (BERT-base) where it has "
    "the row, else its Table 3 (RoBERTa-large). The rule was changed to this form on 2026-12-07 (issue 29), "
    "after the records existed; earlier forms said 'does not hold' where the records only failed to detect an "
    "effect. The pooled seed SD was added the same day, also after the records existed. The rules are in `catmner_bench/claims.py` and `catmner_bench/outcomes.py`."
)


def verdicts_section(groups: Sequence[Any]) -> str:
    """Markdown: every conclusion of Sections 4.2-4.4 with its outcome on our records."""
    lines = [
        "## The paper's conclusions, checked here",
        "",
        RULE,
        "",
        "| § | conclusion of the paper | here | per dataset: Δ [95% interval] vs the paper's Δ | evidence |",
        "|---|---|---|---|---|",
    ]
    for c, j in judge_all(groups):
        cells = "<br>".join(f"{k}: {v}" for k, v in j.cells.items()) or "-"
        row = f"| {c.section} | {c.text} | **{j.outcome}** | {cells} | {j.evidence or '-'} |"
        lines.append(_escape_row(row))
    return "\n".join(lines)


def _escape_row(row: str) -> str:
    """Escape a literal | inside the cells of a Markdown table row (its own separators stay)."""
    cells = row.strip("|").split(" | ")
    return "| " + " | ".join(x.strip().replace("|", "\\|") for x in cells) + " |"


NOT_RUN = "not run yet"


def summary_section(groups: Sequence[Any]) -> str:
    """The page's opening: what holds, what is contradicted, what is undecided and what would decide it."""
    judged = judge_all(groups)
    by: dict[str, list[str]] = {
        CONSISTENT: [],
        CONTRADICTS: [],
        INCONCLUSIVE: [],
        NOT_RUN: [],
        UNTESTABLE: [],
    }
    decide: list[str] = []
    for c, j in judged:
        by[NOT_RUN if j.outcome == INCONCLUSIVE and not j.cells else j.outcome].append(c.text)
        for where, n, minutes in j.needs:
            cost = f", about {n * minutes / 60:.1f} CPU-hours a side at this recipe" if minutes else ""
            decide.append(f"{c.text} on {where}: {n} runs a side{cost}")
    lines = ["## Summary", ""]
    names = {
        CONSISTENT: "Consistent with the paper",
        CONTRADICTS: "Contradicts the paper",
        INCONCLUSIVE: "Inconclusive (our interval holds both the paper's effect and none)",
        NOT_RUN: "Not run yet",
        UNTESTABLE: "Cannot be tested here",
    }
    for k, title in names.items():
        lines.append(f"- **{title}** ({len(by[k])}): " + ("; ".join(by[k]) if by[k] else "none") + ".")
    if decide:
        lines += [
            "",
            "What would decide the datasets where a claim is inconclusive (runs a side that detect the paper's "
            "effect with 80% power, from our seed spread; the paper's encoder and images may matter more than "
            "seeds):",
            "",
            *(f"- {d}" for d in decide),
        ]
    return "\n".join(lines)
