"""Options and error handling shared by every `catmner` command.

Known failures (`CatmnerError`, `KbxError`, missing or unreadable files) become ``catmner: error: ...`` on stderr
and exit code 1 through one handler, `friendly_errors` (kb_expand's `cli_errors`, the one error model of the
three CLIs); ``catmner --debug``, a command's ``--debug`` or ``CATMNER_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from kb_expand import cli_errors
from kb_expand.cli_errors import handle_errors

from catmner_model.errors import CatmnerError

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

# the one error handler of every `catmner` command (kb_expand.cli_errors, shared by the three CLIs): a known
# error is ``catmner: error: <first line>`` and exit status 1, Ctrl-C ``catmner: interrupted`` and 130;
# ``catmner --debug``, a command's ``--debug`` or ``CATMNER_DEBUG=1`` shows the traceback instead
friendly_errors = handle_errors("catmner", lambda: _state["debug"])


def debug_enabled(flag: bool = False) -> bool:
    """Whether tracebacks are shown: a command's ``--debug``, ``catmner --debug`` or ``CATMNER_DEBUG=1``."""
    return cli_errors.debug_enabled(flag, _state["debug"])


def print_json(data: Any) -> None:
    """Print data as indented JSON on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
