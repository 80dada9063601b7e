"""The one error base of catmner_model: every failure a user can fix is a `CatmnerError` with a one-line message.

Modules define their own subclasses (``DataError``, ``CaptionError``, ``ModelFormatError``, ``VisionError``,
``TrainError``, ``PredictError``, the CLI's ``UserError``); the CLI's one handler (`cli_common.friendly_errors`)
shows any of them, and kb_expand's ``KbxError``, as one line (``--debug`` / ``CATMNER_DEBUG=1``: the
traceback). They stay ``ValueError`` subclasses, as they were.
"""

from __future__ import annotations


class CatmnerError(ValueError):
    """A failure the user can fix; ``str(exc)`` is one line naming the file (and line) where there is one."""
