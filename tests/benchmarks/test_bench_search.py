"""The recipe search: every setting trained and scored on validation only, the best marked in the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from catmner_bench.cli import run
from catmner_bench.profiles import PROFILES
from catmner_bench.records import RecordError, iter_records
from catmner_bench.report import write_report
from catmner_bench.report.document import SEARCH_BEGIN, SEARCH_END
from catmner_bench.search_plan import SEARCH_ROUNDS


def test_recipe_search_scores_validation_only_and_marks_the_best(tmp_path, shared_data, monkeypatch) -> None:
    import torch

    torch.set_num_threads(1)
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    res = run(
        "search",
        profile="smoke",
        output=out,
        data_dir=shared_data,
        quiet=True,
        systems=["lm-span"],
        datasets=["twitter2017"],
    )
    # a config that two rounds share is one run
    configs = {
        json.dumps(c, sort_keys=True)
        for r in SEARCH_ROUNDS
        for _, c in r.configs("lm-span", PROFILES["smoke"])
    }
    assert res["ran"] == len(configs)
    recs = [r for _, r in iter_records(out)]
    assert len(recs) == len(configs) and all(r.metrics["test"] is None for r in recs)
    assert len({r.run_key for r in recs}) == len(configs)  # each setting is its own run
    warm = [r for r in recs if r.spec.config.get("warmup_ratio") == 0.0]
    (warm,) = warm
    trainer = json.loads((Path(warm.extra["trainer_run_dir"]) / "run.json").read_text())
    assert trainer["config"]["warmup_ratio"] == 0.0  # the setting reached the trainer
    shapes = [r for r in recs if (r.spec.config["model_overrides"] or {}).get("case_features") == "shape"]
    assert len(shapes) == 1 and shapes[0].extra["model_config"]["case_features"] == "shape"
    md = Path(write_report(out)["markdown"]).read_text(encoding="utf-8")
    block = md[md.index("## Recipe search") :]
    block = block[: block.index("\n## ", 3)]
    # the settings' tables; the early-stopping setting's epoch curves follow them in their own subsection
    curves = block.index("\n### How many epochs")
    assert "| Twitter-2017 | LM-SPAN (TEXT) | 10 epochs, patience 2 |" in block[curves:]
    block = block[:curves]
    rows = [line for line in block.splitlines() if line.startswith("| ") and "Setting" not in line]
    # every setting of every round that is a different model for TEXT (no saliency, no softmax: it has neither)
    assert len(rows) == sum(len(r.configs("lm-span", PROFILES["smoke"])) for r in SEARCH_ROUNDS)
    assert sum(len(r.configs("lm-span", PROFILES["smoke"])) for r in SEARCH_ROUNDS) < sum(
        len(r.settings) for r in SEARCH_ROUNDS
    )
    chosen = [row for row in rows if "(chosen" in row]
    assert len(chosen) == len(SEARCH_ROUNDS)  # one choice per round; the last round's decides the recipe
    assert [("(chosen)" in row) for row in chosen] == [False] * (len(SEARCH_ROUNDS) - 1) + [True]
    # round 1: no Table 1 seeds here, so the noise is unknown and the best is chosen
    first = block[: block.index("round 2\n")] if len(SEARCH_ROUNDS) > 1 else block
    best = max(
        r.metrics["valid"]["conlleval"]["f1"]
        for r in recs
        if json.dumps(r.spec.config, sort_keys=True)
        in {json.dumps(c, sort_keys=True) for _, c in SEARCH_ROUNDS[0].configs("lm-span", PROFILES["smoke"])}
    )
    assert f"| {best:.2f} |" in chosen[0] and chosen[0] in first
    assert "(not yet: Table 1)" in chosen[-1]  # test F1 is for the recipe's choice only
    if len(SEARCH_ROUNDS) > 1:
        assert f"round {SEARCH_ROUNDS[1].name} decides the recipe" in chosen[0] and chosen[0].endswith(
            "| - |"
        )
    assert "## The paper's conclusions" in md and "## Table 1" not in md  # validation-only runs judge nothing

    # the same table goes into a doc's marked block (docs/model.md), the rest of the doc untouched
    doc = tmp_path / "model.md"
    doc.write_text(f"# Model\n\n## Recipe search\n{SEARCH_BEGIN}\nold table\n{SEARCH_END}\n\n## After\n")
    write_report(out, search_doc=doc)
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Model\n\n## Recipe search\n") and text.endswith(f"{SEARCH_END}\n\n## After\n")
    assert "old table" not in text and chosen[0] in text and text.count("## Recipe search") == 1
    again = doc.read_text(encoding="utf-8")
    write_report(out, search_doc=doc)
    assert doc.read_text(encoding="utf-8") == again  # regenerating changes nothing
    bare = tmp_path / "bare.md"
    bare.write_text("no markers\n")
    with pytest.raises(RecordError, match="bare.md: needs exactly one line"):
        write_report(out, search_doc=bare)
    assert bare.read_text() == "no markers\n"


def test_table1_scores_the_search_runs_model_on_test_instead_of_training_it_again(
    tmp_path, shared_data, monkeypatch
) -> None:
    """A Table 1 run whose config and seed a finished search run trained (the round's default, say) scores that
    model on test once; its scores are those of training the same run afresh, and its minutes count the
    training."""
    import torch
    from catmner_bench.report import groups_of

    torch.set_num_threads(1)
    monkeypatch.setenv("CATMNER_HOME", str(tmp_path / "home"))
    out = tmp_path / "out"
    common = dict(profile="smoke", data_dir=shared_data, quiet=True, systems=["mm"], datasets=["twitter2017"])
    res = run("search", output=out, rounds=["3"], setting=["profile default"], **common)
    assert res["ran"] == 1
    (searched,) = [r for _, r in iter_records(out)]
    assert searched.metrics["test"] is None
    assert run("table1", output=out, **common)["ran"] == 1
    (t1,) = [r for _, r in iter_records(out) if r.spec.experiment == "table1"]
    assert t1.spec.config == searched.spec.config
    assert t1.extra["reused_model"]["run_id"] == searched.run_id
    assert t1.metrics["valid"] == searched.metrics["valid"] and t1.metrics["test"] is not None
    assert t1.extra["best_epoch"] == searched.extra["best_epoch"]
    (g,) = groups_of([t1])
    assert g.wall_minutes * 60 == pytest.approx(t1.wall_time_s + searched.wall_time_s)
    # the same run trained afresh (no search run in its folder) scores the same on test
    fresh = tmp_path / "fresh"
    assert run("table1", output=fresh, **common)["ran"] == 1
    (again,) = [r for _, r in iter_records(fresh)]
    assert "reused_model" not in again.extra
    for mode in ("conlleval", "strict"):
        assert again.metrics["test"][mode]["f1"] == pytest.approx(t1.metrics["test"][mode]["f1"], abs=1e-9)
        assert again.metrics["valid"][mode]["f1"] == pytest.approx(t1.metrics["valid"][mode]["f1"], abs=1e-9)
