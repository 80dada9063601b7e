"""Round 3 of the recipe search (issue 28): the refinement's options and the epochs, each setting run only for
the models it changes, and `catmner-bench run search --rounds` to run one round."""

from __future__ import annotations

import subprocess
import sys

from catmner_bench.experiments import plan
from catmner_bench.profiles import PROFILES
from catmner_bench.runner import RunContext, train_config
from catmner_bench.search_plan import SEARCH_ROUNDS, applies
from catmner_bench.systems import system_config

ROUND3 = next(r for r in SEARCH_ROUNDS if r.name == "3")


def _names(system: str) -> list[str]:
    return [name for name, _ in ROUND3.configs(system, PROFILES["quick"])]


def test_each_option_runs_only_for_the_models_it_changes():
    cat, mm, text = _names("cat-textual"), _names("mm"), _names("lm-span")
    assert len(cat) == len(ROUND3.settings) == 7  # CAT-MNER has label words and a caption: every option
    assert mm == ["profile default", "10 epochs, patience 2 (best on validation kept)", "per-block softmax"]
    assert text == ["profile default", "10 epochs, patience 2 (best on validation kept)"]
    assert not applies({"labels": None, "visual": "caption"}, {"saliency_lr": 1e-2})
    assert not applies({"labels": "textual", "visual": "none"}, {"model_overrides": {"softmax": "block"}})
    assert applies({"labels": "textual", "visual": "caption"}, {"model_overrides": {"softmax": "block"}})


def test_round3_is_pinned_to_the_recipe_it_was_planned_around():
    configs = dict(ROUND3.configs("cat-textual", PROFILES["quick"]))
    default = configs["profile default"]
    assert default["epochs"] == 3 and default["encoder_lr"] == 1e-4 and "patience" not in default
    assert default == system_config(
        "cat-textual", PROFILES["quick"]
    )  # today's recipe: it reuses Table 1's runs
    longer = configs["10 epochs, patience 2 (best on validation kept)"]
    assert (longer["epochs"], longer["patience"]) == (10, 2)
    assert configs["per-block softmax"]["model_overrides"]["softmax"] == "block"


def test_the_saliency_settings_reach_the_model_and_the_trainer(tmp_path):
    configs = dict(ROUND3.configs("cat-textual", PROFILES["quick"]))
    paper = configs["saliency: the paper's"]
    assert paper["model_overrides"]["saliency_scale"] == paper["saliency_scale"] == "paper"
    ctx = RunContext(output=tmp_path, profile=PROFILES["quick"])
    from catmner_bench.records import RunSpec

    for name, field, value in (
        ("learned saliency at lr 1e-2", "saliency_lr", 1e-2),
        ("learned saliency from |QK^T|", "saliency_from_qk", True),
        ("10 epochs, patience 2 (best on validation kept)", "patience", 2),
    ):
        spec = RunSpec("search", "cat-textual", "twitter2017", "twitter2017", 1, configs[name])
        assert getattr(train_config(ctx, spec, tmp_path), field) == value


def test_rounds_option_plans_only_the_rounds_asked_for(tmp_path):
    ctx = RunContext(output=tmp_path, profile=PROFILES["quick"], search_rounds=("3",))
    specs = plan("search", ctx, ["cat-textual", "mm"], ["twitter2017"])
    assert len(specs) == len(_names("cat-textual")) + len(_names("mm"))  # one seed in the quick profile
    everything = plan(
        "search", RunContext(output=tmp_path, profile=PROFILES["quick"]), ["mm"], ["twitter2017"]
    )
    assert len(everything) > len(_names("mm"))


def test_an_unknown_round_is_one_line(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", "from catmner_bench.cli import main; main()", "run", "search", "--rounds", "9"]
        + ["--output", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "catmner-bench: error: unknown search round(s) 9: choose from 1, 2, 3"
    ]


def test_setting_option_plans_only_the_settings_asked_for(tmp_path):
    """--setting keeps the settings whose name starts with one of its values (case-insensitive), in the round's
    order; the command stored in the records repeats the option, so a name with a comma survives."""
    from catmner_bench.cli import _settings, command_line

    wanted = _settings(["Profile default", "10 epochs"])
    ctx = RunContext(output=tmp_path, profile=PROFILES["quick"], search_rounds=("3",), search_settings=wanted)
    specs = plan("search", ctx, ["mm", "cat-textual"], ["twitter2017"])
    named = {
        (s.system, next(n for n, c in ROUND3.configs(s.system, PROFILES["quick"]) if c == s.config))
        for s in specs
    }
    default, epochs = "profile default", "10 epochs, patience 2 (best on validation kept)"
    assert len(specs) == 4 and named == {(m, n) for m in ("mm", "cat-textual") for n in (default, epochs)}
    cmd = command_line("search", "quick", tmp_path, {"setting": ["profile default", "10 epochs, patience 2"]})
    assert "--setting 'profile default' --setting '10 epochs, patience 2'" in cmd


def test_an_unknown_setting_is_one_line(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            "from catmner_bench.cli import main; main()",
            "run",
            "search",
            "--setting",
            "nope",
        ]
        + ["--output", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode != 0 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "catmner-bench: error: no search setting starts with 'nope': the settings are profile default;"
    )


def test_the_report_draws_the_early_stopping_runs_curves(tmp_path):
    """The search's early-stopping setting gets a table of validation F1 by epoch, averaged over the runs that
    reached each epoch (a run that stopped early counts until it stopped), with each run's kept epoch, beside
    the round's 3-epoch default, and a PNG per dataset."""
    from catmner_bench.report import groups_of
    from catmner_bench.report.search import search_epochs_section
    from recordkit import make_record

    configs = dict(ROUND3.configs("mm", PROFILES["quick"]))
    long = configs["10 epochs, patience 2 (best on validation kept)"]
    curves = {1: [70.0, 74.0, 76.0, 75.0, 75.5], 2: [72.0, 76.0, 78.0, 79.0, 78.0, 78.5]}
    recs = [
        make_record(
            "mm",
            "twitter2017",
            seed,
            max(c),
            long,
            experiment="search",
            extra={"valid_f1_by_epoch": c, "best_epoch": c.index(max(c)) + 1, "stopped_epoch": len(c)},
        )
        for seed, c in curves.items()
    ] + [
        make_record(
            "mm",
            "twitter2017",
            seed,
            75.0,
            configs["profile default"],
            experiment="search",
            extra={"valid_f1_by_epoch": [71.0, 74.0, 75.0 + seed], "best_epoch": 3},
        )
        for seed in (1, 2)
    ]
    text, figs = search_epochs_section(groups_of(recs), tmp_path / "figures", "figures")
    rows = [r for r in text.splitlines() if r.startswith("| Twitter-2017")]
    assert len(rows) == 2
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[2:4] == ["10 epochs, patience 2", "2"]
    assert cells[4:10] == ["71.00", "75.00", "77.00", "77.00", "76.75", "78.50 (1)"]  # 6 epochs: the longest
    assert cells[-2] == "3 (stopped 5), 4 (stopped 6)"
    default = [c.strip() for c in rows[1].strip("|").split("|")]
    assert default[2] == "3 epochs (the default)" and default[4:10] == [
        "71.00",
        "74.00",
        "76.50",
        "-",
        "-",
        "-",
    ]
    assert [p.name for p in figs] == ["search-epochs-twitter2017.png"] and figs[0].stat().st_size > 1000
    assert "![validation F1 by epoch, Twitter-2017](figures/search-epochs-twitter2017.png)" in text
    # a run that went the whole budget (no stop) sorts beside one that stopped with the same best epoch; a
    # record without a curve (from before the field) is not counted as a run of the curve
    full = [70.0, 74.0, 78.0] + [77.0] * 7
    more = [
        make_record(
            "mm",
            "twitter2017",
            3,
            78.0,
            long,
            experiment="search",
            extra={"valid_f1_by_epoch": full, "best_epoch": 3},
        ),
        make_record("mm", "twitter2017", 4, 78.0, long, experiment="search", extra={"best_epoch": 2}),
    ]
    text, _ = search_epochs_section(groups_of(recs + more), tmp_path / "figures", "figures")
    first = next(r for r in text.splitlines() if r.startswith("| Twitter-2017"))
    cells = [c.strip() for c in first.strip("|").split("|")]
    assert cells[3] == "3" and cells[-2] == "3, 3 (stopped 5), 4 (stopped 6)" and cells[13] == "77.00 (1)"
    # no early-stopping setting among the records: no section
    assert search_epochs_section(groups_of(recs[2:]), tmp_path / "f2", "f2") == (None, [])


def test_a_setting_the_plan_does_not_hold_is_refused(tmp_path):
    """A prefix that names a setting of another round, or one that does not apply to the systems asked for,
    would plan nothing for it: refused in one line, as an empty prefix (which would match every setting) is."""
    import pytest
    from catmner_bench.cli import _settings
    from catmner_bench.errors import BenchError

    ctx = RunContext(
        output=tmp_path,
        profile=PROFILES["quick"],
        search_rounds=("3",),
        search_settings=_settings(["per-block"]),
    )
    with pytest.raises(
        BenchError, match=r"--setting 'per-block': no such setting in round\(s\) 3 for lm-span"
    ):
        plan("search", ctx, ["lm-span"], ["twitter2017"])
    assert len(plan("search", ctx, ["lm-span", "mm"], ["twitter2017"])) == 1  # MM has a caption to mix
    ctx = RunContext(
        output=tmp_path,
        profile=PROFILES["quick"],
        search_rounds=("3",),
        search_settings=_settings(["encoder lr"]),
    )
    with pytest.raises(BenchError, match="'encoder lr': no such setting in round"):
        plan("search", ctx, ["mm"], ["twitter2017"])
    with pytest.raises(BenchError, match="an empty name would match every setting"):
        _settings(["  "])
