"""A run's recipe facts (`records.Recipe`) from the planner: whether its config is the one the planner trains
today (`status`), whether its experiment enters the verdicts, its saliency scale, and the recipe-search
settings it is. The runner writes them into every record it makes (`recipe_of`); a recipe change makes
them stale, and `refresh` (`catmner-bench records refresh DIR`) rewrites the block in place. The report
reads the stored facts only; nothing that renders or judges imports this module.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

from catmner_model.atomic import atomic_write_text

from catmner_bench.experiments import EXPERIMENT_SPECS, fig3_config
from catmner_bench.profiles import PROFILES
from catmner_bench.records import (
    SCHEMA_VERSION,
    BenchRecord,
    Recipe,
    RecordError,
    RunSpec,
    SearchSetting,
    read_json,
    record_files,
)
from catmner_bench.search_plan import SEARCH_ROUNDS
from catmner_bench.systems import SYSTEMS, default_caption_positions, saliency_of, system_config


def is_current(system: str, config: dict[str, Any], alpha: int | None = None) -> bool:
    """Whether ``config`` is what its profile resolves ``system`` to today (same data sizes, epochs and visual
    source as the config's; Figure 3 and the decisive experiment: at training size ``alpha``): the model the
    code on main trains, e.g. the current saliency default."""
    if system not in SYSTEMS or config.get("profile") not in PROFILES:
        return False
    profile = dataclasses.replace(
        PROFILES[config["profile"]], n_train=config.get("n_train"), n_eval=config.get("n_eval")
    )
    visual = config.get("visual") if config.get("visual") not in (None, "none") else None
    if alpha is not None:  # Figure 3: the profile's per-alpha epochs and validation interval
        return fig3_config(system, profile, alpha, visual=visual) == config
    return system_config(system, profile, epochs=config.get("epochs"), visual=visual) == config


def status(system: str, config: dict[str, Any], alpha: int | None = None) -> str:
    """ "current" (`is_current`); "placement": current but for the caption placement (a caption config from
    before issue 28 resolved ``caption_positions`` into run configs: those runs placed captions as "restart"),
    so such records keep their rank among the older ones until the reruns on the current placement exist;
    "older" otherwise."""
    if is_current(system, config, alpha):
        return "current"
    if "caption_positions" in config or "caption" not in str(config.get("visual") or "").split("+"):
        return "older"
    placement = default_caption_positions(str(config.get("text_encoder") or "minilm"))
    return "placement" if is_current(system, {**config, "caption_positions": placement}, alpha) else "older"


def search_settings(spec: RunSpec) -> tuple[SearchSetting, ...]:
    """The recipe-search settings ``spec``'s config is (rounds in order): a setting of a round under the
    config's profile, visual source and data size (none for a run of another experiment)."""
    if spec.experiment != "search" or spec.sample is not None:
        return ()
    cfg = spec.config
    visual = cfg.get("visual") if cfg.get("visual") != "none" else None
    key = (spec.system, cfg.get("profile"), visual, cfg.get("n_train"), cfg.get("n_eval"))
    return tuple(s for s, c in _round_configs(key) if c == json.dumps(cfg, sort_keys=True))


@functools.cache
def _round_configs(key: tuple) -> tuple[tuple[SearchSetting, str], ...]:
    """(setting, its config as key-sorted JSON) of every round for (system, profile, visual, n_train,
    n_eval); none where the profile or system is unknown today."""
    system, profile, visual, n_train, n_eval = key
    if profile not in PROFILES or system not in SYSTEMS:
        return ()
    data = {"n_train": n_train, "n_eval": n_eval}
    return tuple(
        (SearchSetting(rnd.name, name, i), json.dumps({**cfg, **data}, sort_keys=True))
        for rnd in SEARCH_ROUNDS
        for i, (name, cfg) in enumerate(rnd.configs(system, PROFILES[profile], visual))
    )


def recipe_of(spec: RunSpec) -> Recipe:
    """The recipe facts of a run, as the planner has them now."""
    e = EXPERIMENT_SPECS.get(spec.experiment)
    alpha = spec.sample.get("alpha") if isinstance(spec.sample, dict) else None
    return Recipe(
        status=status(spec.system, spec.config, alpha),
        in_verdicts=e is None or (e.scores_test and e.in_verdicts),
        saliency=saliency_of(spec.config),
        search=search_settings(spec),
    )


def refreshed(path: Path) -> BenchRecord:
    """The record in ``path`` with its recipe block as the planner computes it now (a record of schema 1 gets
    one); every other field as stored."""
    obj = read_json(path)
    if isinstance(obj, dict) and obj.get("schema_version") == 1 and "recipe" not in obj:
        stub = Recipe("older", False, None).to_json()  # replaced below
        obj = {**obj, "schema_version": SCHEMA_VERSION, "recipe": stub}
    rec = BenchRecord.from_json(obj, str(path))
    return dataclasses.replace(rec, recipe=recipe_of(rec.spec))


def refresh(directory: str | Path, strict: bool = True) -> tuple[int, int]:
    """Rewrite the recipe block of every record under ``directory`` (atomically, a file at a time) where it
    is not what the planner computes now: (records rewritten, records). Nothing else in a record changes.
    A file that is not a run record stops it with RecordError naming the file, or, not ``strict`` (`catmner-bench
    run`, which redoes such a run), is left as it is."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RecordError(f"{directory}: not a folder of benchmark records")
    paths = record_files(directory)
    changed = 0
    for path in paths:
        try:
            text = refreshed(path).to_text()
        except RecordError:
            if strict:
                raise
            continue
        if text != path.read_text(encoding="utf-8"):
            atomic_write_text(path, text)
            changed += 1
    return changed, len(paths)
