"""Options and error handling shared by every `catmner` command.

Known failures (`CatmnerError`, `KbxError`, missing or unreadable files) become one line on stderr and exit
code 1 through one handler, `friendly_errors`; ``catmner --debug``, a command's ``--debug`` or
``CATMNER_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from catmner_model.errors import CatmnerError

F = TypeVar("F", bound=Callable[..., Any])

DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Folder holding twitter2015/ and twitter2017/ (default: $CATMNER_DATA)."),
]
ImageDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--image-dir",
        help="Folder holding twitter2015_images/ and twitter2017_images/ (default: $CATMNER_IMAGES, "
        "else <data-dir>/tweet_images).",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


class UserError(CatmnerError):
    """A usage failure found by the CLI itself (e.g. two options that exclude each other); one line."""


_state = {"debug": False}  # `catmner --debug ...` (set by the app's callback in cli.py)


def known_errors() -> tuple[type[BaseException], ...]:
    """Exception types shown as one line instead of a traceback."""
    from kb_expand.errors import KbxError

    return (CatmnerError, KbxError, FileNotFoundError, PermissionError)


def debug_enabled(flag: bool = False) -> bool:
    """Whether tracebacks are shown: a command's ``--debug``, ``catmner --debug`` or ``CATMNER_DEBUG=1``."""
    return flag or _state["debug"] or os.environ.get("CATMNER_DEBUG", "") not in ("", "0")


def friendly_errors(fn: F) -> F:
    """The one error handler of every `catmner` command: a known error becomes ``error: <message>`` (its first
    line) on stderr and exit status 1, an interrupt exit status 130; in debug mode (`debug_enabled`, which
    reads the command's own ``debug`` option) the exception propagates with its traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except known_errors() as exc:
            if debug_enabled(bool(kwargs.get("debug", False))):
                raise
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
