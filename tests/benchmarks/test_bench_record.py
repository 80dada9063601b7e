"""`BenchRecord`, the typed view of a benchmark run record: every committed record loads and writes back
byte-identical, `build_record` is its JSON, and a record of another schema or with other fields is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catmner_bench.records import (
    SCHEMA_VERSION,
    BenchRecord,
    RecordError,
    RunSpec,
    build_record,
    read_record,
    write_record,
)

REPO = Path(__file__).resolve().parents[2]
COMMITTED = sorted((REPO / "docs" / "records").rglob("*.json"))


def test_there_are_committed_records() -> None:
    assert len(COMMITTED) >= 20


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(REPO / "docs" / "records")))
def test_every_committed_record_loads_and_writes_back_byte_identical(path: Path, tmp_path: Path) -> None:
    rec = BenchRecord.read(path)
    assert rec.schema_version == SCHEMA_VERSION and isinstance(rec.spec, RunSpec)
    assert rec.spec.key == rec.run_key and rec.run_id == path.stem
    assert rec.to_json() == read_record(path) and list(rec.to_json()) == list(read_record(path))
    text = path.read_text(encoding="utf-8")
    assert rec.to_text() == text
    written = rec.write(tmp_path)
    assert written.relative_to(tmp_path).parts == ("records", rec.spec.experiment, path.name)
    assert written.read_bytes() == path.read_bytes()


def test_build_record_is_a_bench_record(tmp_path: Path) -> None:
    spec = RunSpec("table1", "lm-span", "twitter2015", "twitter2015", 1, {"epochs": 1})
    metrics = {"test": {"conlleval": {"f1": 50.0}, "strict": {"f1": 49.0}}}
    d = build_record(spec, metrics=metrics, data={"train": {}}, label_words=None, wall_time_s=1.23456)
    rec = BenchRecord.from_json(d)
    assert rec.to_json() == d and list(d) == list(BenchRecord.FIELDS)
    assert rec.spec == spec and rec.wall_time_s == 1.235 and rec.extra == {}
    path = write_record(tmp_path, d)
    assert path.read_text(encoding="utf-8") == rec.to_text()
    assert BenchRecord.read(path) == rec


def test_other_schemas_and_fields_are_refused() -> None:
    good = json.loads(COMMITTED[0].read_text(encoding="utf-8"))
    with pytest.raises(RecordError, match="schema version 1"):
        BenchRecord.from_json({**good, "schema_version": 2}, "x.json")
    with pytest.raises(RecordError, match=r"x.json: run record fields missing \['metrics'\], unknown \[\]"):
        BenchRecord.from_json({k: v for k, v in good.items() if k != "metrics"}, "x.json")
    with pytest.raises(RecordError, match=r"unknown \['note'\]"):
        BenchRecord.from_json({**good, "note": 1}, "x.json")
    with pytest.raises(RecordError, match="spec is not a RunSpec"):
        BenchRecord.from_json({**good, "spec": {"experiment": "table1"}}, "x.json")
