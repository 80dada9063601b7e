"""The decisive experiment (docs/decisive-experiment.md): its plan, the random-words and empty-caption arms, the
paired t and the verdict, and a smoke run of two arms through the real trainer into a report section.

The smoke run trains tiny random-init models on real Twitter-2017 tweets and their shared captions.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from catmner_bench.decisive import decisive_section, paired_t, paired_tests, verdict
from catmner_bench.experiments import plan
from catmner_bench.profiles import PROFILES, bundled_label_words, resolve_profile
from catmner_bench.random_words import random_label_words
from catmner_bench.records import BenchRecord
from catmner_bench.runner import RunContext
from kb_expand import load_label_words
from recordkit import make_record


def test_the_plan_pairs_five_arms_by_sampling_and_seed(tmp_path):
    ctx = RunContext(output=tmp_path, profile=resolve_profile("quick"))
    specs = plan("decisive", ctx)
    assert len(specs) == 5 * 2 * 8  # arms x alphas {100, 200} x 8 samplings
    assert {s.train_dataset for s in specs} == {"twitter2017"} == {s.test_dataset for s in specs}
    assert {s.sample["alpha"] for s in specs} == {100, 200}
    assert len({s.key for s in specs}) == len(specs)
    by_pair: dict = {}
    for s in specs:
        by_pair.setdefault((s.sample["alpha"], s.sample["index"]), set()).add((s.system, s.seed))
    for (_, index), arms in by_pair.items():
        assert {seed for _, seed in arms} == {1 + index} and len(arms) == 5  # the same seed for every arm
    cfg = {s.system: s.config for s in specs if s.sample == {"alpha": 100, "index": 0}}
    assert cfg["mm"]["epochs"] == 22 and cfg["mm"]["valid_every"] == 3  # the quick Figure-3 recipe at 100
    assert cfg["mm"]["visual"] == cfg["cat-random"]["visual"] == cfg["mm-empty"]["visual"] == "caption"
    assert cfg["mm"]["caption_positions"] == "pair" and cfg["lm-span"]["visual"] == "none"
    assert cfg["cat-random"]["random_words"] == "zipf" and cfg["cat-random"]["labels"] == "textual"
    assert cfg["mm-empty"]["captions"] == "none" and "captions" not in cfg["mm"]
    # only the two new arms carry the new fields; the other systems' run identities are as before
    for system in ("lm-span", "mm", "cat-textual"):
        assert not {"random_words", "captions"} & set(cfg[system])
    assert cfg["cat-random"] == {**cfg["cat-textual"], "random_words": "zipf"}
    assert cfg["mm-empty"] == {**cfg["mm"], "captions": "none"}
    assert plan("decisive", ctx, datasets=["twitter2015"])[0].train_dataset == "twitter2015"


def test_random_words_match_the_real_words_in_structure_and_frequency():
    from wordfreq import zipf_frequency

    real = load_label_words(bundled_label_words("textual"))
    fake = random_label_words(real, seed=1)
    assert list(fake.labels) == list(real.labels) and fake.entity_types == real.entity_types
    assert [len(v) for v in fake.labels.values()] == [len(v) for v in real.labels.values()]
    words = fake.words()
    assert len(words) == len(real.words()) and not set(words) & {w.lower() for w in real.words()}
    gaps = [
        abs(zipf_frequency(f, "en") - zipf_frequency(r, "en"))
        for f, r in zip(words, real.words(), strict=True)
    ]
    assert max(gaps) <= 0.4 and sum(gaps) / len(gaps) <= 0.1
    assert random_label_words(real, seed=1).labels == fake.labels  # reproducible
    assert random_label_words(real, seed=2).labels != fake.labels  # a new draw per seed


def test_paired_t_matches_students_t():
    # two-sided p of Student's t (scipy.stats.t.sf * 2) at t = 2.0 / -3.2 with 15 degrees, 0.5 with 7
    diffs = [0.5, 1.5, -0.5, 2.5, 0.0, 1.0, 1.0, -1.0]
    t = paired_t(diffs)
    assert (
        t["n"] == 8 and t["mean"] == pytest.approx(0.625) and t["t"] == pytest.approx(1.569964564, rel=1e-6)
    )
    assert t["p"] == pytest.approx(0.160414547, rel=1e-6)  # scipy.stats.ttest_1samp
    from catmner_bench.decisive import _t_two_sided

    assert _t_two_sided(2.0, 15) == pytest.approx(0.063945007, rel=1e-6)
    assert _t_two_sided(-3.2, 15) == pytest.approx(0.005963848, rel=1e-6)
    assert _t_two_sided(0.5, 7) == pytest.approx(0.632407136, rel=1e-6)
    assert _t_two_sided(10.0, 3) == pytest.approx(0.002128399, rel=1e-6)
    assert paired_t([1.0])["p"] is None


def fake_records(f1: dict[str, list[float]]) -> list[BenchRecord]:
    out = []
    for system, scores in f1.items():
        for i, s in enumerate(scores):
            alpha, index = (100, i) if i < 8 else (200, i - 8)
            vitals = {"mean": {"qk_i2t": 8.0, "gs_i2t": 0.1, "caption_first_share": 0.4}}
            sample = {"alpha": alpha, "index": index}
            out.append(
                make_record(
                    system,
                    "twitter2017",
                    1 + index,
                    experiment="decisive",
                    sample=sample,
                    metrics={"test": {"conlleval": {"f1": s}}},
                    extra={"vitals": vitals},
                )
            )
    return out


def test_verdicts_read_the_paired_contrasts():
    base = [60.0 + 0.37 * i % 3 for i in range(16)]
    jitter = [0.1 * ((i * 7) % 5 - 2) for i in range(16)]
    real_helps = fake_records(
        {
            "lm-span": base,
            "mm": [b - 3 + j for b, j in zip(base, jitter, strict=True)],
            "mm-empty": [b - 0.5 + j for b, j in zip(base, jitter[::-1], strict=True)],
            "cat-random": [b - 3 + j for b, j in zip(base, jitter[::-1], strict=True)],
            "cat-textual": [b - 1 + j for b, j in zip(base, jitter, strict=True)],
        }
    )
    tests = paired_tests(real_helps)
    assert tests["cat-textual - cat-random"]["n"] == 16 and tests["cat-textual - cat-random"]["p"] < 0.001
    text = verdict(tests)
    assert text.startswith("real words beat random words") and "MM below empty-caption MM" in text
    assert "MM − TEXT -3.0" in text and text.endswith("F1, at or below −1.0")
    muted = fake_records(
        {
            "mm": [b - 3 + j for b, j in zip(base, jitter, strict=True)],
            "cat-random": [b - 1 + j for b, j in zip(base, jitter[::-1], strict=True)],
            "cat-textual": [b - 1 + j for b, j in zip(base, jitter, strict=True)],
        }
    )
    assert verdict(paired_tests(muted)).startswith("real = random words (no difference detected) > MM")
    one_pair = [r for r in real_helps if r.spec.sample["index"] == 0 and r.spec.sample["alpha"] == 100]
    assert verdict(paired_tests(one_pair)).startswith("not tested yet: 1 pair(s)")  # no reading from one pair
    three = [r for r in real_helps if r.spec.sample["index"] < 3 and r.spec.sample["alpha"] == 100]
    assert verdict(paired_tests(three)).startswith("interim, 3 of the design's 16 pairs")
    section = decisive_section(real_helps)
    assert "| CAT-MNER, random words (frequency-matched) |" in section and "α = 200" in section
    assert "| cat-textual - cat-random | +2.00 | 16 |" in section and "caption_first_share" in section


@pytest.fixture(scope="module")
def smoke(tmp_path_factory, shared_data) -> Path:
    """The random-words and empty-caption arms at alpha 4, one sampling, trained through the real trainer."""
    import torch
    from catmner_bench.sweep import run_experiment

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("decisive") / "out"
    profile = dataclasses.replace(PROFILES["smoke"], decisive_alphas=(4,), decisive_samplings=1)
    ctx = RunContext(output=out, profile=profile, data_dir=shared_data, quiet=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CATMNER_HOME", str(out.parent / "home"))
        result = run_experiment("decisive", ctx, systems=["cat-random", "mm-empty"])
    assert result["ran"] == 2 and not result["failed"], result["failed"]
    return out


def test_smoke_arms_train_on_random_words_and_no_caption(smoke):
    records = {
        r["spec"]["system"]: r
        for r in (json.loads(p.read_text()) for p in (smoke / "records" / "decisive").glob("*.json"))
    }
    rand, empty = records["cat-random"], records["mm-empty"]
    words = next((smoke / "runs" / "decisive").glob("cat-random*.random_words.json"))
    drawn = json.loads(words.read_text())
    assert drawn["seed"] == 1 and drawn["matched_to"]["source"] == "smoke-fixture"
    assert rand["label_words"]["source"] == "random-zipf-seed1"
    assert rand["label_words"]["checksum"] == drawn["checksum"]
    assert rand["extra"]["vitals"]["mean"]["caption_first_share"] is not None
    assert empty["extra"]["image_stats"]["caption_file"] == "none"
    assert empty["extra"]["image_stats"]["tweets_with_caption"] == 0
    assert empty["extra"]["model_config"]["caption_positions"] == "pair"
    assert os.path.isdir(rand["extra"]["trainer_run_dir"])


def test_configs_from_before_the_placement_retrain_as_restart(tmp_path):
    """A caption config without caption_positions (a record or search round from before issue 28) trains the
    restart placement it names; a current one trains pair; a text config gets no placement."""
    from catmner_bench.records import RunSpec
    from catmner_bench.runner import train_config
    from catmner_bench.systems import system_config

    ctx = RunContext(output=tmp_path, profile=PROFILES["quick"])
    now = system_config("mm", PROFILES["quick"])
    before = {k: v for k, v in now.items() if k != "caption_positions"}
    for cfg, want in ((now, "pair"), (before, "restart")):
        tc = train_config(ctx, RunSpec("table1", "mm", "twitter2017", "twitter2017", 1, cfg), tmp_path / "r")
        assert tc.model_overrides["caption_positions"] == want
    text = system_config("lm-span", PROFILES["quick"])
    tc = train_config(
        ctx, RunSpec("table1", "lm-span", "twitter2017", "twitter2017", 1, text), tmp_path / "t"
    )
    assert "caption_positions" not in tc.model_overrides


def test_records_older_only_by_the_placement_keep_their_rank():
    """Until reruns on the pair placement exist, the report chooses among the older caption records as before
    (currency 1), and a current record (2) wins over them."""
    from catmner_bench.recipes import is_current, status
    from catmner_bench.report import groups_of
    from catmner_bench.systems import system_config

    now = system_config("cat-textual", PROFILES["quick"])
    before = {k: v for k, v in now.items() if k != "caption_positions"}
    older_saliency = {**before, "saliency_scale": "paper"}
    assert is_current("cat-textual", now) and status("cat-textual", now) == "current"
    assert not is_current("cat-textual", before) and status("cat-textual", before) == "placement"
    assert status("cat-textual", older_saliency) == "older"
    groups = groups_of([make_record("cat-textual", config=c) for c in (older_saliency, before, now)])
    assert [g.currency for g in groups] == [2, 1, 0]  # the stored facts, most current first


def test_refinement_option_rows_reach_the_trainer(tmp_path):
    from catmner_bench.records import RunSpec
    from catmner_bench.runner import train_config
    from catmner_bench.systems import system_config

    ctx = RunContext(output=tmp_path, profile=PROFILES["quick"])
    got = {}
    for system in ("cat-block", "cat-sal-qk", "cat-sal-lr", "cat-sal-fromqk", "cat-textual"):
        cfg = system_config(system, PROFILES["quick"])
        got[system] = train_config(
            ctx, RunSpec("table1", system, "twitter2017", "twitter2017", 1, cfg), tmp_path
        )
    assert got["cat-block"].model_overrides["softmax"] == "block"
    assert got["cat-sal-qk"].model_overrides["saliency_scale_init"] == 8.0
    assert got["cat-sal-lr"].saliency_lr == 1e-2 and got["cat-textual"].saliency_lr is None
    assert got["cat-sal-fromqk"].saliency_from_qk and not got["cat-textual"].saliency_from_qk


def test_mm_minus_text_is_read_at_each_training_size():
    """H4 asks MM − TEXT to stay above −1.0 at 100 and at 200 tweets: a loss at one size is not averaged away."""
    base = [60.0 + 0.37 * i % 3 for i in range(16)]
    jitter = [0.1 * ((i * 7) % 5 - 2) for i in range(16)]
    # MM is 0.5 below TEXT at 100 tweets and about 2 below at 200: over all 16 pairs -1.26, at 100 above -1.0
    mm = [b - (0.5 if i < 8 else 2.0) + j for i, (b, j) in enumerate(zip(base, jitter, strict=True))]
    records = fake_records({"lm-span": base, "mm": mm, "cat-textual": base, "cat-random": base})
    section = decisive_section(records)
    assert "α = 100: Δ (pairs, p) | α = 200: Δ (pairs, p)" in section
    row = next(line for line in section.splitlines() if line.startswith("| mm - lm-span |"))
    assert "| -0.50 (8, p " in row and "| -2.03 (8, p " in row
    assert "MM − TEXT -0.50 at 100 tweets, -2.03 at 200 tweets: at or below −1.0 at 200 tweets" in section
    gaps = {100: -0.5, 200: -0.2}
    assert verdict(paired_tests(records), gaps=gaps).endswith(
        "MM − TEXT -0.50 at 100 tweets, -0.20 at 200 tweets: above −1.0 at each"
    )


def test_a_refinement_that_costs_f1_is_said():
    base = [60.0 + 0.37 * i % 3 for i in range(16)]
    jitter = [0.1 * ((i * 7) % 5 - 2) for i in range(16)]
    costly = fake_records(
        {
            "lm-span": base,
            "mm": base,
            "cat-random": [b - 1 + j for b, j in zip(base, jitter, strict=True)],
            "cat-textual": [b - 1 + j for b, j in zip(base, jitter[::-1], strict=True)],
        }
    )
    assert verdict(paired_tests(costly)).startswith(
        "no difference detected between real and random words, and CAT-MNER with random words is below MM"
    )
