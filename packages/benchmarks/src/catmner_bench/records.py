"""JSON run records: one file per finished benchmark run, written atomically.

This module owns the record schema (`BenchRecord`, version `SCHEMA_VERSION`), the run key (what makes two runs
"the same run", so a killed benchmark rerun skips what it already finished), environment capture (git commit
and dirty flag, package versions, hardware) and file checksums. `BenchRecord` is the one typed record: the
runner builds and writes it, and every reader (`read_record`, `iter_records`, the report) gets it; its
`to_text` is the file's exact content.

A record carries its `Recipe`: what the report needs to judge the run beside its metrics (whether its config
is the one the planner trains today, whether it enters the verdicts, its saliency scale, the recipe-search
settings it is). The runner writes it when the run is made; as a recipe change makes it stale,
`catmner-bench records refresh DIR` (`catmner_bench.recipes`) rewrites that block alone. The report reads
these facts and never the planner.

Layout: ``<output>/records/<experiment>/<run_id>.json`` where ``run_id`` ends with the run key.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from catmner_model.atomic import atomic_write_text
from catmner_model.provenance import PACKAGES as PROVENANCE_PACKAGES
from catmner_model.provenance import git_info, hardware, package_versions

from catmner_bench.errors import BenchError

SCHEMA_VERSION = 2  # 2: the recipe block (records of 1 are migrated by `catmner-bench records refresh DIR`)
REFRESH = "catmner-bench records refresh DIR"  # the command that writes records' recipe blocks
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


STATUSES = ("older", "placement", "current")  # a record's `Recipe.status`, least current first


@dataclass(frozen=True)
class SearchSetting:
    """A recipe-search setting a run's config is: its round (a key of `catmner_bench.catalog.SEARCH_ROUNDS`),
    its name, and its place among the round's settings."""

    round: str
    setting: str
    index: int


@dataclass(frozen=True)
class Recipe:
    """What the report needs to judge a run besides its scores, computed from the planner
    (`catmner_bench.recipes.recipe_of`) when the run is made and again by `catmner-bench records refresh`."""

    # "current": the config the planner trains today for this system, profile, data size, epochs and visual
    # source; "placement": current but for the caption placement (a caption config from before issue 28, when
    # captions were placed as "restart"); "older": an older recipe
    status: str
    in_verdicts: bool  # its experiment scores test and judges the paper's claims (the search does neither)
    saliency: str | None  # the saliency scale a refined model trained with (None: no label words)
    search: tuple[SearchSetting, ...] = ()  # the recipe-search settings its config is, rounds in order

    @property
    def rank(self) -> int:
        """2 current, 1 current but for the caption placement, 0 older: for choosing among configs."""
        return STATUSES.index(self.status)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "in_verdicts": self.in_verdicts,
            "saliency": self.saliency,
            "search": [{"round": s.round, "setting": s.setting, "index": s.index} for s in self.search],
        }

    @classmethod
    def from_json(cls, obj: Any, where: str) -> Recipe:
        """The block as stored; RecordError (naming ``where``) where it is not one."""
        bad = f"{where}: the run record's recipe is not a recipe block (rewrite it: {REFRESH})"
        if not isinstance(obj, dict) or list(obj) != ["status", "in_verdicts", "saliency", "search"]:
            raise RecordError(bad)
        search = obj["search"]
        if (
            obj["status"] not in STATUSES
            or not isinstance(obj["in_verdicts"], bool)
            or not isinstance(obj["saliency"], str | None)
            or not isinstance(search, list)
            or not all(isinstance(s, dict) and list(s) == ["round", "setting", "index"] for s in search)
            or not all(
                isinstance(s["round"], str) and isinstance(s["setting"], str) and type(s["index"]) is int
                for s in search
            )
        ):
            raise RecordError(bad)
        return cls(
            obj["status"], obj["in_verdicts"], obj["saliency"], tuple(SearchSetting(**s) for s in search)
        )


@dataclass(frozen=True)
class BenchRecord:
    """One benchmark run record, typed: the fields of ``<output>/records/<experiment>/<run_id>.json`` in file
    order. `to_text` is the file's bytes as `write_record` writes them; `from_json` / `read` check the schema
    version, that every field is there and no other, and the types of the fields the report counts on
    (RecordError names the file)."""

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
    recipe: Recipe  # what the report judges the run by (see `Recipe`)
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
        "recipe",
    )

    @property
    def alpha(self) -> int | None:
        """Figure 3 / the decisive experiment: the training-set size sampled (None: the full split)."""
        return self.spec.sample.get("alpha") if isinstance(self.spec.sample, dict) else None

    def to_json(self) -> dict[str, Any]:
        """The record as a dict, keys in file order (``spec`` as `RunSpec.to_json`, ``recipe`` as
        `Recipe.to_json`)."""
        return {name: getattr(self, name) for name in self.FIELDS} | {
            "spec": self.spec.to_json(),
            "recipe": self.recipe.to_json(),
        }

    def to_text(self) -> str:
        """The record file's content, exactly as `write_record` writes it."""
        return json.dumps(self.to_json(), indent=2, ensure_ascii=False, default=str) + "\n"

    @classmethod
    def from_json(cls, obj: Any, where: str = "run record") -> BenchRecord:
        """A record read from its JSON; RecordError (naming ``where``) for another schema or other fields."""
        if isinstance(obj, dict) and obj.get("schema_version") == 1:
            raise RecordError(
                f"{where}: a run record of schema version 1, without its recipe block: {REFRESH}"
            )
        if not isinstance(obj, dict) or obj.get("schema_version") != SCHEMA_VERSION:
            raise RecordError(f"{where}: not a catmner-bench run record of schema version {SCHEMA_VERSION}")
        missing = [k for k in cls.FIELDS if k not in obj]
        unknown = [k for k in obj if k not in cls.FIELDS]
        if missing or unknown:
            raise RecordError(f"{where}: run record fields missing {missing}, unknown {unknown}")
        for k, kind in (("run_key", str), ("metrics", dict), ("extra", dict)):
            if not isinstance(obj[k], kind):
                raise RecordError(
                    f"{where}: run record field {k!r} is not a JSON {'string' if kind is str else 'object'}"
                )
        spec = obj["spec"]
        if not isinstance(spec, dict) or list(spec) != [f.name for f in fields(RunSpec)]:
            raise RecordError(f"{where}: the run record's spec is not a RunSpec")
        try:
            typed = RunSpec(**spec)
        except (TypeError, ValueError) as e:
            raise RecordError(f"{where}: the run record's spec is not a RunSpec ({e})"[:300]) from None
        recipe = Recipe.from_json(obj["recipe"], where)
        return cls(**{k: obj[k] for k in cls.FIELDS} | {"spec": typed, "recipe": recipe})

    @classmethod
    def read(cls, path: str | Path) -> BenchRecord:
        """The record in ``path``; RecordError names the file on any problem."""
        return cls.from_json(read_json(path), str(path))

    def write(self, output: str | Path) -> Path:
        """Write the record under ``output`` (`write_record`)."""
        return write_record(output, self)


def canonical_json(obj: Any) -> str:
    """Key-sorted compact JSON: equal data gives equal text."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def record_path(output: str | Path, spec: RunSpec) -> Path:
    return Path(output) / "records" / spec.experiment / f"{spec.run_id}.json"


def read_json(path: str | Path) -> Any:
    """A record file's JSON, unchecked; RecordError names the file when it is not readable JSON."""
    path = Path(path)
    try:
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        why = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise RecordError(f"{path}: not a readable run record ({why})") from None
    except RecursionError:
        raise RecordError(f"{path}: not a readable run record (JSON nested too deeply)") from None
    return rec


def read_record(path: str | Path) -> BenchRecord:
    """One record, checked (`BenchRecord.read`); RecordError names the file on any problem."""
    return BenchRecord.read(path)


def finished(
    output: str | Path, spec: RunSpec, read: Callable[[Path], BenchRecord] | None = None
) -> BenchRecord | None:
    """The record of this run if it already finished (same run key), else None. ``read``: how to read it
    (default `read_record`; the dry run reads a schema-1 record as `catmner-bench run` will refresh it)."""
    path = record_path(output, spec)
    if not path.exists():
        return None
    try:
        rec = (read or read_record)(path)
    except RecordError:
        return None  # a damaged record is redone
    return rec if rec.run_key == spec.key else None


def record_files(output: str | Path) -> list[Path]:
    """The record files under ``<output>/records`` (or under ``output`` itself), sorted by path."""
    root = Path(output)
    base = root / "records" if (root / "records").is_dir() else root
    # failure records of runs that did not finish (catmner_bench.sweep) are not run records
    return [
        p for p in sorted(base.rglob("*.json")) if base != root or p.relative_to(root).parts[0] != "failed"
    ]


def iter_records(output: str | Path) -> Iterator[tuple[Path, BenchRecord]]:
    """All records under ``<output>/records`` (or under ``output`` itself), sorted by path."""
    for p in record_files(output):
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
    recipe: Recipe,
    extra: dict[str, Any] | None = None,
) -> BenchRecord:
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
        recipe=recipe,
        extra=extra or {},
    )


def write_record(output: str | Path, record: BenchRecord) -> Path:
    """Write ``record`` to ``<output>/records/<experiment>/<run_id>.json`` atomically (`BenchRecord.to_text`)."""
    path = Path(output) / "records" / record.spec.experiment / f"{record.run_id}.json"
    atomic_write_text(path, record.to_text())
    return path
