"""`BenchRecord`, the one typed run record: every committed record loads and writes back byte-identical,
`build_record` builds one, and a record of another schema, with other fields or with a broken recipe block is
refused in one line naming the file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catmner_bench.records import (
    SCHEMA_VERSION,
    BenchRecord,
    Recipe,
    RecordError,
    RunSpec,
    SearchSetting,
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
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert rec.to_json() == raw and list(rec.to_json()) == list(raw) == list(BenchRecord.FIELDS)
    assert read_record(path) == rec
    text = path.read_text(encoding="utf-8")
    assert rec.to_text() == text
    written = rec.write(tmp_path)
    assert written.relative_to(tmp_path).parts == ("records", rec.spec.experiment, path.name)
    assert written.read_bytes() == path.read_bytes()


def test_build_record_is_a_bench_record(tmp_path: Path) -> None:
    spec = RunSpec("table1", "lm-span", "twitter2015", "twitter2015", 1, {"epochs": 1})
    metrics = {"test": {"conlleval": {"f1": 50.0}, "strict": {"f1": 49.0}}}
    recipe = Recipe("older", False, None, (SearchSetting("2", "batch 10", 3),))
    rec = build_record(
        spec, metrics=metrics, data={"train": {}}, label_words=None, wall_time_s=1.23456, recipe=recipe
    )
    assert BenchRecord.from_json(rec.to_json()) == rec and list(rec.to_json()) == list(BenchRecord.FIELDS)
    assert rec.spec == spec and rec.wall_time_s == 1.235 and rec.extra == {} and rec.recipe == recipe
    assert rec.to_json()["recipe"]["search"] == [{"round": "2", "setting": "batch 10", "index": 3}]
    path = write_record(tmp_path, rec)
    assert path.read_text(encoding="utf-8") == rec.to_text()
    assert BenchRecord.read(path) == rec


def test_other_schemas_and_fields_are_refused() -> None:
    good = json.loads(COMMITTED[0].read_text(encoding="utf-8"))
    with pytest.raises(RecordError, match="schema version 2"):
        BenchRecord.from_json({**good, "schema_version": 3}, "x.json")
    old = {k: v for k, v in good.items() if k != "recipe"} | {"schema_version": 1}
    with pytest.raises(RecordError) as e:
        BenchRecord.from_json(old, "x.json")
    assert str(e.value) == (
        "x.json: a run record of schema version 1, without its recipe block: catmner-bench records refresh DIR"
    )
    with pytest.raises(RecordError, match=r"x.json: run record fields missing \['metrics'\], unknown \[\]"):
        BenchRecord.from_json({k: v for k, v in good.items() if k != "metrics"}, "x.json")
    with pytest.raises(RecordError, match=r"unknown \['note'\]"):
        BenchRecord.from_json({**good, "note": 1}, "x.json")
    with pytest.raises(RecordError, match="spec is not a RunSpec"):
        BenchRecord.from_json({**good, "spec": {"experiment": "table1"}}, "x.json")
    with pytest.raises(RecordError, match=r"field 'extra' is not a JSON object"):
        BenchRecord.from_json({**good, "extra": []}, "x.json")


@pytest.mark.parametrize(
    "recipe",
    [
        None,
        [],
        {"status": "new", "in_verdicts": True, "saliency": None, "search": []},
        {"status": "current", "in_verdicts": 1, "saliency": None, "search": []},
        {"status": "current", "in_verdicts": True, "saliency": 2, "search": []},
        {"status": "current", "in_verdicts": True, "saliency": None},
        {"status": "current", "in_verdicts": True, "saliency": None, "search": [["1", "x", 0]]},
        {
            "status": "current",
            "in_verdicts": True,
            "saliency": None,
            "search": [{"round": "1", "setting": "x"}],
        },
        {
            "status": "current",
            "in_verdicts": True,
            "saliency": None,
            "search": [{"round": "1", "setting": "x", "index": True}],
        },
    ],
)
def test_a_broken_recipe_block_is_one_line_naming_the_file_and_the_refresh(recipe) -> None:
    good = json.loads(COMMITTED[0].read_text(encoding="utf-8"))
    with pytest.raises(RecordError) as e:
        BenchRecord.from_json({**good, "recipe": recipe}, "x.json")
    assert str(e.value) == (
        "x.json: the run record's recipe is not a recipe block (rewrite it: catmner-bench records refresh DIR)"
    )
