"""Error types of kb_expand: every known failure is one of these, shown by the CLI as one line."""

from __future__ import annotations

from pathlib import Path


class KbxError(Exception):
    """A known failure (bad input, missing data, unreachable source); the CLI prints it as one line."""


class InputError(KbxError):
    """Bad input file: the message names the file and, where it applies, the line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


class SourceUnavailable(KbxError):
    """A knowledge source cannot be used (unreachable web service, missing data files)."""
