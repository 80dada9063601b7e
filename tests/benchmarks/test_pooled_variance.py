"""The seed SD pooled over the span models of a table (issue 29): Bartlett's test, the chi-square tail it reads,
and when the paper's claims use the pool instead of Welch's test."""

from __future__ import annotations

import math
import statistics

import pytest
from catmner_bench.stats import Comparison, PooledComparison, bartlett, chi2_sf, pool
from catmner_bench.verdicts import compare, seed_pool

SPAN = {"kind": "span", "profile": "quick", "epochs": 3, "n_train": None, "n_eval": None}


class _Group:
    """A stand-in for a report Group of span-model runs (test F1 per seed) with a config."""

    def __init__(self, system, f1, ds="twitter2015", config=None):
        self.system, self.train_dataset, self.test_dataset, self.alpha = system, ds, ds, None
        self.f1, self.n = f1, len(f1)
        self.config = {**SPAN, **(config or {})}
        self.currency, self.saliency, self.records = 2, None, None

    def values(self, key="f1", mode="conlleval", split="test"):
        return self.f1


@pytest.mark.parametrize(
    ("x", "df", "expected"),  # scipy.stats.chi2.sf(x, df)
    [
        (0.5, 1, 0.47950012218695337),
        (3.84, 1, 0.05004352124870519),
        (20.0, 3, 0.00016974243555282632),
        (8.5183, 9, 0.4828715541980976),
        (100.0, 50, 3.454931382984871e-05),
        (0.001, 4, 0.9999998750416589),
    ],
)
def test_chi_square_tail_matches_scipy(x, df, expected):
    assert chi2_sf(x, df) == pytest.approx(expected, rel=1e-9)


def test_bartlett_matches_scipy():
    a, b, c = [70.1, 70.5, 70.3], [71.0, 71.6, 71.2], [69.0, 69.9, 69.5, 69.7]
    stat, p = bartlett([a, b, c])  # scipy.stats.bartlett(a, b, c)
    assert stat == pytest.approx(0.7602866742615616, rel=1e-9) and p == pytest.approx(0.6837633935049205)
    stat, p = bartlett([a, b, [70.0, 75.0, 72.0]])
    assert stat == pytest.approx(9.897991470081898, rel=1e-9) and p == pytest.approx(0.007090526121605571)


def test_pool_weights_each_variance_by_its_degrees_of_freedom():
    a, c = [70.1, 70.5, 70.3], [69.0, 69.9, 69.5, 69.7]
    p = pool([a, c])
    assert p.df == 5 and p.k == 2
    assert p.sd == pytest.approx(math.sqrt((2 * statistics.variance(a) + 3 * statistics.variance(c)) / 5))
    assert pool([a]) is None and pool([a, [70.0]]) is None and pool([a, [70.0, 70.0]]) is None


def _table(cat, mm, others=((80.0, 80.4, 80.2), (79.0, 79.4, 79.2), (78.0, 78.4, 78.2))):
    groups = [_Group("cat-textual", list(cat)), _Group("mm", list(mm))]
    return groups + [_Group(f"other{i}", list(v)) for i, v in enumerate(others)]


def test_claims_pool_the_seed_sd_over_the_tables_span_models():
    groups = _table([80.0, 80.4, 80.2], [79.0, 79.4, 79.2])
    c = compare(groups, "cat-textual", "mm", "twitter2015")
    assert isinstance(c, PooledComparison)
    assert c.pooled.k == 5 and c.df == 10  # five groups of three seeds
    assert c.se == pytest.approx(0.2 * math.sqrt(2 / 3))  # every group's SD is 0.2
    assert "seed SD pooled over 5 groups (df 10" in c.count()
    welch = Comparison(c.a, c.b)
    assert c.se == pytest.approx(welch.se) and c.df > welch.df  # same SE here, more degrees of freedom


def test_pooling_narrows_an_interval_that_welch_leaves_open():
    """A noisy pair beside quiet systems: the pooled interval is narrower than Welch's (one noisy group cannot
    be told from chance by Bartlett's test with three seeds, so the pool is kept)."""
    from catmner_bench.outcomes import Estimate

    groups = _table([80.0, 80.9, 80.45], [79.2, 79.7, 79.45])
    c = compare(groups, "cat-textual", "mm", "twitter2015")
    assert isinstance(c, PooledComparison)
    welch = Comparison(c.a, c.b)
    pooled_iv = Estimate(c.delta, c.se, c.df).interval
    welch_iv = Estimate(welch.delta, welch.se, welch.df).interval
    assert pooled_iv[1] - pooled_iv[0] < welch_iv[1] - welch_iv[0]


def test_unlike_seed_variances_are_not_pooled_and_the_cell_says_so():
    noisy = ((80.0, 86.0, 74.0), (79.0, 79.01, 79.02), (78.0, 78.01, 78.02))
    groups = _table([80.0, 80.01, 80.02], [79.0, 79.01, 79.02], others=noisy)
    c = compare(groups, "cat-textual", "mm", "twitter2015")
    assert type(c) is Comparison and "seed variances unlike (Bartlett p" in c.note
    assert c.se == pytest.approx(Comparison(c.a, c.b).se)  # Welch's test, each side's own spread


def test_no_pool_below_three_groups_or_across_budgets():
    groups = _table([80.0, 80.4, 80.2], [79.0, 79.4, 79.2], others=())
    assert type(compare(groups, "cat-textual", "mm", "twitter2015")) is Comparison
    ga, gb = _Group("cat-textual", [80.0, 80.4, 80.2]), _Group("mm", [79.0, 79.4, 79.2])
    longer = [_Group(f"o{i}", [1.0, 2.0, 3.0], config={"epochs": 10}) for i in range(3)]
    assert seed_pool([ga, gb, *longer], ga, gb) is None  # other groups trained 10 epochs: not this table's
    crf = _Group("lm-crf", [79.0, 79.4, 79.2], config={"kind": "crf"})
    assert seed_pool([ga, crf, *_table([1, 2, 3], [1, 2, 3])[2:]], ga, crf) is None  # span models only
