"""The report's aggregation and Markdown primitives: records grouped into runs that differ only by seed
(`Group`, `groups_of`, `unique_runs`), the numbers as printed (`fmt`, `fmt_mean`, `fmt_delta`), system labels
and order (`catmner_bench.catalog`); `md_table` is in `catmner_bench.markdown`."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence

from catmner_bench import paper
from catmner_bench.catalog import SYSTEM_ORDER
from catmner_bench.records import BenchRecord

TYPES = paper.ENTITY_TYPES


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


def encoder_of(rec: BenchRecord) -> str:
    c = rec.spec.config
    if c.get("kind") == "crf" and rec.spec.system != "lm-crf":
        return c.get("word_vectors", "-")
    return str(c.get("text_encoder", "-"))


def group_key(rec: BenchRecord) -> tuple:
    """Records with equal keys differ only by seed: they are aggregated into one row."""
    s = rec.spec
    return (s.system, s.train_dataset, s.test_dataset, rec.alpha, repr(sorted(s.config.items())))


class Group:
    """Runs that differ only by seed (or Figure-3 sampling); one config, so one recipe: ``currency`` (2 the
    config the planner trains today, 1 current but for the caption placement, 0 older) and ``saliency`` are
    its records' stored facts (`records.Recipe`)."""

    def __init__(self, records: list[BenchRecord]):
        self.records = records
        first = records[0]
        self.system = first.spec.system
        self.train_dataset = first.spec.train_dataset
        self.test_dataset = first.spec.test_dataset
        self.config = first.spec.config
        self.alpha = first.alpha
        self.encoder = encoder_of(first)
        self.profile = self.config.get("profile", "?")
        self.currency = first.recipe.rank
        self.saliency = first.recipe.saliency  # the scale a refined model trained with (None: no label words)
        self.search = first.recipe.search  # the recipe-search settings its config is

    def values(self, key: str, mode: str = "conlleval", split: str = "test") -> list[float]:
        """Overall P/R/F1 ("precision"/"recall"/"f1") or a type's F1 ("PER" ...) over the runs."""
        out = []
        for r in self.records:
            m = r.metrics[split][mode]
            out.append(float(m["per_type"][key]["f1"]) if key in TYPES else float(m[key]))
        return out

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def seconds_per_epoch(self) -> float | None:
        """Median seconds per training epoch (with validation) over the runs' epochs; None for CRF runs."""
        secs = [float(x) for r in self.records for x in r.extra.get("seconds_per_epoch") or []]
        return statistics.median(secs) if secs else None

    @property
    def wall_minutes(self) -> float | None:
        """Mean wall time of one run (minutes): training and scoring; a run that reused a model adds the wall
        time of the run that trained it (Table 1 scoring a search run's model on test) to its own scoring, and
        a copy of the same run made by another experiment (`runner.same_run`) that run's."""
        secs = [
            float(r.wall_time_s)
            + sum(
                float((r.extra.get(k) or {}).get("wall_time_s") or 0.0) for k in ("reused_model", "same_run")
            )
            for r in self.records
            if r.wall_time_s is not None
        ]
        return statistics.fmean(secs) / 60 if secs else None

    def valid_curves(self) -> list[list[float]]:
        """Validation F1 by epoch of each run that recorded it (records from before the field: none)."""
        out = []
        for r in self.records:
            curve = r.extra.get("valid_f1_by_epoch")
            if curve and all(isinstance(x, (int, float)) for x in curve):
                out.append([float(x) for x in curve])
        return out

    def valid_by_epoch(self) -> list[tuple[float, int]]:
        """(mean validation F1, runs) at each epoch, over the runs that reached it (early stopping ends some)."""
        curves = self.valid_curves()
        width = max((len(c) for c in curves), default=0)
        return [(mean(v), len(v)) for i in range(width) if (v := [c[i] for c in curves if i < len(c)])]

    def kept_epochs(self) -> list[str]:
        """The epoch whose model each run with a curve kept, 'N (stopped M)' where early stopping ended it
        after epoch M, in order."""
        kept = sorted(
            (
                (int(r.extra["best_epoch"]), r.extra.get("stopped_epoch"))
                for r in self.records
                if r.extra.get("best_epoch") is not None and r.extra.get("valid_f1_by_epoch")
            ),
            key=lambda bs: (bs[0], bs[1] or 0),
        )
        return [f"{b} (stopped {s})" if s else str(b) for b, s in kept]

    @property
    def source(self) -> str:
        epochs = self.config.get("epochs")
        visual = self.config.get("visual")
        vis = f", {visual}" if visual and visual != "none" else ""
        sal = f", saliency {self.saliency}" if self.saliency else ""
        lr = self.config.get("encoder_lr")  # span models and LM-CRF: the recipe search moved it
        enc = f", enc lr {lr:g}" if isinstance(lr, int | float) else ""
        return f"ours ({self.profile}{f', {epochs} ep' if epochs else ''}{enc}{vis}{sal}, n={self.n})"


def unique_runs(records: Iterable[BenchRecord]) -> list[BenchRecord]:
    """One record per run (system, datasets, config, seed, sample), across experiments: a Table 3 or Figure 4
    record that reuses a Table 1 run (or trained the same spec again) is not another seed of it. Table 1's
    record is kept where there is one."""
    rank = {"table1": 0}
    out: dict[tuple, BenchRecord] = {}
    for r in sorted(records, key=lambda r: rank.get(r.spec.experiment, 1)):
        out.setdefault((group_key(r), r.spec.seed, repr(r.spec.sample)), r)
    return list(out.values())


def groups_of(records: Iterable[BenchRecord]) -> list[Group]:
    by: dict[tuple, list[BenchRecord]] = defaultdict(list)
    for r in records:
        by[group_key(r)].append(r)
    out = [Group(sorted(v, key=lambda r: (r.spec.seed, str(r.spec.sample)))) for v in by.values()]
    order = {s: i for i, s in enumerate(SYSTEM_ORDER)}
    # within a system, the config the current code trains first, then older ones (e.g. an earlier recipe)
    out.sort(
        key=lambda g: (
            g.train_dataset,
            g.test_dataset,
            g.alpha or 0,
            order.get(g.system, 99),
            g.encoder,
            -g.currency,
        )
    )
    return out
