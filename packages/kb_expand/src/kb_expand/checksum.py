"""The checksum of a label-word set: written by the store with each build, checked by the read API."""

from __future__ import annotations

import hashlib
import json


def labels_checksum(labels: dict[str, list[str]]) -> str:
    """sha256 of the canonical JSON of {label: [words by rank]} (keys sorted, no spaces, UTF-8)."""
    canon = json.dumps(labels, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()
