"""The three-outcome rule (catmner_bench.outcomes) on constructed estimates."""

import math

import pytest
from catmner_bench.outcomes import (
    CONSISTENT,
    CONTRADICTS,
    INCONCLUSIVE,
    Estimate,
    judge_close,
    judge_effect,
    overall,
    t_critical,
    t_power80,
)


def test_quantiles_match_tables():
    assert t_critical(4) == pytest.approx(2.776)
    assert t_critical(math.inf) == pytest.approx(1.960)
    assert t_power80(math.inf) == pytest.approx(0.842)
    assert t_power80(4) == pytest.approx(0.941)
    assert 2.776 > t_critical(4.5) > 2.571  # interpolated between table points


def test_interval_that_includes_the_paper_and_excludes_zero_is_consistent():
    e = Estimate(delta=0.8, se=0.1, df=4)  # [0.52, 1.08]
    assert judge_effect(e, 0.65).outcome == CONSISTENT


def test_interval_that_excludes_the_paper_contradicts():
    e = Estimate(delta=-0.5, se=0.1, df=4)  # [-0.78, -0.22]
    o = judge_effect(e, 0.65)
    assert o.outcome == CONTRADICTS and "opposite" in o.why
    small = judge_effect(Estimate(delta=0.2, se=0.05, df=4), 0.65)  # [0.06, 0.34]: right sign, too small
    assert small.outcome == CONTRADICTS and "smaller" in small.why


def test_interval_too_wide_is_inconclusive_with_detectable_effect():
    e = Estimate(delta=0.3, se=0.5, df=4)  # [-1.09, +1.69]: holds both 0 and +0.65
    o = judge_effect(e, 0.65)
    assert o.outcome == INCONCLUSIVE
    assert e.detectable == pytest.approx((2.776 + 0.941) * 0.5)
    assert "detectable" in o.cell() and "vs paper +0.65" in o.cell()


def test_an_effect_larger_than_the_papers_is_consistent():
    assert judge_effect(Estimate(2.0, 0.1, 10), 0.65).outcome == CONSISTENT


def test_negative_paper_effect_is_judged_in_its_direction():
    assert judge_effect(Estimate(-1.0, 0.1, 10), -0.9).outcome == CONSISTENT
    assert judge_effect(Estimate(1.0, 0.1, 10), -0.9).outcome == CONTRADICTS


def test_direction_only_claims():
    assert judge_effect(Estimate(1.0, 0.1, 10), None).outcome == CONSISTENT
    assert judge_effect(Estimate(-1.0, 0.1, 10), None).outcome == CONTRADICTS
    assert judge_effect(Estimate(0.1, 0.5, 10), None).outcome == INCONCLUSIVE


def test_one_run_a_side_is_never_judged():
    o = judge_effect(Estimate(5.0, None), 0.65)
    assert o.outcome == INCONCLUSIVE and "no interval" in o.cell()


def test_closeness_claims():
    assert judge_close(Estimate(0.1, 0.1, 10), 0.05, 1.0).outcome == CONSISTENT
    assert judge_close(Estimate(3.0, 0.2, 10), 0.05, 1.0).outcome == CONTRADICTS
    assert judge_close(Estimate(0.5, 0.5, 10), 0.05, 1.0).outcome == INCONCLUSIVE


def test_overall():
    c = judge_effect(Estimate(0.8, 0.1, 4), 0.65)
    x = judge_effect(Estimate(-0.5, 0.1, 4), 0.65)
    i = judge_effect(Estimate(0.3, 0.5, 4), 0.65)
    assert overall([c, c]) == CONSISTENT
    assert overall([c, i]) == INCONCLUSIVE
    assert overall([c, x]) == CONTRADICTS
    assert overall([]) == INCONCLUSIVE
