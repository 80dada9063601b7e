"""Unit checks of the benchmark's own pieces: the CRF against brute force, the paper transcription against
itself, run keys and atomic records."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from catmner_bench import paper
from catmner_bench.records import BenchRecord, RecordError, RunSpec, finished, read_record
from catmner_model import CRF
from recordkit import make_record


def _brute_force(crf: CRF, em: torch.Tensor, n: int) -> tuple[float, list[int]]:
    scores = {}
    for path in itertools.product(range(crf.num_tags), repeat=n):
        s = crf.start[path[0]] + crf.end[path[-1]]
        s = (
            s
            + sum(em[i, path[i]] for i in range(n))
            + sum(crf.transitions[path[i - 1], path[i]] for i in range(1, n))
        )
        scores[path] = float(s)
    logz = float(torch.logsumexp(torch.tensor(list(scores.values())), 0))
    return logz, list(max(scores, key=scores.get))


@torch.no_grad()
def test_crf_matches_brute_force_with_padding() -> None:
    torch.manual_seed(3)
    crf = CRF(3)
    for p in crf.parameters():
        p.normal_()
    em = torch.randn(3, 5, 3)
    lengths = [5, 2, 1]
    mask = torch.tensor([[i < n for i in range(5)] for n in lengths])
    logz = crf.log_partition(em, mask)
    paths = crf.decode(em, mask)
    for b, n in enumerate(lengths):
        ref_z, ref_path = _brute_force(crf, em[b], n)
        assert logz[b].item() == pytest.approx(ref_z, abs=1e-4)
        assert paths[b] == ref_path
    tags = torch.tensor([p + [0] * (5 - len(p)) for p in paths])
    nll = crf(em, tags, mask)
    assert nll.item() > 0  # probability of the best path < 1


def test_crf_learns_a_tiny_sequence() -> None:
    torch.manual_seed(0)
    crf = CRF(4)
    em = torch.zeros(2, 4, 4, requires_grad=True)
    tags = torch.tensor([[1, 2, 2, 0], [3, 0, 0, 0]])
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    opt = torch.optim.Adam([em, *crf.parameters()], lr=0.1)
    for _ in range(100):
        loss = crf(em, tags, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert crf.decode(em, mask) == [[1, 2, 2, 0], [3, 0]]


def test_paper_table1_f1_is_the_harmonic_mean_of_p_and_r() -> None:
    # a transcription check: F1 = 2PR/(P+R) to the printed precision, except where the paper itself disagrees
    off = {}
    for row in paper.TABLE1:
        for ds, sc in row.scores.items():
            if sc.precision is not None:
                f1 = 2 * sc.precision * sc.recall / (sc.precision + sc.recall)
                if abs(f1 - sc.f1) > 0.015:
                    off[(row.key, ds)] = round(f1 - sc.f1, 2)
    assert off == paper.KNOWN_INCONSISTENCIES["table1"]


def test_paper_table2_and_3_consistency() -> None:
    off = {}
    for key, vals in paper.TABLE2.items():
        for direction, (p, r, f) in vals.items():
            if abs(2 * p * r / (p + r) - f) > 0.015:
                off[(key, direction)] = round(2 * p * r / (p + r) - f, 2)
    assert off == paper.KNOWN_INCONSISTENCIES["table2"]
    drops15 = {"mm": 1.09, "t2i": 0.88, "i2t": 0.64, "text": 1.27, "cat-visualgenome": 0.50}  # printed (↓ x)
    drops17 = {"mm": 1.24, "t2i": 1.03, "i2t": 0.70, "text": 1.41, "cat-visualgenome": 0.34}
    _, cat15, cat17 = paper.TABLE3["cat"]
    for key, d in drops15.items():
        assert round(cat15 - paper.TABLE3[key][1], 2) == d
        assert round(cat17 - paper.TABLE3[key][2], 2) == drops17[key]
    # the textual baseline of Table 3 is Table 1's RoBERTa-large-SPAN
    rob = paper.table1_row("roberta-large-span")
    assert (paper.TABLE3["text"][1], paper.TABLE3["text"][2]) == (
        rob.scores["twitter2015"].f1,
        rob.scores["twitter2017"].f1,
    )
    assert paper.TABLE3["cat"][1] == paper.table1_row("cat-mner-roberta-large").scores["twitter2015"].f1


def test_reference_rows() -> None:
    assert paper.reference_row_for("lm-span", "roberta-large") == "roberta-large-span"
    assert paper.reference_row_for("lm-span", "minilm") == "bert-base-span"
    assert paper.reference_row_for("cat-textual", "bert-large-cased") == "cat-mner-bert-large"
    assert paper.reference_row_for("mm", "minilm") is None


def test_run_key_and_atomic_record(tmp_path) -> None:
    a = RunSpec("table1", "lm-span", "twitter2015", "twitter2015", 1, {"epochs": 3, "lr": 5e-4})
    b = RunSpec("table1", "lm-span", "twitter2015", "twitter2015", 1, {"lr": 5e-4, "epochs": 3})
    c = RunSpec("table1", "lm-span", "twitter2015", "twitter2015", 2, {"lr": 5e-4, "epochs": 3})
    assert a.key == b.key != c.key
    assert finished(tmp_path, a) is None
    path = make_record("lm-span", config=a.config).write(tmp_path)
    assert path == tmp_path / "records" / "table1" / f"{a.run_id}.json"
    assert finished(tmp_path, a).run_key == a.key
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left behind
    path.write_text("{broken")
    assert finished(tmp_path, a) is None  # a damaged record is redone, not trusted
    with pytest.raises(RecordError, match=str(path)):
        read_record(path)
    path.write_text(json.dumps({"schema_version": 99}))
    with pytest.raises(RecordError, match="schema version"):
        read_record(path)


class _G:
    """A stand-in for a report Group: one system on one dataset, test F1 per seed, of the current recipe
    (``currency`` 2) unless told otherwise; no records (runs in sampling order)."""

    def __init__(self, system, ds, f1, per_type=None, test=None, alpha=None, currency=2):
        self.system, self.train_dataset, self.test_dataset, self.alpha = system, ds, test or ds, alpha
        self.f1, self.per_type = f1, per_type or {}
        self.n = len(f1)
        self.currency, self.saliency, self.records = currency, None, None

    def values(self, key="f1", mode="conlleval", split="test"):
        return self.f1 if key == "f1" else self.per_type.get(key, self.f1)


def _text(j) -> str:
    """A judged claim as one string: outcome, cells, evidence."""
    return " | ".join([j.outcome, *(f"{k}: {v}" for k, v in j.cells.items()), j.evidence])


def test_verdicts_follow_the_interval():
    from catmner_bench.claims import CLAIMS
    from catmner_bench.outcomes import CONSISTENT, CONTRADICTS, INCONCLUSIVE
    from catmner_bench.report.conclusions import verdicts_section
    from catmner_bench.stats import Comparison

    refine = next(c for c in CLAIMS if "without refinement (MM)" in c.text)
    dss = ("twitter2015", "twitter2017")
    clear = [_G("cat-textual", d, [80.0, 80.2, 80.1]) for d in dss] + [
        _G("mm", d, [78.0, 78.1, 77.9]) for d in dss
    ]
    assert refine.check(clear).outcome == CONSISTENT  # +2.1, beyond the paper's +1.09 / +1.24
    worse = [_G("cat-textual", d, [78.0, 78.2, 78.1]) for d in dss] + [
        _G("mm", d, [80.0, 80.1, 79.9]) for d in dss
    ]
    j = refine.check(worse)
    assert j.outcome == CONTRADICTS and "the opposite direction" in _text(j)
    noisy = [_G("cat-textual", d, [80.0, 78.0, 82.0]) for d in dss] + [
        _G("mm", d, [79.5, 80.5, 80.0]) for d in dss
    ]
    j = refine.check(noisy)
    assert j.outcome == INCONCLUSIVE and "detectable ≥" in _text(j) and "vs paper +1.09" in _text(j)
    assert j.needs and all(n > 3 for _, n, _ in j.needs)  # more runs than these would decide it
    one_seed = [_G("cat-textual", d, [80.0]) for d in dss] + [_G("mm", d, [70.0]) for d in dss]
    j = refine.check(one_seed)
    assert j.outcome == INCONCLUSIVE and "no interval" in _text(j)  # a single seed is never judged
    assert refine.check([clear[0], one_seed[1], clear[2], one_seed[3]]).outcome == INCONCLUSIVE
    only15 = refine.check(clear[:3])  # mm on Twitter-2017 missing: judged on Twitter-2015 alone
    assert only15.outcome == CONSISTENT and "Twitter-2017: not run" in only15.evidence
    assert "not run" in refine.check(clear[:2]).evidence  # no mm at all
    assert Comparison([1.0, 2.0], [1.0, 2.0]).significant is False
    text = verdicts_section(clear)
    assert text.count("\n| 4.") == len(CLAIMS) and "cannot be tested here" in text


def test_verdicts_judge_the_model_the_current_code_trains() -> None:
    """Records from before a default changed (here: CAT-MNER trained with the paper's saliency scale) stay in the
    report, but a claim is judged on the group whose config the current code resolves the system to."""
    from catmner_bench.claims import CLAIMS
    from catmner_bench.outcomes import CONTRADICTS
    from catmner_bench.profiles import PROFILES
    from catmner_bench.recipes import is_current
    from catmner_bench.report import groups_of
    from catmner_bench.systems import system_config

    now = system_config("cat-textual", PROFILES["quick"])
    before = {k: v for k, v in now.items() if k != "saliency_scale"}  # a record of the older code
    mm = system_config("mm", PROFILES["quick"])
    assert is_current("cat-textual", now) and not is_current("cat-textual", before) and is_current("mm", mm)
    assert not is_current("cat-textual", {})  # no config: not current
    refine = next(c for c in CLAIMS if "without refinement (MM)" in c.text)
    recs = []
    for d in ("twitter2015", "twitter2017"):
        recs += [make_record("cat-textual", d, s, 90.0 + s / 10, before) for s in (1, 2, 3, 4)]
        recs += [make_record("cat-textual", d, s, 70.0 + s / 10, now) for s in (1, 2, 3)]
        recs += [make_record("mm", d, s, 80.0 + s / 10, mm) for s in (1, 2, 3)]
    j = refine.check(groups_of(recs))
    assert j.outcome == CONTRADICTS and "-10.00 [" in _text(j)  # the current model, though it has fewer runs


def test_bench_cli_one_error_handler_and_debug(tmp_path, monkeypatch) -> None:
    """BenchError is the package's one error base; known errors are one line, --debug shows the traceback."""
    from catmner_bench.cli import app
    from catmner_bench.errors import BenchError
    from catmner_bench.runner import BenchError as RunnerBenchError
    from typer.testing import CliRunner

    assert issubclass(RecordError, BenchError) and RunnerBenchError is BenchError
    monkeypatch.delenv("CATMNER_DEBUG", raising=False)
    runner = CliRunner()
    missing = tmp_path / "none"
    r = runner.invoke(app, ["report", str(missing)])
    assert r.exit_code == 1 and r.stderr.strip().splitlines() == [
        f"catmner-bench: error: {missing}: not a folder of benchmark records"
    ]
    for argv in (["--debug", "report", str(missing)], ["report", str(missing), "--debug"]):
        assert isinstance(runner.invoke(app, argv).exception, RecordError), argv
    monkeypatch.setenv("CATMNER_DEBUG", "1")
    assert isinstance(runner.invoke(app, ["report", str(missing)]).exception, RecordError)
    monkeypatch.delenv("CATMNER_DEBUG")
    r = runner.invoke(app, ["run", "table1", "--seeds", "1,x", "-o", str(tmp_path / "out")])
    assert (
        r.exit_code == 1
        and r.stderr.strip() == "catmner-bench: error: --seeds '1,x': expected comma-separated integers"
    )


def test_an_experiment_is_one_registry_entry(tmp_path, monkeypatch) -> None:
    """Experiments are objects in `EXPERIMENT_SPECS`: `plan` and `run_experiment` look them up by name."""
    from catmner_bench import experiments
    from catmner_bench.errors import BenchError
    from catmner_bench.profiles import resolve_profile
    from catmner_bench.runner import RunContext

    ctx = RunContext(output=tmp_path, profile=resolve_profile("paper"))
    assert experiments.EXPERIMENTS == (
        "table1",
        "table2",
        "table3",
        "fig3",
        "fig4",
        "search",
        "decisive",
        "speed",
    )
    assert experiments.EXPERIMENT_SPECS["fig4"].after_train(ctx, None) is not None
    assert experiments.EXPERIMENT_SPECS["table1"].after_train(ctx, None) is None
    monkeypatch.setitem(
        experiments.EXPERIMENT_SPECS, "mini", experiments.Experiment("mini", ("lm-span", "mm"))
    )
    specs = experiments.plan("mini", ctx, datasets=["twitter2017"])
    assert [(s.experiment, s.system, s.train_dataset) for s in specs[:2]] == [
        ("mini", "lm-span", "twitter2017"),
        ("mini", "lm-span", "twitter2017"),
    ]
    assert len(specs) == 2 * len(ctx.profile.seeds) and len({s.key for s in specs}) == len(specs)
    with pytest.raises(BenchError, match="unknown experiment 'nope': choose one of table1"):
        experiments.plan("nope", ctx)


def test_the_saliency_scale_of_a_refined_system_is_part_of_its_run_identity() -> None:
    """A changed library default must not make an old record look finished: refined systems carry the scale
    they train with in their config (and so in their run key)."""
    from catmner_bench.profiles import PROFILES
    from catmner_bench.systems import system_config
    from catmner_model.config import load_config

    p = PROFILES["quick"]
    assert (
        system_config("cat-textual", p)["saliency_scale"] == load_config("minilm").saliency_scale == "learned"
    )
    assert system_config("cat-sal-paper", p)["saliency_scale"] == "paper"
    assert system_config("cat-sal-keys", p)["saliency_scale"] == "keys"
    assert "saliency_scale" not in system_config("lm-span", p)  # no label words, no saliency
    assert "saliency_scale" not in system_config("mm", p)


def test_umt_systems_train_the_umt_family_and_cat_mner_run_keys_stay(tmp_path) -> None:
    """UMT rows are catmner_model's family "umt" over their own visual source; the configs of every other system
    carry no "model" field, so their run keys (and finished records) are what they were before families."""
    from catmner_bench.profiles import PROFILES
    from catmner_bench.records import RunSpec
    from catmner_bench.runner import RunContext, train_config
    from catmner_bench.systems import SYSTEMS, system_config

    p = PROFILES["quick"]
    umt, grid = system_config("umt", p), system_config("umt-grid", p)
    assert (umt["model"], umt["visual"], umt["labels"], umt["image_encoder"]) == (
        "umt",
        "caption",
        None,
        "none",
    )
    assert (grid["model"], grid["visual"], grid["image_encoder"]) == ("umt", "grid", p.image_encoder)
    assert all("model" not in system_config(s, p) for s in SYSTEMS if not s.startswith("umt"))
    ctx = RunContext(output=tmp_path, profile=p)
    tc = train_config(ctx, RunSpec("table1", "umt", "twitter2017", "twitter2017", 1, umt), tmp_path / "r")
    assert (tc.model, tc.variant, tc.visual, tc.labels) == ("umt", "mm", "caption", None)
    assert (
        train_config(
            ctx, RunSpec("table1", "mm", "twitter2017", "twitter2017", 1, system_config("mm", p)), tmp_path
        ).model
        == "catmner"
    )
    assert paper.reference_row_for("umt", "minilm") == paper.reference_row_for("umt-grid", "x") == "umt"


def test_each_unrun_competitor_says_why() -> None:
    for key in ("ocsga", "iaik", "rpbert", "umgf"):
        assert paper.table1_row(key).here.startswith("not run here: "), key
    assert "`umt`" in paper.table1_row("umt").here


def test_fig4_plans_grid_maps_only_where_the_dataset_has_images(tmp_path, shared_data) -> None:
    """The 4x4 grid maps need real images: a dataset with none gets only its caption maps (Table 1's models)."""
    import shutil

    from catmner_bench.experiments import plan
    from catmner_bench.profiles import resolve_profile
    from catmner_bench.runner import RunContext

    images = tmp_path / "images"
    (images / "twitter2015_images").mkdir(parents=True)
    (images / "twitter2017_images").mkdir()  # an empty folder: no image of Twitter-2017
    real = next((shared_data / "tweet_images" / "twitter2015_images").glob("*.jpg"))
    shutil.copy(real, images / "twitter2015_images" / real.name)
    ctx = RunContext(output=tmp_path / "out", profile=resolve_profile("quick"), image_dir=images)
    specs = plan("fig4", ctx, systems=["cat-textual"])
    visual = sorted((s.train_dataset, s.config["visual"]) for s in specs)
    assert visual == [("twitter2015", "caption"), ("twitter2015", "grid"), ("twitter2017", "caption")]
    grid_profile = RunContext(
        output=tmp_path / "o2", profile=resolve_profile("quick", visual="grid"), image_dir=images
    )
    # without a caption source there is nothing else to draw: the grid run is planned (and fails with one line)
    assert {s.train_dataset for s in plan("fig4", grid_profile, systems=["mm"])} == {
        "twitter2015",
        "twitter2017",
    }


def _record(system: str, ds: str, seed: int, f1: float, config: dict) -> BenchRecord:
    """A minimal run record for the report's table code (its recipe facts as the planner computes them)."""
    return make_record(system, ds, seed, f1, config)


def test_table3_has_our_saliency_rows_and_the_current_cat_row() -> None:
    """Table 3's CAT-MNER row is the config the current code trains; the other saliency scales are extra rows
    (from any experiment's records), each against that row."""
    from catmner_bench.profiles import PROFILES
    from catmner_bench.report import groups_of, table3_section
    from catmner_bench.systems import system_config

    q = PROFILES["quick"]
    now = system_config("cat-textual", q)
    old = {k: v for k, v in now.items() if k != "saliency_scale"}  # trained when Eq. 6 was the default
    recs = []
    for ds in ("twitter2015", "twitter2017"):
        recs += [_record("cat-textual", ds, s, 70.0 + s, now) for s in (1, 2, 3)]
        recs += [_record("cat-textual", ds, s, 60.0, old) for s in (1, 2, 3, 4)]
        recs += [_record("mm", ds, 1, 65.0, system_config("mm", q))]
    keys = [_record("cat-sal-keys", "twitter2017", 1, 75.0, system_config("cat-sal-keys", q))]
    # Visual Genome words have no Table 3 runs here, only Table 1's (the same model): the row shows those
    vg = [_record("cat-visualgenome", "twitter2015", 1, 66.0, system_config("cat-visualgenome", q))]
    groups = groups_of(recs)
    md = table3_section(groups, groups + groups_of(keys + vg))
    lines = {line.split(" | ")[1]: line for line in md.splitlines() if line.startswith("| ")}
    vg_row = lines["CAT-MNER (multimodal KB)"].split(" | ")
    assert vg_row[2:4] == ["66.00", "-6.00 (1 seed)"] and vg_row[7] == "-"
    assert "| 72.00 ± 1.00 |" in lines["CAT-MNER (textual KB)"]  # the current config, not the 4 older runs
    paper_row = lines["CAT-MNER, saliency as Eq. 6 (the paper's)"].split(" | ")
    # the same recipe but for the scale: against the CAT-MNER row, ± SE over seeds (sqrt(0 + 1/3) = 0.58)
    assert paper_row[2:4] == ["60.00 ± 0.00", "-12.00 ± 0.58 (sig.)"]
    assert paper_row[7:9] == ["60.00 ± 0.00", "-12.00 ± 0.58 (sig.)"]
    keys_row = lines["CAT-MNER, saliency x #keys"].split(" | ")
    assert keys_row[2] == "-" and keys_row[7:9] == ["75.00", "+3.00 (1 seed)"]
    assert "learned saliency" not in md  # the learned scale is the CAT-MNER row itself: no second row


def test_report_lists_the_current_config_of_a_system_before_its_older_ones() -> None:
    """Where a system has records of several configs (an earlier recipe), its rows are adjacent and the one the
    current code trains comes first, whatever order the record files load in."""
    from catmner_bench.profiles import PROFILES
    from catmner_bench.report import groups_of
    from catmner_bench.systems import system_config

    now = system_config("lm-span", PROFILES["quick"])
    old = dict(now, encoder_lr=now["encoder_lr"] / 2)
    recs = [_record("lm-span", "twitter2017", 1, 60.0, old), _record("mm", "twitter2017", 1, 62.0, {})]
    recs += [_record("lm-span", "twitter2017", 1, 61.0, now), _record("lm-span", "twitter2015", 1, 50.0, old)]
    for order in (recs, recs[::-1]):
        groups = [g for g in groups_of(order) if g.train_dataset == "twitter2017"]
        assert [g.system for g in groups] == ["lm-span", "lm-span", "mm"]
        assert groups[0].currency == 2 and groups[1].currency == 0


def test_verdicts_compare_like_with_like() -> None:
    """Two systems are compared on records trained alike (same saliency scale, epochs, data): Visual Genome words
    trained with the paper's scale are compared with textual words trained with that scale, not with today's."""
    from catmner_bench.claims import CLAIMS
    from catmner_bench.outcomes import CONSISTENT
    from catmner_bench.profiles import PROFILES
    from catmner_bench.report import groups_of
    from catmner_bench.systems import system_config
    from catmner_bench.verdicts import comparable

    q = PROFILES["quick"]
    cat_now = system_config("cat-textual", q)
    cat_old = {k: v for k, v in cat_now.items() if k != "saliency_scale"}
    vg_old = {k: v for k, v in system_config("cat-visualgenome", q).items() if k != "saliency_scale"}
    recs = []
    for ds in ("twitter2015", "twitter2017"):
        recs += [_record("cat-textual", ds, s, 80.0 + s / 10, cat_now) for s in (1, 2, 3)]
        recs += [_record("cat-textual", ds, s, 70.0 + s / 10, cat_old) for s in (1, 2, 3)]
        recs += [_record("cat-visualgenome", ds, s, 65.0 + s / 10, vg_old) for s in (1, 2, 3)]
    groups = groups_of(recs)
    now, old, vg = (g for g in groups if g.train_dataset == "twitter2015")
    assert comparable(old, vg) and not comparable(now, vg)
    words = next(c for c in CLAIMS if "Visual Genome" in c.text)
    j = words.check(groups)
    why = _text(j)
    assert j.outcome == CONSISTENT and "+5.00 [" in why and "older records: saliency paper" in why
    e10 = dict(cat_now, epochs=10)
    assert not comparable(groups_of([_record("cat-textual", "twitter2015", 1, 1.0, e10)])[0], now)


def test_verdicts_say_when_the_compared_runs_were_not_trained_alike() -> None:
    from catmner_bench.claims import CLAIMS
    from catmner_bench.outcomes import CONSISTENT, INCONCLUSIVE
    from catmner_bench.profiles import PROFILES
    from catmner_bench.report import groups_of
    from catmner_bench.systems import system_config

    q = PROFILES["quick"]
    crf = system_config("lm-crf", q)
    span = system_config("lm-span", q)
    # LM-CRF is trained like the span models (epochs, encoder lr): the CRF-vs-span claim compares decoders only
    assert (crf["epochs"], crf["encoder_lr"], crf["lr"]) == (span["epochs"], span["encoder_lr"], span["lr"])
    close = next(c for c in CLAIMS if "CRF-based" in c.text)
    alike = []
    for ds in ("twitter2015", "twitter2017"):
        for s in (1, 2, 3):
            alike += [
                _record("lm-crf", ds, s, 70.0 + s / 10, crf),
                _record("lm-span", ds, s, 70.3 + s / 10, span),
            ]
    j = close.check(groups_of(alike))
    assert j.outcome == CONSISTENT and "not trained alike" not in _text(j) and "within ±1" in _text(j)
    one = [r for r in alike if r.spec.seed == 1]
    assert close.check(groups_of(one)).outcome == INCONCLUSIVE  # one run a side: no interval, no verdict
    # an LM-CRF record of another recipe (the 10 epochs at encoder lr 5e-5 it once had) is named as such
    old = dict(crf, epochs=10, encoder_lr=5e-5)
    unlike = [r for r in alike if r.spec.system == "lm-span"]
    unlike += [_record("lm-crf", ds, 1, 70.0, old) for ds in ("twitter2015", "twitter2017")]
    j = close.check(groups_of(unlike))
    why = _text(j)
    assert j.outcome == INCONCLUSIVE and "not trained alike: " in why  # no verdict on runs unlike
    assert f"epochs {span['epochs']} vs 10" in why and f"encoder_lr {span['encoder_lr']:g} vs 5e-05" in why
    # with both in the records, the one the current code trains is compared
    why = _text(close.check(groups_of(alike + unlike)))
    assert "not trained alike" not in why, why


def test_fig4_finds_a_recorded_image_under_image_dir(tmp_path, shared_data) -> None:
    """A record's image path may be relative to where the run was made: the report finds the same file (same
    checksum) under --image-dir, and refuses a different file."""
    from catmner_bench.report import plot_fig4
    from catmner_model.provenance import sha256_file_memo as sha256_file

    real = next((shared_data / "tweet_images" / "twitter2015_images").glob("*.jpg"))
    case = {
        "image": f"../nowhere/twitter2015_images/{real.name}",
        "image_sha256": sha256_file(real),
        "tokens": ["Chicago", "tonight"],
    }
    key = (real.stem, 0, 1, "LOC")
    maps = {key: {**case, "grid": [1 / 16] * 16}}
    png = tmp_path / "f.png"
    assert "not found" in plot_fig4(real.stem, [key], maps, maps, png)
    assert (
        plot_fig4(real.stem, [key], maps, maps, png, shared_data / "tweet_images") is None and png.is_file()
    )
    other = {key: {**maps[key], "image_sha256": "0" * 64}}
    assert "changed since the run" in plot_fig4(
        real.stem, [key], other, other, png, shared_data / "tweet_images"
    )


def _chosen_label(name: str) -> str:
    """How the search table labels round 1's choice when round 2 has rows (it decides the recipe)."""
    from catmner_bench.search_plan import SEARCH_ROUNDS

    if len(SEARCH_ROUNDS) > 1:
        return f"{name} (chosen in round 1; round {SEARCH_ROUNDS[1].name} decides the recipe)"
    return f"**{name}** (chosen)"


def test_search_section_marks_the_best_validation_setting() -> None:
    """The chosen row is the setting with the highest mean validation F1, wherever it stands in the list."""
    from catmner_bench.profiles import PROFILES
    from catmner_bench.report import groups_of
    from catmner_bench.report.search import search_section
    from catmner_bench.search_plan import SEARCH_ROUNDS

    first = SEARCH_ROUNDS[0]
    recs = []
    for i, (name, config) in enumerate(first.configs("lm-span", PROFILES["quick"])):
        f1 = 80.0 if name == "batch 10 (the paper's)" else 70.0 + i / 10
        recs.append(make_record("lm-span", "twitter2017", 1, f1, config, experiment="search"))
    md = search_section(groups_of(recs))
    md = md[md.index("round 1\n") :]
    md = md[: md.index("\n### ")] if "\n### " in md else md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "Setting" not in line]
    assert len(rows) == len(first.settings)
    (chosen,) = [r for r in rows if "(chosen" in r]
    # round 2's default (round 1's "encoder lr 1e-4" run) is here too: round 2 decides the recipe, and round
    # 1's choice is marked as superseded, without a test score
    assert chosen.startswith(
        f"| {_chosen_label('batch 10 (the paper' + chr(39) + 's)')} | 1 | 80.00 | +10.00 |"
    )
    assert chosen.endswith("| - |") and not any("other" in r.split(" | ")[0] for r in rows)


def test_search_keeps_the_default_when_the_best_is_within_seed_noise() -> None:
    """A one-seed setting replaces the default only when it beats it by more than t SE of the difference (t at
    the df of the noise estimate: 3 Table 1 seeds of the default, 2 df, t 4.30); a smaller gain is marked best
    but the default stays."""
    from catmner_bench.profiles import PROFILES
    from catmner_bench.report import groups_of
    from catmner_bench.report.search import search_section
    from catmner_bench.search_plan import SEARCH_ROUNDS

    first = SEARCH_ROUNDS[0]
    base = first.base("lm-span", PROFILES["quick"])
    table1 = groups_of(
        [_record("lm-span", "twitter2017", s, f1, base) for s, f1 in ((1, 70.0), (2, 70.5), (3, 69.5))]
    )
    # sigma 0.5 -> SE of two single runs 0.71, 4.30 SE 3.04 (2 SE, 1.41, would take a gain of 2)
    for gain, kept in ((2.0, True), (3.5, False)):
        recs = []
        for name, config in first.configs("lm-span", PROFILES["quick"]):
            f1 = 70.0 + (gain if name == "no warm-up" else 0.0 if name == "profile default" else -1.0)
            recs.append(make_record("lm-span", "twitter2017", 1, f1, config, experiment="search"))
        md = search_section(groups_of(recs), table1)
        md = md[md.index("round 1\n") :]
        md = md[: md.index("\n### ")] if "\n### " in md else md
        rows = {
            r.split(" | ")[0].lstrip("| "): r
            for r in md.splitlines()
            if r.startswith("| ") and "Setting" not in r
        }
        if kept:
            assert "no warm-up (best, within noise)" in rows
            assert _chosen_label("profile default") in rows
            assert (
                "is +2.00 over the default, within 4.30 SE = 3.04 (Student's t, 2 df) (seed σ 0.50 on validation "
                "(Table 1, n=3), SE of the difference 0.71)" in md
            )
        else:
            assert _chosen_label("no warm-up") in rows
            assert "beats the default by +3.50 > 4.30 SE = 3.04" in md


def test_search_with_seeds_per_setting_judges_on_the_rounds_pooled_noise() -> None:
    """A round run with 3 seeds a setting takes its noise from its own settings' seeds (pooled SD, t at the pooled
    df), not from Table 1; where one setting's seeds spread far more (Bartlett p < 0.05), only the best and the
    default are pooled."""
    from catmner_bench.profiles import PROFILES
    from catmner_bench.report import groups_of
    from catmner_bench.report.search import search_choice, search_rows
    from catmner_bench.search_plan import SEARCH_ROUNDS
    from catmner_bench.stats import t_critical

    third = next(r for r in SEARCH_ROUNDS if r.name == "3")
    configs = third.configs("cat-textual", PROFILES["quick"])
    assert len(configs) == 7
    lead = configs[2][0]  # a setting other than the default and the first

    def choice(gain: float, spreads: dict[str, tuple[float, ...]] | None = None) -> tuple[str, str]:
        recs = []
        for name, config in configs:
            spread = (spreads or {}).get(name, (-0.5, 0.0, 0.5))
            for seed, off in zip((1, 2, 3), spread, strict=True):
                f1 = 80.0 + off + (gain if name == lead else 0.0)
                recs.append(make_record("cat-textual", "twitter2017", seed, f1, config, experiment="search"))
        ((rnd, named),) = search_rows(groups_of(recs), "cat-textual", "twitter2017")
        assert rnd == "3" and [n for n, _ in named] == [n for n, _ in configs]
        # a Table 1 of another noise is there, but the round's own seeds measure the noise
        table1 = groups_of(
            [_record("cat-textual", "twitter2017", s, 80.0 + 3 * s, configs[0][1]) for s in (1, 2, 3)]
        )
        _, chosen, why = search_choice(named, table1)
        return next(n for n, g in named if g is chosen), why

    # pooled SD 0.5 over 7 settings (14 df); SE of two 3-seed means 0.408; bar t(14) * SE
    bar = t_critical(14) * 0.5 * math.sqrt(2 / 3)
    assert 0.85 < bar < 0.9
    kept, why = choice(0.8)
    assert kept == "profile default" and "the round's 7 settings with seed spread pooled (14 df)" in why
    assert (
        f"within {t_critical(14):.2f} SE = {bar:.2f}" in why
        and f"more seeds of {lead} would narrow it" in why
    )
    chosen, why = choice(1.0)
    assert chosen == lead and f"beats the default by +1.00 > {t_critical(14):.2f} SE" in why
    # a setting with no spread stays out of the pool (6 settings, 12 df)
    chosen, why = choice(1.0, {configs[1][0]: (0.0, 0.0, 0.0)})
    assert chosen == lead and "the round's 6 settings with seed spread pooled (12 df)" in why
    # a wild setting (Bartlett rejects one variance): Welch's test of the best against the default (4 df here)
    wild = {configs[1][0]: (-5.0, 0.0, 5.0)}
    kept, why = choice(1.0, wild)  # t(4) 2.78: the bar is 1.13
    assert kept == "profile default" and "Welch's SE of the difference 0.41, as Bartlett's test" in why
    chosen, why = choice(1.2, wild)
    assert (
        chosen == lead and f"> {t_critical(4):.2f} SE = {t_critical(4) * 0.5 * math.sqrt(2 / 3):.2f}" in why
    )
    # the best is the wild one: Welch's SE carries its spread, and a gain of 1.2 no longer passes
    kept, why = choice(1.2, {lead: (-5.0, 0.0, 5.0)})
    assert kept == "profile default" and "Welch's SE of the difference" in why
    # no spread anywhere: nothing to test against, the default stays
    flat = {name: (0.0, 0.0, 0.0) for name, _ in configs}
    kept, why = choice(0.3, flat)
    assert kept == "profile default" and "no seed spread: untested" in why


def test_search_rounds_keep_their_configs_when_the_profile_adopts_a_choice() -> None:
    """A round pins the quick recipe it ran on: changing the profile's pinned fields (as adopting a round's
    choice does) leaves every round's run configs, hence run keys, as they were."""
    import dataclasses

    from catmner_bench.profiles import PROFILES
    from catmner_bench.search_plan import SEARCH_ROUNDS

    quick = PROFILES["quick"]
    other = {"encoder_lr": 9e-9, "model_overrides": {"dropout": 0.3}, "batch_size": 3}
    for rnd in SEARCH_ROUNDS:
        pinned = dict(dict(rnd.pins).get("quick", ()))
        assert pinned, f"round {rnd.name} pins nothing of the quick profile"
        moved = dataclasses.replace(quick, **{k: other[k] for k in pinned if k in other})
        for system in ("lm-span", "cat-textual"):
            assert rnd.configs(system, moved) == rnd.configs(system, quick)
        # rounds 1-2 ran before the caption placement was part of a config (issue 28): their configs lack it
        # (so their records stay theirs) and retrain as "restart"; round 3 is on the mended placement
        placed = {cfg.get("caption_positions") for _, cfg in rnd.configs("cat-textual", quick)}
        assert placed == ({None} if rnd.name in ("1", "2") else {"pair"})
    unpinned = dataclasses.replace(quick, batch_size=3)  # a field no round pins does move the configs
    assert SEARCH_ROUNDS[0].configs("lm-span", unpinned) != SEARCH_ROUNDS[0].configs("lm-span", quick)


def test_figure3_claims_pair_runs_by_sampling():
    """Figure 3 compares systems trained on the same tweets: the SE is that of the per-sampling differences, so
    a gain shared by every sampling is significant even when the samplings themselves spread widely."""
    from catmner_bench.claims import CLAIMS
    from catmner_bench.outcomes import CONSISTENT, CONTRADICTS, INCONCLUSIVE
    from catmner_bench.report.conclusions import verdicts_section
    from catmner_bench.stats import PairedComparison

    # samplings spread by 10 F1; CAT-MNER is 2 above TEXT on each (+-0.1)
    spread = [40.0, 50.0, 60.0]
    c = PairedComparison([x + 2.0 for x in spread], spread)
    assert c.significant is True and abs(c.delta - 2.0) < 1e-9
    assert "paired over 3 samplings" in c.describe() and c.short().endswith("(sig.)")
    from catmner_bench.stats import Comparison

    assert Comparison([x + 2.0 for x in spread], spread).significant is False  # unpaired: lost in the spread
    assert PairedComparison([1.0], [0.0]).short() == "+1.00 (1 sampling)"

    efficiency = next(c for c in CLAIMS if "very little training data" in c.text)
    rare = next(c for c in CLAIMS if "most on less frequent types" in c.text)

    def fig3(gains: dict[int, float], ds="twitter2015", rare_gain=0.0):
        out = []
        for al, gain in gains.items():
            base = [40.0 + al / 20 + x for x in (0.0, 5.0, -4.0)]
            jitter = (0.1, -0.1, 0.0)
            cat = [b + gain + j for b, j in zip(base, jitter, strict=True)]
            types = {"ORG": [v + rare_gain for v in cat], "LOC": [v + rare_gain for v in cat]}
            out += [
                _G("cat-textual", ds, cat, per_type=types, alpha=al),
                _G("lm-span", ds, base, alpha=al),
                _G("mm", ds, base, alpha=al),
            ]
        return out

    shrinking = fig3({50: 3.0, 100: 2.0, 200: 1.0, 400: 0.5})
    j = efficiency.check(shrinking)
    assert j.outcome == CONSISTENT and "Twitter-2017: not run" in j.evidence and "400: +0.50" in _text(j)
    assert efficiency.check(fig3({50: 1.0, 100: 2.0, 200: 2.5, 400: 3.0})).outcome == CONTRADICTS  # grows
    assert efficiency.check(fig3({50: -1.0, 400: -2.0})).outcome == CONTRADICTS  # a loss
    assert "not run" in efficiency.check([]).evidence
    one_alpha = efficiency.check(fig3({50: 3.0}))  # the trend needs two sizes at least
    assert one_alpha.outcome == INCONCLUSIVE and "one alpha" in _text(one_alpha)
    # ORG is Twitter-2015's named type: CAT-MNER gains more there than on PER/LOC (stand-ins: LOC too)
    assert rare.check(fig3({50: 1.0, 100: 1.0}, rare_gain=2.0)).outcome == CONSISTENT
    assert rare.check(fig3({50: 1.0, 100: 1.0}, rare_gain=-2.0)).outcome == CONTRADICTS
    # the refinement claim shows the gain over MM pooled over the (alpha, sampling) pairs: +1 each, jitter ±0.1
    refine = next(c for c in CLAIMS if "without refinement (MM)" in c.text)
    j = refine.check(fig3({50: 1.0, 100: 1.0}))
    assert "Figure 3 (alpha 50, 100): +1.00 [" in _text(j) and "paired over 6 samplings" in _text(j)
    assert verdicts_section(shrinking).count("\n| 4.") == len(CLAIMS)


def test_figure3_small_alphas_get_enough_optimizer_steps(tmp_path):
    """Quick-profile Figure 3 runs train at least fig3_min_steps steps: 50 tweets at batch 16 are 4 steps an
    epoch, so they get 38 epochs; 400 tweets (25 steps an epoch) keep the profile's 10."""
    from catmner_bench import experiments
    from catmner_bench.profiles import PROFILES, resolve_profile
    from catmner_bench.runner import RunContext

    quick = PROFILES["quick"]
    assert quick.fig3_min_steps == 150 and quick.batch_size == 16 and quick.fig3_epochs == 10
    assert [quick.fig3_epochs_for(a) for a in (50, 100, 200, 400)] == [38, 22, 12, 10]
    for a in (50, 100, 200, 400):
        e = quick.fig3_epochs_for(a)
        assert e * -(-a // 16) >= 150 and (e == 10 or (e - 1) * -(-a // 16) < 150)
    paper = PROFILES["paper"]
    assert {paper.fig3_epochs_for(a) for a in paper.fig3_alphas} == {30}  # the paper's setting, unchanged
    ctx = RunContext(output=tmp_path, profile=resolve_profile("quick"))
    specs = experiments.EXPERIMENT_SPECS["fig3"].runs(ctx, ("lm-span",), ("twitter2017",))
    assert {(s.sample["alpha"], s.config["epochs"]) for s in specs} == {
        (50, 38),
        (100, 22),
        (200, 12),
        (400, 10),
    }
    # about 10 validations a run: every 4th of 38 epochs at alpha=50 (and the last); alpha=400 keeps each epoch
    every = {s.sample["alpha"]: s.config.get("valid_every") for s in specs}
    assert every == {50: 4, 100: 3, 200: 2, 400: None}
    from catmner_bench.runner import train_config

    tc = train_config(ctx, next(s for s in specs if s.sample["alpha"] == 50), tmp_path / "run")
    assert tc.valid_every == 4 and tc.epochs == 38


def test_table3_compares_an_older_recipes_ablation_with_the_cat_mner_of_that_recipe():
    """An ablation trained before a recipe change (here: encoder lr 5e-5) is compared with the CAT-MNER of its
    own recipe, named in the cell, not with the CAT-MNER row of today's recipe."""
    import dataclasses

    from catmner_bench.profiles import PROFILES
    from catmner_bench.report.sections import table3_section
    from catmner_bench.report.tables import Group
    from catmner_bench.systems import system_config

    now = PROFILES["quick"]
    before = dataclasses.replace(now, encoder_lr=5e-5)

    def group(system, profile, f1s):
        cfg = system_config(system, profile)
        recs = []
        for seed, f1 in enumerate(f1s, 1):
            recs.append(make_record(system, "twitter2017", seed, f1, cfg))
        return Group(recs)

    groups = [
        group("cat-textual", now, [84.0, 84.2, 84.1]),  # today's recipe: the CAT-MNER row
        group("cat-textual", before, [82.0, 82.2, 82.1]),
        group("i2t", before, [81.6]),  # w/o T2I, older recipe: 0.5 below its own CAT-MNER
        group("mm", now, [83.9, 84.0, 84.1]),
    ]
    md = table3_section(groups)
    row = next(line for line in md.splitlines() if line.startswith("| w/o T2I Refine"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[7] == "81.60"  # Twitter-2017 ours
    assert cells[8] == "-0.50 (1 seed) vs CAT-MNER 82.10 ± 0.10 (encoder_lr 5e-05 vs 0.0001)"
    mm = next(line for line in md.splitlines() if line.startswith("| w/o Refine"))
    assert [c.strip() for c in mm.strip("|").split("|")][
        8
    ] == "-0.10 ± 0.08 (ns)"  # trained alike: the row shown
    cat = next(line for line in md.splitlines() if line.startswith("| CAT-MNER |"))
    assert [c.strip() for c in cat.strip("|").split("|")][7] == "84.10 ± 0.10"


def test_student_t_decides_significance_not_a_fixed_2_se():
    """With 3 seeds a side, 2 SE is not 95%: Welch's test uses t at the Welch-Satterthwaite df (4 for equal
    spreads: t = 2.78), a paired test n - 1 (3 samplings: 4.30)."""
    from catmner_bench.stats import Comparison, PairedComparison, t_critical

    assert [round(t_critical(d), 3) for d in (1, 2, 4, 10, 30, math.inf)] == [
        12.706,
        4.303,
        2.776,
        2.228,
        2.042,
        1.96,
    ]
    assert abs(t_critical(11) - 2.201) < 0.002  # between table points: linear in 1/df
    c = Comparison([1.0, 2.0, 3.0], [0.0, 1.0, 2.0])  # Δ 1.0, SE 0.816, df 4
    assert abs(c.df - 4) < 1e-9 and c.significant is False
    wide = Comparison([1.0, 2.0, 3.0], [-1.5, -0.5, 0.5])  # Δ 2.5 = 3.06 SE > 2.78
    assert wide.significant is True
    p = PairedComparison([10.0, 20.0, 30.0], [9.0, 18.6, 29.4])  # d = 1.0, 1.4, 0.6: Δ 1.0, SE 0.23, t 4.33
    assert p.df == 2 and p.significant is True
    assert PairedComparison([10.0, 20.0, 30.0], [9.0, 18.5, 29.5]).significant is False  # t = 3.46 < 4.30


def test_figure3_pairs_real_records_by_sampling_and_seed():
    """Pairing reads each record's sampling index and seed, not the order of the records: shuffled records pair
    correctly, a sampling one system lacks is left out (and said), a duplicate is an error."""
    import pytest
    from catmner_bench.report.tables import Group
    from catmner_bench.verdicts import paired

    def rec(system, index, seed, f1):
        sample = {"alpha": 50, "index": index}
        return make_record(system, "twitter2017", seed, f1, {"kind": "span", "epochs": 38}, sample=sample)

    text = Group([rec("lm-span", 0, 1, 40.0), rec("lm-span", 1, 2, 50.0), rec("lm-span", 2, 3, 60.0)])
    cat = Group(
        [rec("cat-textual", 2, 3, 61.0), rec("cat-textual", 0, 1, 41.5)]
    )  # shuffled; sampling 1 missing
    c = paired(cat, text)
    assert c.a == [41.5, 61.0] and c.b == [40.0, 60.0] and abs(c.delta - 1.25) < 1e-9
    assert "2 of 2/3 runs pair" in c.note and "2 of 2/3 runs pair" in c.short()
    other_seed = Group([rec("cat-textual", 0, 7, 99.0)])  # sampling 0 but another seed: no pair
    assert paired(other_seed, text) is None
    dup = Group([rec("cat-textual", 0, 1, 41.0), rec("cat-textual", 0, 1, 42.0)])
    with pytest.raises(ValueError, match="share sampling 0 and seed 1"):
        paired(dup, text)


def test_fig4_caption_table_shows_weight_parked_on_the_first_piece(tmp_path) -> None:
    """A model whose caption attention sits on the first piece whatever the word (an attention sink) must not
    read as focused: the table gives the first piece's weight, how often it is the top, and the entropy over
    the other pieces."""
    import math

    from catmner_bench.report.figures import fig4_caption_section

    def rec(system: str, weights: list[list[float]]) -> dict:
        cases = [
            {
                "dataset": "twitter2017",
                "split": "test",
                "imgid": f"t{i}",
                "tokens": ["Obama", "in", "Paris"],
                "entity": {"start": 0, "end": 1, "type": "PER"},
                "caption": "a man at a podium",
                "pieces": ["a", "man", "at", "a", "podium"],
                "weights": w,
            }
            for i, w in enumerate(weights)
        ]
        config = {"text_encoder": "minilm", "encoder_lr": 1e-4, "visual": "caption"}
        extra = {"caption_attention": {"layer": "last", "cases": cases}}
        return make_record(system, "twitter2017", config=config, experiment="fig4", extra=extra)

    sink = [[0.9, 0.025, 0.025, 0.025, 0.025], [0.8, 0.05, 0.05, 0.05, 0.05]]  # uniform over the rest
    content = [[0.1, 0.6, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.1, 0.6]]
    md, _ = fig4_caption_section([rec("mm", content), rec("cat-textual", sink)], tmp_path, "figures")
    assert "(enc lr 0.0001)" in md
    rows = {
        line.split(" | ")[0].strip("| "): line.split(" | ") for line in md.splitlines() if "refined (" in line
    }
    mm, cat = rows["unrefined (MM)"], rows["refined (CAT-MNER)"]
    assert float(cat[2]) < float(mm[2])  # the sink has the lower entropy ...
    assert cat[6] == "2 of 2" and mm[6] == "0 of 2"
    assert math.isclose(float(cat[7].strip(" |")), math.log(4), abs_tol=0.01)  # ... but none over the rest
    assert float(mm[7].strip(" |")) < math.log(4) - 0.1
    assert "Top piece agrees on 0 of 2 spans." in md


def test_fig3_table_says_where_systems_have_different_samplings(tmp_path) -> None:
    """While a Figure 3 run is unfinished, its system's mean covers fewer samplings than the others': the table
    says so (the F1 columns then compare different training tweets), and says nothing once all are there."""
    from catmner_bench.report import groups_of
    from catmner_bench.report.figures import fig3_section

    def rec(system: str, index: int, f1: float) -> BenchRecord:
        sample = {"alpha": 50, "index": index}
        return make_record(system, "twitter2015", 1 + index, f1, {"epochs": 38}, sample=sample)

    full = [rec(s, i, 30.0 + i) for s in ("lm-span", "mm", "cat-textual") for i in range(3)]
    md, _ = fig3_section(groups_of(full), tmp_path, "figures")
    assert "Not every system has the same samplings" not in md
    md, _ = fig3_section(groups_of(full[:-1]), tmp_path, "figures")
    assert "Not every system has the same samplings at alpha 50 (" in md and "CAT-MNER (textual KB) 2)" in md


def test_patience_is_absent_from_run_keys_unless_a_profile_sets_it(tmp_path) -> None:
    """Without early stopping no planned config carries a "patience" field, so every run key stays what it was
    before the option; a profile (or `catmner-bench run --patience`) that sets it puts it into every span
    config, Figure 3's included (a new run key), and the trainer gets it; CRF baselines have no validation."""
    from catmner_bench.experiments import EXPERIMENTS, plan
    from catmner_bench.profiles import PROFILES, resolve_profile
    from catmner_bench.runner import BenchError, RunContext, train_config

    names = [e for e in EXPERIMENTS if e != "speed"]  # speed plans no trained runs
    for p in PROFILES.values():
        assert p.patience is None
        for e in names:
            specs = plan(e, RunContext(output=tmp_path, profile=p))
            # the recipe search's round 3 tries early stopping as one of its settings (10 epochs, patience 2)
            stopping = [s.config for s in specs if "patience" in s.config]
            assert all(e == "search" and (c["epochs"], c["patience"]) == (10, 2) for c in stopping)
    quick = RunContext(output=tmp_path, profile=PROFILES["quick"])
    stop = RunContext(output=tmp_path, profile=resolve_profile("quick", patience=3))
    for e in ("table1", "fig3"):
        before, after = plan(e, quick), plan(e, stop)
        assert [s.run_id.rsplit("__", 1)[0] for s in before] == [s.run_id.rsplit("__", 1)[0] for s in after]
        for b, a in zip(before, after, strict=True):
            span = a.config["kind"] == "span"
            assert a.config.get("patience") == (3 if span else None), a.run_id
            assert (a.key != b.key) == span
            assert {k: v for k, v in a.config.items() if k != "patience"} == b.config
            if span:
                assert train_config(stop, a, tmp_path / "r").patience == 3
                assert train_config(quick, b, tmp_path / "r").patience is None
    with pytest.raises(BenchError, match="--patience must be at least 1"):
        resolve_profile("quick", patience=0)


def test_bench_run_patience_reaches_the_trainer_and_the_record(tmp_path, shared_data) -> None:
    """`catmner-bench run --patience 1` on the smoke profile: the run config, its command line and profile say
    so, and the record tells where early stopping ended the run (with patience 1: the first epoch whose
    validation F1 did not beat the best before it)."""
    from catmner_bench.cli import app
    from typer.testing import CliRunner

    torch.set_num_threads(1)
    out = tmp_path / "out"
    args = ["run", "table1", "--profile", "smoke", "--systems", "lm-span", "--datasets", "twitter2017"]
    args += ["--epochs", "4", "--patience", "1", "--data-dir", str(shared_data), "-o", str(out), "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (path,) = (out / "records" / "table1").glob("*.json")
    rec = read_record(path)
    assert rec.spec.config["patience"] == 1 and rec.extra["profile"]["patience"] == 1
    assert "--patience 1" in rec.extra["command"]
    f1 = rec.extra["valid_f1_by_epoch"]
    stop = next((i + 1 for i in range(1, len(f1)) if f1[i] <= max(f1[:i])), None)
    assert rec.extra.get("stopped_epoch") == (stop if stop and stop < 4 else None), f1
    assert len(f1) == (stop or 4)
    if stop and stop < 4:
        assert rec.extra["stop_reason"] == "stopped early: no validation gain in 1 validation"


def test_epochs_section_marks_runs_that_stopped_early() -> None:
    """A run that early stopping ended shows 'best (stopped N)' and leaves the count of rows whose budget ended
    training; each epoch's mean is over the runs that reached it (count beside it when fewer), not cut at the
    shortest run; a row without early stopping reads as before."""
    from catmner_bench.report.sections import epochs_section
    from catmner_bench.report.tables import Group

    def rec(system, seed, curve, best, stopped=None):
        config = {"kind": "span", "profile": "quick", "text_encoder": "minilm", "epochs": 6}
        extra = {"valid_f1_by_epoch": curve, "best_epoch": best}
        if stopped:
            extra.update(
                stopped_epoch=stopped, stop_reason="stopped early: no validation gain in 2 validations"
            )
        return make_record(system, "twitter2017", seed, config=config, extra=extra)

    stopping = Group(
        [
            rec("mm", 1, [50, 60, 59, 58], 2, 4),
            rec("mm", 2, [50, 61, 62, 60, 59], 3, 5),
            # a run that trained all its epochs, its best epoch tied with a stopped run's
            rec("mm", 3, [50, 51, 55, 53, 54, 52], 3),
        ]
    )
    budget = Group([rec("lm-span", 1, [50, 55, 57, 58, 59, 60], 6)])
    md = epochs_section([stopping, budget])
    assert "| 2 (stopped 4), 3, 3 (stopped 5) |" in md and "| 6 |" in md
    assert "| 50.00 | 57.33 | 58.67 | 57.00 | 56.50 (2) | 52.00 (1) |" in md
    assert "In 1 of 1 rows validation F1 is highest at the last epoch" in md
    assert "In 1 row(s) early stopping ended runs" in md
    assert "early stopping" not in epochs_section([budget])
