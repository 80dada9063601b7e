"""One error model for the three command lines: `kbx`, `catmner` and `catmner-bench`.

- Each package has one error base deriving from `UserFacingError` (kb_expand: ``KbxError``, catmner_model:
  ``CatmnerError``, catmner_bench: ``BenchError``): a failure the user can fix; ``str(exc)`` is one line naming
  the file (and line) where there is one.
- Every command runs under `handle_errors(prog, state)`: such an error, or an ``OSError`` about a file (not
  found, no permission, a directory, disk full, ...), is ``<prog>: error: <first line>`` on stderr with exit
  status 1; Ctrl-C is ``<prog>: interrupted`` with exit status 130. Anything else is a bug and keeps its
  traceback.
- ``<prog> --debug <command>`` (or the command's own ``--debug``) or ``CATMNER_DEBUG=1`` shows the traceback
  of a known error instead (``KBX_DEBUG=1``, the older kbx variable, still works).

This lives in kb_expand, the lowest of the three packages (catmner_model and catmner_bench already depend on
it), so the shared pattern adds no import from a lower package to a higher one.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

DEBUG_VARIABLES = ("CATMNER_DEBUG", "KBX_DEBUG")  # the documented one first; KBX_DEBUG kept for kbx users
FILE_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


class UserFacingError(Exception):
    """A failure the user can fix (bad input, missing data, unusable store); one line for the user. The base
    of every package's own error base."""


def debug_enabled(*flags: Any) -> bool:
    """Whether tracebacks are shown: any of ``flags`` (``--debug`` options) set, or ``CATMNER_DEBUG`` /
    ``KBX_DEBUG`` set to anything but "" or "0"."""
    return any(bool(f) for f in flags) or any(os.environ.get(v, "") not in ("", "0") for v in DEBUG_VARIABLES)


def one_line(exc: BaseException) -> str | None:
    """The one line shown for a known error (its message's first line), None for any other exception."""
    if isinstance(exc, UserFacingError):
        text = str(exc)
    elif isinstance(exc, OSError) and (exc.filename is not None or isinstance(exc, FILE_ERRORS)):
        text = f"{exc.filename}: {exc.strerror}" if exc.filename is not None and exc.strerror else str(exc)
    else:
        return None
    text = text.strip()
    return text.splitlines()[0] if text else type(exc).__name__


def handle_errors(prog: str, app_debug: Callable[[], bool], interrupted: str = "") -> Callable[[F], F]:
    """The error handler of every command of ``prog``: a known error (`one_line`) becomes
    ``<prog>: error: <line>`` on stderr and exit status 1, Ctrl-C ``<prog>: interrupted<interrupted>`` and
    exit status 130; with ``app_debug()`` true (``<prog> --debug``, read when the error happens), the
    command's ``debug`` option or `debug_enabled`'s variables, a known error propagates with its traceback."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except KeyboardInterrupt:
                print(f"{prog}: interrupted{interrupted}", file=sys.stderr)
                raise SystemExit(130) from None
            except Exception as exc:
                message = one_line(exc)
                if message is None or debug_enabled(kwargs.get("debug"), app_debug()):
                    raise
                print(f"{prog}: error: {message}", file=sys.stderr)
                raise SystemExit(1) from None

        return wrapper  # type: ignore[return-value]

    return decorate
