"""Error types of kb_expand: every known failure is one of these, shown by the CLI as one line."""

from __future__ import annotations

from pathlib import Path

from .cli_errors import UserFacingError


class KbxError(UserFacingError):
    """The error base of kb_expand: a known failure (bad input, missing data, unreachable source, unusable
    store); the CLI prints it as one line (`cli_errors`)."""


class InputError(KbxError):
    """Bad input file: the message names the file and, where it applies, the line."""

    def __init__(self, path: str | Path, message: str, line: int | None = None):
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line


def read_json_file(path: str | Path, what: str) -> object:
    """Parse a user's JSON file; every way it can be unusable (unreadable, a directory, not UTF-8, invalid or
    too deeply nested JSON) is an `InputError` naming the file (and line)."""
    import json

    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8-sig")
    except IsADirectoryError:
        raise InputError(p, f"is a directory, expected a {what} JSON file") from None
    except OSError as e:
        raise InputError(p, f"cannot read {what}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        line = p.read_bytes()[: e.start].count(b"\n") + 1
        raise InputError(
            p, f"not UTF-8 text (byte 0x{e.object[e.start]:02x}): save it as UTF-8", line=line
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(p, f"invalid JSON: {e.msg}", line=e.lineno) from None
    except RecursionError:
        raise InputError(p, "invalid JSON: nested too deeply") from None


class SourceUnavailable(KbxError):
    """A knowledge source cannot be used (unreachable web service, missing data files)."""
