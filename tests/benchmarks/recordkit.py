"""Run records made in a test: a `BenchRecord` of the fields a test gives, its recipe facts as the planner
computes them (`recipes.recipe_of`) unless given, every other field empty."""

from __future__ import annotations

from typing import Any

from catmner_bench import paper
from catmner_bench.recipes import recipe_of
from catmner_bench.records import BenchRecord, Recipe, RunSpec


def scores(f1: float, per_type: dict[str, float] | None = None) -> dict[str, Any]:
    """One split's conlleval and strict scores: P = R = F1 = ``f1``; each type's F1 ``per_type`` or ``f1``."""
    types = {t: {"f1": (per_type or {}).get(t, f1)} for t in paper.ENTITY_TYPES}
    m = {"precision": f1, "recall": f1, "f1": f1, "per_type": types}
    return {"conlleval": m, "strict": m}


def make_record(
    system: str,
    ds: str = "twitter2015",
    seed: int = 1,
    f1: float = 0.0,
    config: dict[str, Any] | None = None,
    *,
    experiment: str = "table1",
    test: str | None = None,
    sample: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    created: str | None = None,
    wall_time_s: float = 60.0,
    label_words: dict[str, Any] | None = None,
    git: dict[str, Any] | None = None,
    recipe: Recipe | None = None,
) -> BenchRecord:
    """A record of ``system`` trained on ``ds`` (tested on ``test``, default ``ds``): test and validation F1
    ``f1`` unless ``metrics`` are given."""
    spec = RunSpec(experiment, system, ds, test or ds, seed, config if config is not None else {}, sample)
    return BenchRecord(
        run_key=spec.key,
        run_id=spec.run_id,
        spec=spec,
        created=created or f"2026-12-01T00:00:0{seed % 10}",
        git=git or {},
        packages={},
        hardware={},
        data={},
        label_words=label_words,
        metric={},
        metrics=metrics if metrics is not None else {"test": scores(f1), "valid": scores(f1)},
        wall_time_s=wall_time_s,
        recipe=recipe or recipe_of(spec),
        extra=extra or {},
    )
