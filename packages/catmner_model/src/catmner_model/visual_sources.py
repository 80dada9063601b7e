"""The names of the visual sources a model can read and of the second text segments it knows how to find.

Imported by the model config (which checks its ``visual`` once) and by the visual layer (`visual.py`); it
imports nothing of catmner_model, so the config never depends on the visual layer.
"""

from __future__ import annotations

VISUAL_SOURCES: tuple[str, ...] = ("grid", "caption", "grid+caption", "none")
TEXT_CONTEXTS: tuple[str, ...] = ("pgim",)  # second text segments the trainer knows how to find


def check_visual(visual: str) -> str:
    if visual not in VISUAL_SOURCES:
        raise ValueError(f"unknown visual source {visual!r}: choose one of {', '.join(VISUAL_SOURCES)}")
    return visual


def uses_grid(visual: str) -> bool:
    return "grid" in visual.split("+")


def uses_caption(visual: str) -> bool:
    return "caption" in visual.split("+")
