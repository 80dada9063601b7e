"""Lazy module attributes: a name resolves to its owning module's attribute on first use (PEP 562), so
importing a facade loads nothing until a name is used. Used by ``catmner_model``."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_getattr(
    module: str, table: dict[str, tuple[str, str]], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``table`` (name -> (owning module, attribute)) into ``namespace``."""

    def __getattr__(name: str) -> Any:
        if name in table:
            owner, attr = table[name]
            value = getattr(importlib.import_module(owner), attr)
            namespace[name] = value
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
