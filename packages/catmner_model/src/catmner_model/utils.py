"""Public facade: atomic file writes and the provenance of a result.

Code outside catmner_model that writes files or run records the way catmner does imports these names from
here; they live in `atomic.py` (temp file, fsync, ``os.replace``: a reader never sees half a file) and
`provenance.py` (git commit and dirty flag, package versions, hardware). Nothing is defined here.
"""

from __future__ import annotations

from catmner_model.atomic import atomic_write, atomic_write_bytes, atomic_write_json, atomic_write_text
from catmner_model.provenance import PACKAGES as PROVENANCE_PACKAGES
from catmner_model.provenance import environment_info, git_info, hardware, package_versions, sha256_file

__all__ = [
    "PROVENANCE_PACKAGES",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "environment_info",
    "git_info",
    "hardware",
    "package_versions",
    "sha256_file",
]
