"""Options and error handling shared by every `catmner` command.

Known failures (bad data, bad model directories, unreachable services) become one line on stderr and exit
code 1; ``--debug`` or ``CATMNER_DEBUG=1`` shows the traceback instead.
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


class UserError(Exception):
    """A failure the user can fix; shown as one line."""


def known_errors() -> tuple[type[BaseException], ...]:
    """Exception types shown as one line instead of a traceback."""
    from catmner_model.errors import CatmnerError

    errors: list[type[BaseException]] = [UserError, CatmnerError, FileNotFoundError, PermissionError]
    try:
        from kb_expand.errors import KbxError  # type: ignore[import-not-found]

        errors.append(KbxError)
    except ImportError:
        pass
    return tuple(errors)


def debug_enabled() -> bool:
    return os.environ.get("CATMNER_DEBUG", "") not in ("", "0")


def friendly_errors(fn: F) -> F:
    """Decorator for CLI commands: known errors -> ``error: <message>`` on stderr, exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except known_errors() as exc:
            if debug_enabled():
                raise
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
