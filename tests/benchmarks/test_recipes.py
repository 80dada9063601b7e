"""The recipe facts a record carries (`records.Recipe`, computed by `catmner_bench.recipes`): the committed
records' facts are what the planner computes now, the status rule on constructed configs, and `catmner-bench
records refresh`, which rewrites that block alone (schema-1 records get one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from catmner_bench.cli import app
from catmner_bench.profiles import PROFILES
from catmner_bench.recipes import recipe_of, refresh, status
from catmner_bench.records import BenchRecord, Recipe, RecordError, SearchSetting, finished
from catmner_bench.report import write_report
from catmner_bench.search_plan import SEARCH_ROUNDS
from catmner_bench.systems import system_config
from recordkit import make_record
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
COMMITTED = sorted((REPO / "docs" / "records").rglob("*.json"))
QUICK = PROFILES["quick"]


def test_the_committed_records_carry_the_facts_the_planner_computes_now() -> None:
    """A recipe change (a profile's default, a system's config, a search round) makes stored facts stale: the
    records must then be refreshed and committed, or the report would judge them by yesterday's recipe."""
    stale = [p for p in COMMITTED if BenchRecord.read(p).recipe != recipe_of(BenchRecord.read(p).spec)]
    shown = ", ".join(str(p.relative_to(REPO)) for p in stale[:5])
    assert not stale, (
        f"{len(stale)} committed record(s) with stale recipe facts ({shown}): run "
        "`uv run catmner-bench records refresh docs/records` and commit the records"
    )


def test_status_current_placement_older() -> None:
    now = system_config("cat-textual", QUICK)
    assert status("cat-textual", now) == "current"
    # a caption config from before issue 28 (no caption_positions: captions were placed as "restart")
    before = {k: v for k, v in now.items() if k != "caption_positions"}
    assert status("cat-textual", before) == "placement"
    assert status("cat-textual", {**before, "saliency_scale": "paper"}) == "older"  # older beyond placement
    assert status("cat-textual", {**now, "epochs": 99}) == "current"  # epochs and data size are the record's
    assert status("cat-textual", {**now, "encoder_lr": 5e-5}) == "older"
    assert status("lm-span", {**now, "variant": "text"}) == "older"
    assert status("no-such-system", now) == "older" and status("cat-textual", {}) == "older"
    grid = system_config("mm", QUICK, visual="grid")
    assert status("mm", grid) == "current" and status("mm", {**grid, "image_encoder": "x"}) == "older"


def test_recipe_of_names_verdicts_saliency_and_search_settings() -> None:
    cat = make_record("cat-textual", config=system_config("cat-textual", QUICK))
    assert cat.recipe == Recipe("current", True, str(cat.spec.config["saliency_scale"]), ())
    assert make_record("lm-span", config=system_config("lm-span", QUICK)).recipe.saliency is None
    decisive = make_record("mm", config={}, experiment="decisive", sample={"alpha": 100, "index": 0})
    assert decisive.recipe.in_verdicts is False and decisive.alpha == 100
    first = SEARCH_ROUNDS[0]
    settings = first.configs("lm-span", QUICK)
    for i, (name, cfg) in enumerate(settings):
        rec = make_record("lm-span", config=cfg, experiment="search")
        assert rec.recipe.in_verdicts is False
        assert SearchSetting(first.name, name, i) in rec.recipe.search
        assert make_record("lm-span", config=cfg).recipe.search == ()  # a Table 1 run is no search setting
    assert make_record("lm-span", config={"x": 1}, experiment="search").recipe.search == ()


def _one_committed(tmp_path: Path) -> tuple[Path, Path]:
    """A committed record (a Table 1 CAT-MNER run: saliency, caption placement) copied under tmp_path."""
    src = next(p for p in COMMITTED if p.parent.name == "table1" and p.name.startswith("cat-textual"))
    dst = tmp_path / "records" / "table1" / src.name
    dst.parent.mkdir(parents=True)
    shutil.copy(src, dst)
    return src, dst


def test_refresh_migrates_a_schema_1_record_and_leaves_the_rest_byte_identical(tmp_path: Path) -> None:
    src, path = _one_committed(tmp_path)
    committed = src.read_text(encoding="utf-8")
    v1 = {k: v for k, v in json.loads(committed).items() if k != "recipe"} | {"schema_version": 1}
    path.write_text(json.dumps(v1, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    # the report refuses it in one line naming the file and the command
    with pytest.raises(RecordError) as e:
        write_report(tmp_path, tmp_path / "report")
    assert str(e.value) == (
        f"{path}: a run record of schema version 1, without its recipe block: catmner-bench records refresh DIR"
    )
    res = CliRunner().invoke(app, ["report", str(tmp_path)])
    assert res.exit_code == 1 and res.output.count("\n") == 1 and "records refresh DIR" in res.output
    res = CliRunner().invoke(app, ["records", "refresh", str(tmp_path)])
    assert res.exit_code == 0 and res.output == f"{tmp_path}: 1 of 1 record(s) rewritten\n"
    assert path.read_text(encoding="utf-8") == committed  # as committed (its facts are current: see above)
    assert refresh(tmp_path) == (0, 1)  # nothing to do twice


def test_refresh_rewrites_only_the_recipe_block(tmp_path: Path) -> None:
    src, path = _one_committed(tmp_path)
    rec = BenchRecord.read(src)
    stale = Recipe("older", False, "made-up", (SearchSetting("9", "x", 0),))
    path.write_text(BenchRecord(**{**vars(rec), "recipe": stale}).to_text(), encoding="utf-8")
    before = path.read_text(encoding="utf-8")
    assert refresh(tmp_path / "records") == (1, 1)
    after = path.read_text(encoding="utf-8")
    head = before[: before.index('  "recipe": {')]
    assert after.startswith(head) and after == src.read_text(
        encoding="utf-8"
    )  # metrics and all else as they were
    assert BenchRecord.read(path).recipe == recipe_of(rec.spec) != stale


def test_refresh_stops_at_a_file_that_is_no_record_unless_a_run_redoes_it(tmp_path: Path) -> None:
    src, path = _one_committed(tmp_path)
    broken = path.parent / "broken.json"
    broken.write_text("{", encoding="utf-8")
    with pytest.raises(RecordError, match=f"{broken}: not a readable run record"):
        refresh(tmp_path)
    res = CliRunner().invoke(app, ["records", "refresh", str(tmp_path)])
    assert (
        res.exit_code == 1 and res.output.startswith("catmner-bench: error: ") and res.output.count("\n") == 1
    )
    v1 = {k: v for k, v in json.loads(src.read_text()).items() if k != "recipe"} | {"schema_version": 1}
    path.write_text(json.dumps(v1), encoding="utf-8")
    spec = BenchRecord.read(src).spec
    assert finished(tmp_path, spec) is None  # schema 1 is no finished run until refreshed
    assert refresh(tmp_path, strict=False) == (1, 2)  # as `catmner-bench run` does first: the run is kept
    assert finished(tmp_path, spec) == BenchRecord.read(src) and broken.read_text() == "{"
    with pytest.raises(RecordError, match="not a folder of benchmark records"):
        refresh(tmp_path / "missing")
