"""User directories and default locations: $CATMNER_HOME (default ~/.catmner) and the store path $KBX_DB."""

from __future__ import annotations

import os
from pathlib import Path


def catmner_home() -> Path:
    """The user data directory: $CATMNER_HOME, else ~/.catmner (not created here)."""
    env = os.environ.get("CATMNER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".catmner"


def default_db_path(db: str | Path | None = None) -> Path:
    """Store location: explicit `db` > $KBX_DB > $CATMNER_HOME/kb.sqlite."""
    if db is not None:
        return Path(db).expanduser()
    env = os.environ.get("KBX_DB")
    if env:
        return Path(env).expanduser()
    return catmner_home() / "kb.sqlite"


def cache_dir(*parts: str) -> Path:
    """A cache folder under $CATMNER_HOME (created)."""
    path = catmner_home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path
