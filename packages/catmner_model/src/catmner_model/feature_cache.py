"""The on-disk grid-feature cache and the functions behind ``catmner features``.

``FeatureCache``: features computed once per image ever, keyed by the sha256 of the image bytes and the encoder
id, stored atomically as safetensors files; a small SQLite index (path, size, mtime) -> sha256 spares training
epochs from re-hashing every image. ``precompute_dataset`` and ``bench_extraction``: ``catmner features``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from catmner_model.atomic import atomic_write_bytes
from catmner_model.encoders import GridFeatureExtractor, VisionConfig, as_extractor
from catmner_model.images import IMAGE_FAILURES, VisionError, load_image_safely

# --------------------------------------------------------------------------------------------------------------
# Feature cache
# --------------------------------------------------------------------------------------------------------------


def feature_cache_root(feature_cache: str | os.PathLike[str] | None = None) -> Path:
    """The one feature-cache root: the argument, else ``$CATMNER_HOME/features`` (CATMNER_HOME defaults to
    ~/.catmner)."""
    from catmner_model.data import catmner_home

    return Path(feature_cache).expanduser() if feature_cache else catmner_home() / "features"


class _HashIndex:
    """SQLite table path -> (size, mtime_ns, sha256) so unchanged files are not re-hashed; one per cache root."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self.memory: dict[str, tuple[int, int, str]] = {}

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share a connection across fork
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=30)
            with conn:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
                    "mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)"
                )
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def lookup(self, path: str, size: int, mtime_ns: int) -> str | None:
        hit = self.memory.get(path)
        if hit is None:
            try:
                row = (
                    self._connect()
                    .execute("SELECT size, mtime_ns, sha256 FROM files WHERE path = ?", (path,))
                    .fetchone()
                )
            except sqlite3.DatabaseError:
                return None
            if row is None:
                return None
            hit = (int(row[0]), int(row[1]), str(row[2]))
            self.memory[path] = hit
        return hit[2] if hit[0] == size and hit[1] == mtime_ns else None

    def store(self, path: str, size: int, mtime_ns: int, sha: str) -> None:
        self.memory[path] = (size, mtime_ns, sha)
        with contextlib.suppress(sqlite3.DatabaseError):
            conn = self._connect()
            with conn:  # one transaction
                conn.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", (path, size, mtime_ns, sha))

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None


@dataclass
class _Pending:
    path: str
    sha: str
    image: Image.Image


@dataclass
class CacheFailure:
    path: str  # the image file
    reason: str  # one of IMAGE_FAILURES
    message: str  # one line naming the file


class FeatureCache:
    """Grid features on disk: ``<root>/<encoder_key>/<sha[:2]>/<sha256 of image bytes>.safetensors``.

    ``get(path)`` returns float32 ``(grid*grid, F)`` or None; ``stats`` counts hits, computations and every
    failure reason (``IMAGE_FAILURES``); ``failures`` keeps the first ``max_failures`` failures with messages.
    Images that cannot be decoded get a small ``.fail.json`` marker so they are not decoded again either.
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None,
        extractor: GridFeatureExtractor | VisionConfig | str | None = None,
        *,
        use_index: bool = True,
        memory_items: int = 0,
        max_failures: int = 1000,
    ) -> None:
        self.root = feature_cache_root(root)
        self.extractor = as_extractor(extractor)
        self.dir = self.root / self.extractor.encoder_key
        self.index = _HashIndex(self.root / "index.sqlite") if use_index else None
        self.memory_items = memory_items
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.stats: Counter[str] = Counter()
        self.failures: list[CacheFailure] = []
        self.max_failures = max_failures

    # ---- keys and files ----
    def feature_path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.safetensors"

    def _fail_path(self, sha: str) -> Path:
        return self.dir / sha[:2] / f"{sha}.fail.json"

    def _write_encoder_json(self) -> None:
        target = self.dir / "encoder.json"
        if not target.exists():
            body = {"encoder_id": self.extractor.encoder_id, "config": self.extractor.config.to_json()}
            atomic_write_bytes(target, json.dumps(body, indent=2, sort_keys=True).encode())

    def _hash(self, path: str) -> tuple[str | None, CacheFailure | None]:
        """sha256 of a file's bytes, from the index when size and mtime are unchanged."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return None, CacheFailure(path, "missing", f"{path}: image file not found")
        except OSError as exc:
            return None, CacheFailure(path, "unreadable", f"{path}: cannot read image file ({exc.strerror})")
        key = os.path.abspath(path)
        if self.index is not None:
            sha = self.index.lookup(key, st.st_size, st.st_mtime_ns)
            if sha is not None:
                return sha, None
        h = hashlib.sha256()
        try:
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as exc:
            return None, CacheFailure(
                path, "unreadable", f"{path}: cannot read image file ({exc.strerror or exc})"
            )
        self.stats["hashed"] += 1
        sha = h.hexdigest()
        if self.index is not None:
            self.index.store(key, st.st_size, st.st_mtime_ns, sha)
        return sha, None

    def _load(self, sha: str) -> torch.Tensor | None:
        if sha in self._memory:
            self._memory.move_to_end(sha)
            return self._memory[sha]
        path = self.feature_path(sha)
        if not path.exists():
            return None
        from safetensors.torch import load_file

        try:
            t = load_file(str(path))["features"]
            expected = (self.extractor.num_cells, self.extractor.feature_dim)
            if tuple(t.shape) != expected or t.dtype != torch.float32 or not torch.isfinite(t).all():
                raise ValueError(f"shape {tuple(t.shape)} dtype {t.dtype}, expected {expected} float32")
        except Exception:  # noqa: BLE001 - a damaged cache file is recomputed, never trusted
            self.stats["cache_corrupt"] += 1
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        self._remember(sha, t)
        return t

    def _remember(self, sha: str, t: torch.Tensor) -> None:
        if self.memory_items > 0:
            self._memory[sha] = t
            self._memory.move_to_end(sha)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    def _save(self, sha: str, t: torch.Tensor, source: str) -> None:
        from safetensors.torch import save

        meta = {
            "encoder_key": self.extractor.encoder_key,
            "image_sha256": sha,
            "source": os.path.basename(source),
        }
        try:
            self._write_encoder_json()
            atomic_write_bytes(self.feature_path(sha), save({"features": t.contiguous()}, metadata=meta))
        except OSError as exc:  # a full disk must not stop training: the features are still returned
            self.stats["write_error"] += 1
            self._record(
                CacheFailure(source, "write_error", f"{self.feature_path(sha)}: cannot write ({exc})")
            )

    def _known_failure(self, sha: str) -> CacheFailure | None:
        p = self._fail_path(sha)
        if not p.exists():
            return None
        try:
            d = json.loads(p.read_text())
            if d.get("max_pixels") != self.extractor.config.max_pixels:
                return None
            return CacheFailure(d["path"], d["reason"], d["message"])
        except (OSError, ValueError, KeyError):
            return None

    def _mark_failure(self, sha: str, failure: CacheFailure) -> None:
        body = {**asdict(failure), "max_pixels": self.extractor.config.max_pixels}
        with contextlib.suppress(OSError):
            atomic_write_bytes(self._fail_path(sha), json.dumps(body).encode())

    def _record(self, failure: CacheFailure) -> None:
        if len(self.failures) < self.max_failures:
            self.failures.append(failure)

    def _count_failure(self, failure: CacheFailure) -> None:
        self.stats[failure.reason] += 1
        self._record(failure)

    # ---- public API ----
    def _lookup(self, path: str) -> tuple[torch.Tensor | None, str | None, _Pending | None]:
        """Cached features, or a failure reason, or a decoded image still to encode."""
        sha, failure = self._hash(path)
        if failure is not None:
            self._count_failure(failure)
            return None, failure.reason, None
        assert sha is not None
        t = self._load(sha)
        if t is not None:
            self.stats["hit"] += 1
            return t, "hit", None
        known = self._known_failure(sha)
        if known is not None:
            self._count_failure(CacheFailure(path, known.reason, known.message.replace(known.path, path, 1)))
            return None, known.reason, None
        loaded = load_image_safely(path, max_pixels=self.extractor.config.max_pixels)
        if not loaded.ok:
            failure = CacheFailure(path, loaded.reason or "corrupt", loaded.message)
            if loaded.sha256 is not None:
                self._mark_failure(loaded.sha256, failure)
            self._count_failure(failure)
            return None, failure.reason, None
        assert loaded.image is not None and loaded.sha256 is not None
        if loaded.sha256 != sha:  # the file changed since it was hashed: trust the bytes just decoded
            t = self._load(loaded.sha256)
            if t is not None:
                self.stats["hit"] += 1
                return t, "hit", None
        return None, None, _Pending(path, loaded.sha256, loaded.image)

    def _compute(self, pending: list[_Pending]) -> list[torch.Tensor]:
        feats = self.extractor([p.image for p in pending])  # (n, G*G, F)
        out = []
        for p, t in zip(pending, feats, strict=True):
            t = t.clone()
            self._save(p.sha, t, p.path)
            self._remember(p.sha, t)
            self.stats["computed"] += 1
            out.append(t)
        return out

    def get_with_reason(self, path: str | os.PathLike[str]) -> tuple[torch.Tensor | None, str]:
        """``(features (grid*grid, F) or None, reason)``: reason is "hit", "computed" or one of IMAGE_FAILURES."""
        t, reason, pending = self._lookup(os.fspath(path))
        if pending is None:
            return t, reason or "corrupt"
        return self._compute([pending])[0], "computed"

    def get(self, path: str | os.PathLike[str] | None) -> torch.Tensor | None:
        """Features ``(grid*grid, F)`` float32 of an image file, computed and stored on first use; None (reason
        counted in ``stats``) when the image is missing or unusable. ``path=None`` counts as missing."""
        if path is None:
            self.stats["missing"] += 1
            return None
        return self.get_with_reason(path)[0]

    def precompute(
        self, paths: Iterable[str | os.PathLike[str]], *, progress: bool = True, desc: str = "image features"
    ) -> dict:
        """Compute and store features of every image not cached yet, ``config.batch_images`` per forward pass.

        Returns ``{"images", "hit", "computed", "failed": {reason: n}, "seconds", "seconds_per_computed"}``
        for this call (``stats`` keeps the running totals).
        """
        from tqdm.auto import tqdm

        unique = list(dict.fromkeys(os.fspath(p) for p in paths))
        before = Counter(self.stats)
        start = time.perf_counter()
        step = max(1, int(self.extractor.config.batch_images))
        pending: list[_Pending] = []
        with tqdm(total=len(unique), desc=desc, unit="img", disable=not progress) as bar:
            for path in unique:
                _, _, p = self._lookup(path)
                if p is not None:
                    pending.append(p)
                if len(pending) >= step:
                    self._compute(pending)
                    bar.update(len(pending))
                    pending = []
                if p is None:
                    bar.update(1)
            if pending:
                self._compute(pending)
                bar.update(len(pending))
        seconds = time.perf_counter() - start
        delta = self.stats - before
        failed = {r: delta[r] for r in IMAGE_FAILURES if delta[r]}
        return {
            "images": len(unique),
            "hit": delta["hit"],
            "computed": delta["computed"],
            "failed": failed,
            "hashed": delta["hashed"],
            "seconds": round(seconds, 3),
            "seconds_per_computed": round(seconds / delta["computed"], 4) if delta["computed"] else None,
        }

    def close(self) -> None:
        if self.index is not None:
            self.index.close()


# --------------------------------------------------------------------------------------------------------------
# Dataset precomputation and benchmark (the functions behind `catmner features`)
# --------------------------------------------------------------------------------------------------------------


def precompute_dataset(
    dataset: str,
    splits: Sequence[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    image_dir: str | os.PathLike[str] | None = None,
    encoder: GridFeatureExtractor | VisionConfig | str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    progress: bool = True,
) -> dict:
    """Cache the grid features of every image referenced by the dataset's splits.

    Tweets whose image file is absent count as ``missing`` (normal here: only some images are distributed).
    Returns the ``FeatureCache.precompute`` stats plus dataset, splits, tweets, unique images, cache location.
    """
    from catmner_model.data import SPLITS, image_path, load_split, resolve_image_dir

    splits = list(splits or SPLITS)
    images = resolve_image_dir(image_dir, data_dir)
    if images is None:
        raise VisionError("no image directory: pass --image-dir or set CATMNER_IMAGES")
    if not Path(images).is_dir():
        raise VisionError(f"{images}: image directory not found")
    imgids: dict[str, str] = {}  # IMGID -> file:line of its first tweet
    tweets = 0
    for split in splits:
        for tweet in load_split(dataset, split, data_dir):
            tweets += 1
            imgids.setdefault(tweet.imgid, tweet.where)
    paths: list[Path] = []
    missing = 0
    for imgid, where in imgids.items():
        p = image_path(dataset, imgid, images, where)
        if p is None:
            missing += 1
        else:
            paths.append(p)
    cache = FeatureCache(cache_dir, encoder)
    try:
        stats = cache.precompute(paths, progress=progress, desc=f"{dataset} image features")
    finally:
        cache.close()
    if missing:
        stats["failed"]["missing"] = stats["failed"].get("missing", 0) + missing
    return {
        "dataset": dataset,
        "splits": splits,
        "tweets": tweets,
        "unique_images": len(imgids),
        "images_found": len(paths),
        "images_missing": missing,
        **stats,
        "encoder": cache.extractor.config.encoder,
        "encoder_key": cache.extractor.encoder_key,
        "cache_dir": str(cache.dir),
    }


def bench_extraction(
    paths: Sequence[str | os.PathLike[str]],
    encoder: GridFeatureExtractor | VisionConfig | str | None = None,
    *,
    repeat: int = 1,
    warmup: int = 1,
) -> dict:
    """Time feature extraction (decode + preprocess + encoder) on real image files, no cache involved.

    ``one_at_a_time``: each image alone (16 crops per forward pass), the latency a cache miss costs;
    ``batched``: ``config.batch_images`` images at a time, the throughput of ``precompute``.
    Seconds are wall-clock per image, the median over ``repeat`` passes; ``cpu_seconds_per_image`` (process
    CPU time, all threads) and ``load_average`` tell whether other work shared the cores.
    """
    ext = as_extractor(encoder)
    images: list[Image.Image] = []
    files: list[str] = []
    decode_s = []
    for p in paths:
        t0 = time.perf_counter()
        loaded = load_image_safely(p, max_pixels=ext.config.max_pixels)
        decode_s.append(time.perf_counter() - t0)
        if loaded.ok:
            assert loaded.image is not None
            images.append(loaded.image)
            files.append(os.fspath(p))
    if not images:
        raise VisionError("no readable images to benchmark")
    for im in images[: max(0, warmup)]:
        ext([im])
    single, single_cpu, batched, prep = [], [], [], []
    for _ in range(max(1, repeat)):
        t0, c0 = time.perf_counter(), time.process_time()
        for p in files:
            loaded = load_image_safely(p, max_pixels=ext.config.max_pixels)
            assert loaded.image is not None
            ext([loaded.image])
        single.append((time.perf_counter() - t0) / len(files))
        single_cpu.append((time.process_time() - c0) / len(files))
        t0 = time.perf_counter()
        for im in images:
            ext.preprocess(im)
        prep.append((time.perf_counter() - t0) / len(images))
        t0 = time.perf_counter()
        ext(images)
        batched.append((time.perf_counter() - t0) / len(images))
    med = lambda xs: float(np.median(xs))  # noqa: E731
    return {
        "encoder": ext.config.encoder,
        "encoder_key": ext.encoder_key,
        "feature_dim": ext.feature_dim,
        "grid": ext.config.grid,
        "images": len(images),
        "unreadable": len(paths) - len(images),
        "device": str(ext.device),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "batch_images": ext.config.batch_images,
        "cells_per_pass": ext.cells_per_pass,
        "channels_last": ext.config.channels_last,
        "repeat": max(1, repeat),
        "seconds_per_image": round(med(single), 4),
        "cpu_seconds_per_image": round(med(single_cpu), 4),  # all threads; >> wall when cores are shared
        "seconds_per_image_batched": round(med(batched), 4),
        "seconds_decode_per_image": round(float(np.median(decode_s)), 4),
        "seconds_preprocess_per_image": round(med(prep), 4),
    }
