"""The one error base of catmner_bench: every failure a user can fix is a `BenchError` with a one-line message
(`records.RecordError` for unreadable run records). The CLI shows it, and catmner_model's `CatmnerError` and
kb_expand's `KbxError`, as one line (``--debug`` / ``CATMNER_DEBUG=1``: the traceback): all derive from
kb_expand's `cli_errors.UserFacingError`, the one error model of the three CLIs. A ``ValueError`` subclass,
as it was."""

from __future__ import annotations

from kb_expand.cli_errors import UserFacingError


class BenchError(UserFacingError, ValueError):
    """A benchmark that cannot run as asked; one line for the user."""
