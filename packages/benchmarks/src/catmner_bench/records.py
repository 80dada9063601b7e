"""JSON run records: one file per finished benchmark run, written atomically.

This module owns the record schema (`BenchRecord`, version `SCHEMA_VERSION`), the run key (what makes two runs "the same run", so a killed benchmark
rerun skips what it already finished), environment capture (git commit and dirty flag, package versions,
hardware) and file checksums. Reports are rendered from these files only; they read records as dicts
(`read_record`, `iter_records`), and `BenchRecord` is the typed view of the same JSON (`BenchRecord.read`
loads a file, `to_text` is its exact content).

Layout: ``<output>/records/<experiment>/<run_id>.json`` where ``run_id`` ends with the run key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from catmner_model.atomic import atomic_write_json
from catmner_model.provenance import PACKAGES as PROVENANCE_PACKAGES
from catmner_model.provenance import git_info, hardware, package_versions

from catmner_bench.errors import BenchError

SCHEMA_VERSION = 1
# written verbatim into every record and report: the text stays as the committed records have it
METRIC_DEFINITION = (
    "Entity-level micro precision/recall/F1 (0-100) over PER/LOC/ORG/MISC, entities compared by (start, end, "
    "type) on words. 'conlleval' counts entities as conlleval / seqeval's default mode (an I- without B- starts "
    "an entity): comparable with the literature; 'strict' is IOB2-strict. Scored by catmner_model.metrics.score."
)
PACKAGES = ("catmner-bench", *PROVENANCE_PACKAGES)


class RecordError(BenchError):
    """A run record that cannot be read; the message names the file."""


@dataclass(frozen=True)
class RunSpec:
    """What identifies one run; its canonical JSON hashes to the run key.

    Two invocations that produce the same RunSpec are the same run: the second one is skipped.
    """

    experiment: str  # "table1", "table2", "table3", "fig3", "fig4"
    system: str  # "bilstm-crf", "cnn-bilstm-crf", "lm-crf", "lm-span", "mm", "t2i", "i2t", "cat-textual", ...
    train_dataset: str  # "twitter2015" / "twitter2017"
    test_dataset: str  # dataset whose test split is scored (differs from train_dataset in table2)
    seed: int  # random seed of the run
    config: dict[str, Any]  # the resolved configuration of the system (encoders, epochs, lr, ...)
    sample: dict[str, Any] | None = None  # fig3: {"alpha": 50, "index": 0}; None = full training split

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "system": self.system,
            "train_dataset": self.train_dataset,
            "test_dataset": self.test_dataset,
            "seed": self.seed,
            "config": self.config,
            "sample": self.sample,
        }

    @property
    def key(self) -> str:
        """16 hex digits of sha256 over the canonical JSON of the spec."""
        return sha256_json(self.to_json())[:16]

    @property
    def run_id(self) -> str:
        """A readable, unique file stem: system, datasets, sample, seed, key."""
        data = (
            self.train_dataset
            if self.train_dataset == self.test_dataset
            else f"{self.train_dataset}-to-{self.test_dataset}"
        )
        sample = f"__a{self.sample['alpha']}-{self.sample['index']}" if self.sample else ""
        return f"{self.system}__{data}{sample}__s{self.seed}__{self.key}"


@dataclass
class BenchRecord:
    """One benchmark run record, typed: the fields of ``<output>/records/<experiment>/<run_id>.json`` in file
    order. `to_json` is the dict `build_record` returns and the reports read; `to_text` the file's bytes as
    `write_record` writes them; `from_json` / `read` check the schema version and that every field is there
    and no other (RecordError names the file)."""

    run_key: str  # the spec's key (16 hex digits)
    run_id: str  # the file stem: system, datasets, sample, seed, key
    spec: RunSpec
    created: str  # local time the record was built, "%Y-%m-%dT%H:%M:%S%z"
    git: dict[str, Any]  # commit and dirty flag of the source
    packages: dict[str, Any]  # versions of the packages that produce the result
    hardware: dict[str, Any]
    data: dict[str, Any]  # per split: tweets, entities, checksums; the data directory
    label_words: dict[str, Any] | None  # source, build id, checksum (None: the system uses none)
    metric: dict[str, Any]  # {"definition": METRIC_DEFINITION, "modes": [...]}
    metrics: dict[str, Any]  # {"valid"|"test": {"conlleval"|"strict": P/R/F1, per type}}
    wall_time_s: float
    extra: dict[str, Any] = field(default_factory=dict)  # command, profile, per-experiment fields
    schema_version: int = SCHEMA_VERSION

    FIELDS = (
        "schema_version",
        "run_key",
        "run_id",
        "spec",
        "created",
        "git",
        "packages",
        "hardware",
        "data",
        "label_words",
        "metric",
        "metrics",
        "wall_time_s",
        "extra",
    )

    def to_json(self) -> dict[str, Any]:
        """The record as a dict, keys in file order (``spec`` as `RunSpec.to_json`)."""
        return {name: self.spec.to_json() if name == "spec" else getattr(self, name) for name in self.FIELDS}

    def to_text(self) -> str:
        """The record file's content, exactly as `write_record` writes it."""
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False, default=str) + "\n"

    @classmethod
    def from_json(cls, obj: Any, where: str = "run record") -> BenchRecord:
        """A record read from its JSON; RecordError (naming ``where``) for another schema or other fields."""
        if not isinstance(obj, dict) or obj.get("schema_version") != SCHEMA_VERSION:
            raise RecordError(f"{where}: not a catmner-bench run record of schema version {SCHEMA_VERSION}")
        missing = [k for k in cls.FIELDS if k not in obj]
        unknown = [k for k in obj if k not in cls.FIELDS]
        if missing or unknown:
            raise RecordError(f"{where}: run record fields missing {missing}, unknown {unknown}")
        spec = obj["spec"]
        if not isinstance(spec, dict) or list(spec) != [f.name for f in fields(RunSpec)]:
            raise RecordError(f"{where}: the run record's spec is not a RunSpec")
        return cls(**{k: RunSpec(**spec) if k == "spec" else obj[k] for k in cls.FIELDS})

    @classmethod
    def read(cls, path: str | Path) -> BenchRecord:
        """The record in ``path`` (read and checked as `read_record` does, then typed)."""
        return cls.from_json(read_record(path), str(path))

    def write(self, output: str | Path) -> Path:
        """Write the record under ``output`` (`write_record`)."""
        return write_record(output, self.to_json())


def canonical_json(obj: Any) -> str:
    """Key-sorted compact JSON: equal data gives equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def record_path(output: str | Path, spec: RunSpec) -> Path:
    return Path(output) / "records" / spec.experiment / f"{spec.run_id}.json"


def read_record(path: str | Path) -> dict[str, Any]:
    """Load and minimally validate one record; RecordError names the file on any problem."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RecordError(f"{path}: not a readable run record ({e})") from e
    if not isinstance(rec, dict) or rec.get("schema_version") != SCHEMA_VERSION:
        raise RecordError(f"{path}: not a catmner-bench run record of schema version {SCHEMA_VERSION}")
    for k in ("run_key", "spec", "metrics"):
        if k not in rec:
            raise RecordError(f"{path}: run record lacks the field {k!r}")
    return rec


def finished(output: str | Path, spec: RunSpec) -> dict[str, Any] | None:
    """The record of this run if it already finished (same run key), else None."""
    path = record_path(output, spec)
    if not path.exists():
        return None
    try:
        rec = read_record(path)
    except RecordError:
        return None  # a damaged record is redone
    return rec if rec.get("run_key") == spec.key else None


def iter_records(output: str | Path) -> Iterator[tuple[Path, dict[str, Any]]]:
    """All records under ``<output>/records`` (or under ``output`` itself), sorted by path."""
    root = Path(output)
    base = root / "records" if (root / "records").is_dir() else root
    for p in sorted(base.rglob("*.json")):
        if base == root and p.relative_to(root).parts[0] == "failed":
            continue  # failure records of runs that did not finish (catmner_bench.sweep), not run records
        yield p, read_record(p)


@lru_cache(maxsize=1)
def environment() -> dict[str, Any]:
    """Git state, package versions and hardware, captured once per process."""
    return {"git": git_info(), "packages": package_versions(PACKAGES), "hardware": hardware()}


def build_record(
    spec: RunSpec,
    *,
    metrics: dict[str, Any],
    data: dict[str, Any],
    label_words: dict[str, Any] | None,
    wall_time_s: float,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble a complete record (see module docstring) from a finished run's results."""
    env = environment()
    return BenchRecord(
        run_key=spec.key,
        run_id=spec.run_id,
        spec=spec,
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        git=env["git"],
        packages=env["packages"],
        hardware=env["hardware"],
        data=data,
        label_words=label_words,
        metric={"definition": METRIC_DEFINITION, "modes": ["conlleval", "strict"]},
        metrics=metrics,
        wall_time_s=round(float(wall_time_s), 3),
        extra=extra or {},
    ).to_json()


def write_record(output: str | Path, record: dict[str, Any]) -> Path:
    spec = record["spec"]
    path = Path(output) / "records" / spec["experiment"] / f"{record['run_id']}.json"
    atomic_write_json(path, record)
    return path
