"""The one error base of catmner_model: every failure a user can fix is a `CatmnerError` with a one-line message.

Modules define their own subclasses (``DataError``, ``CaptionError``, ``ModelFormatError``, ``VisionError``,
``TrainError``, ``PredictError``, the CLI's ``UserError``); the CLI's one handler (`cli_common.friendly_errors`)
shows any of them, and kb_expand's ``KbxError``, as one line (``--debug`` / ``CATMNER_DEBUG=1``: the
traceback). Like every package's base it derives from kb_expand's `cli_errors.UserFacingError` (one error model
for the three CLIs); they stay ``ValueError`` subclasses, as they were.
"""

from __future__ import annotations

from kb_expand.cli_errors import UserFacingError


class CatmnerError(UserFacingError, ValueError):
    """A failure the user can fix; ``str(exc)`` is one line naming the file (and line) where there is one."""


def load_failure(exc: BaseException) -> str:
    """Why a torch / safetensors file could not be loaded, in a few words, never with torch's advice to load
    it with ``weights_only=False`` (that would run whatever the file holds)."""
    text = str(exc).strip()
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()[0].strip()
        return f"it holds more than tensors: {detail}"[:200]
    if "Weights only load failed" in text or type(exc).__name__ == "UnpicklingError":
        return "it holds more than tensors (never loaded unsafely)"
    truncated = (
        "central directory",
        "zip archive",
        "Invalid argument",
        "unexpected EOF",
        "incomplete",
        "header",
    )
    if isinstance(exc, EOFError) or any(t in text for t in truncated):
        return "truncated or not a torch file"
    first = text.splitlines()[0][:200] if text else ""
    if not first or "weights_only" in first:
        return type(exc).__name__
    return f"{type(exc).__name__}: {first}"
