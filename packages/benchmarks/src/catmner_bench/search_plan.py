"""The recipe search's plan: its rounds (`SEARCH_ROUNDS`), each a set of settings applied one at a time to a
base recipe (`SearchRound`), and which settings are a different model for a system (`applies`). The experiment
that runs them is `catmner_bench.experiments.RecipeSearch`; the report reads the rounds' texts from
`catmner_bench.catalog` and each record's settings from its recipe block."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from catmner_bench.systems import SYSTEMS, system_config

# The recipe search, in rounds: each round changes one factor at a time around its base recipe (name, change of
# the run config). "model_overrides" entries are merged into the system's own; other keys replace the value.
SEARCH_SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("profile default", {}),
    ("encoder lr 1e-4", {"encoder_lr": 1e-4}),
    ("encoder lr 2e-4", {"encoder_lr": 2e-4}),  # past the grid's edge, since 1e-4 led on Twitter-2017
    ("encoder lr 3e-5", {"encoder_lr": 3e-5}),
    ("new-layer lr 1e-3", {"lr": 1e-3}),
    ("batch 10 (the paper's)", {"batch_size": 10}),
    ("6 epochs (best on validation kept)", {"epochs": 6}),
    ("no warm-up", {"warmup_ratio": 0.0}),
    ("dropout 0.2 (new layers)", {"model_overrides": {"dropout": 0.2}}),
    ("spans up to 6 words", {"model_overrides": {"max_span_len": 6}}),
    ("word shapes", {"model_overrides": {"case_features": "shape"}}),
    ("word shapes + char CNN", {"model_overrides": {"case_features": "shape+char"}}),
)


@dataclass(frozen=True)
class SearchRound:
    """One round of the recipe search: ``settings`` applied one at a time to the round's base, the profile's
    recipe with ``pins[profile name]`` (the values that profile had when the round ran, so a round's runs
    keep their meaning after its choice became the profile's default)."""

    name: str  # what it tried: catalog.SEARCH_ROUNDS[name] (where the report reads it)
    settings: tuple[tuple[str, dict[str, Any]], ...]
    # (profile name, ((field, value), ...)); value None: the field was not in the configs then (e.g.
    # caption_positions before issue 28: those runs placed captions as "restart", and retrain so)
    pins: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()

    def base(self, system: str, profile: Any, visual: str | None = None) -> dict[str, Any]:
        """The round's base config: the system's under the profile, with the pinned values in place (a pinned
        "model_overrides" is the profile's overrides of that time; the system's own stay on top)."""
        pinned = dict(dict(self.pins).get(profile.name, ()))
        out = system_config(system, profile, visual=visual)
        for name in [k for k, v in pinned.items() if v is None]:  # None: a field the configs then lacked
            out.pop(name, None)
            pinned.pop(name)
        if "model_overrides" in pinned:
            own = dict(SYSTEMS[system].overrides)
            out["model_overrides"] = {**dict(pinned.pop("model_overrides")), **own}
        return {**out, **pinned}

    def configs(
        self, system: str, profile: Any, visual: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """(setting name, run config) of each setting of this round for a system under a profile."""
        base = self.base(system, profile, visual)
        return [
            (name, search_config(base, change)) for name, change in self.settings if applies(base, change)
        ]


# a refinement option changes nothing in a model without it: the saliency fields need label words, the softmax
# over [text; visual] keys needs a visual source
_SALIENCY_FIELDS = {"saliency_scale", "saliency_scale_init", "saliency_lr", "saliency_from_qk"}


def applies(base: dict[str, Any], change: dict[str, Any]) -> bool:
    """Whether a search setting ``change`` is a different model for the config ``base``."""
    fields = set(change) | set(change.get("model_overrides") or {})
    if fields & _SALIENCY_FIELDS and not base.get("labels"):
        return False
    return not ("softmax" in fields and base.get("visual") in (None, "none"))


def _saliency(scale: str) -> dict[str, Any]:
    """The setting "saliency ``scale``": the model's field, and the run config's field the report reads."""
    return {"model_overrides": {"saliency_scale": scale}, "saliency_scale": scale}


SEARCH_ROUNDS: tuple[SearchRound, ...] = (  # in catalog.SEARCH_ROUNDS' order, which describes them
    SearchRound(
        "1",
        SEARCH_SETTINGS,
        pins=(("quick", (("encoder_lr", 5e-5), ("caption_positions", None))),),
    ),
    SearchRound(
        "2",
        (
            ("profile default", {}),
            ("encoder lr 2e-4", {"encoder_lr": 2e-4}),
            ("batch 10 (the paper's)", {"batch_size": 10}),
            ("spans up to 6 words", {"model_overrides": {"max_span_len": 6}}),
            ("word shapes + char CNN", {"model_overrides": {"case_features": "shape+char"}}),
        ),
        pins=(("quick", (("encoder_lr", 1e-4), ("caption_positions", None))),),
    ),
    SearchRound(  # issue 28: the refinement's options and the epochs, on the mended caption path
        "3",
        (
            ("profile default", {}),
            # first: the epoch budget every other comparison is made at
            ("10 epochs, patience 2 (best on validation kept)", {"epochs": 10, "patience": 2}),
            ("per-block softmax", {"model_overrides": {"softmax": "block"}}),
            ("saliency: the paper's", _saliency("paper")),
            ("saliency x #keys", _saliency("keys")),
            # the default scale is "learned" (its lr the new layers'): these two move it further
            ("learned saliency at lr 1e-2", {"saliency_lr": 1e-2}),
            ("learned saliency from |QK^T|", {"saliency_from_qk": True}),
        ),
        pins=(("quick", (("encoder_lr", 1e-4), ("epochs", 3), ("patience", None))),),
    ),
)


def search_config(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """A system's run config with one search setting applied."""
    out = dict(base)
    for k, v in change.items():
        out[k] = {**(base.get(k) or {}), **v} if k == "model_overrides" else v
    return out
