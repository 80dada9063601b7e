"""The tweets a benchmark run reads: splits read once per command, profile subsets (tweets with images first),
the Figure-3 samples, and how a split was used (files with checksums, the selection's checksum)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from catmner_model import Tweet, image_path, load_split, split_path
from catmner_model.provenance import sha256_file_memo as sha256_file

from catmner_bench.errors import BenchError
from catmner_bench.records import sha256_json


def _with_images_first(tweets: Sequence[Tweet], dataset: str, image_dir: Path | None, n: int) -> list[Tweet]:
    """The tweets whose image exists, then the first others, n in all, in file order (smoke subsets)."""
    folder = Path(image_dir) / f"{dataset}_images" if image_dir else None
    present = {q.stem for q in folder.glob("*.jpg")} if folder and folder.is_dir() else set()
    # listing the folder once is much cheaper than a stat per tweet; image_path still vets the chosen ones
    has = [
        t.imgid in present and image_path(dataset, t.imgid, image_dir, t.where) is not None for t in tweets
    ]
    picked = [i for i, h in enumerate(has) if h][:n]
    picked += [i for i, h in enumerate(has) if not h][: n - len(picked)]
    return [tweets[i] for i in sorted(picked)]


def select(tweets: list[Tweet], dataset: str, n: int | None, image_dir: Path | None) -> list[Tweet]:
    return tweets if n is None or n >= len(tweets) else _with_images_first(tweets, dataset, image_dir, n)


def fig3_sample(tweets: Sequence[Tweet], alpha: int, index: int, dataset: str) -> list[Tweet]:
    """Sampling ``index`` of ``alpha`` training tweets (the same for every system, reproducible)."""
    if alpha > len(tweets):
        raise BenchError(f"alpha {alpha} exceeds the {len(tweets)} training tweets of {dataset}")
    rng = random.Random(sha256_json({"dataset": dataset, "alpha": alpha, "index": index}))
    return [tweets[i] for i in sorted(rng.sample(range(len(tweets)), alpha))]


def describe(tweets: Sequence[Tweet]) -> dict[str, Any]:
    """How a split was used: source files with checksums, tweet count, and a checksum of the selection."""
    files = sorted({t.path for t in tweets})
    return {
        "files": {f: sha256_file(f) for f in files},
        "n_tweets": len(tweets),
        "selection_sha256": sha256_json([[t.path, t.line] for t in tweets]),
    }


_SPLITS: dict[tuple[str, int, int], list[Tweet]] = {}


def read_split(dataset: str, split: str, data_dir: Path | None) -> list[Tweet]:
    """load_split, memoised per file (path, size, mtime): one benchmark command reads each file once."""
    path = split_path(dataset, split, data_dir)
    if not path.exists():
        return load_split(dataset, split, data_dir)  # raises the data layer's clear error
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SPLITS:
        _SPLITS[key] = load_split(dataset, split, data_dir)
    return list(_SPLITS[key])


def check_data(data_dir: Path | None, datasets: Sequence[str]) -> None:
    """BenchError naming the first missing training split of ``datasets`` (the data folder is wrong)."""
    for ds in sorted(set(datasets)):
        if not split_path(ds, "train", data_dir).exists():
            raise BenchError(
                f"{split_path(ds, 'train', data_dir)}: not found; pass --data-dir (or set CATMNER_DATA)"
            )
