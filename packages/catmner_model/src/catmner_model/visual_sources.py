"""The registry of visual sources and the one parser of a model's ``visual`` field.

`VISUAL_SOURCES` maps each name a model config may list to its class (a `visual_base.VisualSourceKind`);
adding a source is its class and one line here. ``CatMnerConfig.visual`` is a tuple of these names in
registry order, empty for a text-only model; `parse_visual` is where it is checked, once, and where the
string forms of older configs and of the command line (``"grid"``, ``"caption"``, ``"grid+caption"``,
``"none"``) become that tuple. `visual_name` writes a tuple back as that string (run names, records, CLI).
"""

from __future__ import annotations

from typing import Any

from catmner_model.visual_base import VisualSourceKind
from catmner_model.visual_caption import CaptionSource
from catmner_model.visual_grid import GridSource

# name -> class, in the order their embedding modules are built and their tokens follow the text
VISUAL_SOURCES: dict[str, type[VisualSourceKind]] = {
    "grid": GridSource,
    "caption": CaptionSource,
}
TEXT_CONTEXTS: tuple[str, ...] = ("pgim",)  # second text segments the trainer knows how to find


def parse_visual(value: Any) -> tuple[str, ...]:
    """``value`` (a tuple or list of names, or a string: names joined by "+", "none" or "" for none) as the
    tuple of registered names in registry order; ValueError naming the choices for anything else."""
    if value is None:
        names: list[str] = []
    elif isinstance(value, str):
        names = [] if value.strip() in ("", "none") else [n.strip() for n in value.split("+")]
    elif isinstance(value, list | tuple):
        names = [str(n) for n in value]
    else:
        raise ValueError(f"visual must be a list of source names, got {value!r}")
    unknown = [n for n in names if n not in VISUAL_SOURCES]
    if unknown:
        raise ValueError(
            f"unknown visual source {unknown[0]!r}: choose from {', '.join(VISUAL_SOURCES)} (or none)"
        )
    if len(set(names)) != len(names):
        raise ValueError(f"visual source listed twice: {value!r}")
    return tuple(n for n in VISUAL_SOURCES if n in names)


def visual_name(names: Any) -> str:
    """The string form of a source list: names joined by "+", "none" for none."""
    return "+".join(parse_visual(names)) or "none"


def kinds(names: Any) -> list[VisualSourceKind]:
    """One instance of each source of ``names``, in registry order."""
    return [VISUAL_SOURCES[n]() for n in parse_visual(names)]


def uses_grid(visual: Any) -> bool:
    return "grid" in parse_visual(visual)


def uses_caption(visual: Any) -> bool:
    return "caption" in parse_visual(visual)
