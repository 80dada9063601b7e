"""Atomic file writes: every file catmner writes goes through here.

A temp file in the target's folder is written, flushed to disk and ``os.replace``d into place, so a reader (or
a run killed mid-write) never sees half a file, and a failed write leaves the previous file untouched.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], None]) -> None:
    """Call ``write(tmp_path)`` to fill a temp file beside ``path``, fsync it, then move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        note_file(exc, path)
        raise


def note_file(exc: BaseException, path: str | os.PathLike[str]) -> None:
    """Record on ``exc`` the file being written when it was raised (first one wins), for messages: torch and
    safetensors errors carry no file name and an OSError names the temp file, not the target."""
    if getattr(exc, "catmner_file", None) is None:
        with contextlib.suppress(AttributeError, TypeError):
            exc.catmner_file = str(path)  # type: ignore[attr-defined]


@contextlib.contextmanager
def writing(path: str | os.PathLike[str]):
    """Within the block, a failure is noted as one writing ``path`` (`note_file`)."""
    try:
        yield
    except BaseException as exc:
        note_file(exc, path)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> None:
    """Write ``obj`` as JSON (non-JSON values via ``str``) to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


_WRITE_ERRNOS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


def write_failure(exc: BaseException) -> str | None:
    """Why a write failed, in a few words, when ``exc`` is a read-only target, a full disk or a refused
    permission (also as raised by torch.save and safetensors, which wrap the OS error); None otherwise."""
    if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
        return _WRITE_ERRNOS[exc.errno]
    text = str(exc)
    if (
        "No space left" in text
        or "os error 28" in text
        or "unexpected pos" in text
        or "failed writing" in text
    ):
        return "no space left on device"  # torch's zip writer reports a full disk as "unexpected pos ..."
    if "Read-only file system" in text or "os error 30" in text:
        return "read-only file system"
    return None


def write_hint(reason: str) -> str:
    """What to do about a `write_failure` reason."""
    if reason in ("no space left on device", "disk quota exceeded"):
        return "free some space, then rerun the same command"
    return "choose another --output (or make it writable)"
