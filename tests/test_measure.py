"""Campaign statistics against published values and against simulation: interval coverage, A/A false
positives, the power behind the minimum detectable effect, sample-ratio mismatch."""

from __future__ import annotations

import numpy as np
import pytest

from cloud.push.measure import (
    false_positive_rate,
    minimum_detectable_effect,
    money,
    rate,
    sample_ratio,
    uplift,
)


def test_wilson_interval_is_honest_at_zero_and_matches_the_formula() -> None:
    r = rate(0, 10)
    assert r.value == 0 and r.ci_low == pytest.approx(0, abs=1e-12)
    assert r.ci_high == pytest.approx(1.959964**2 / (10 + 1.959964**2), rel=1e-5)  # z²/(n+z²)
    assert rate(0, 0).value is None
    with pytest.raises(ValueError):
        rate(11, 10)


def test_newcombe_interval_matches_the_paper() -> None:
    # Newcombe (1998), Statistics in Medicine 17:873, its first example: 56/70 - 48/80, method 10
    u = uplift(56, 70, 48, 80)
    assert u.difference == pytest.approx(0.2)
    assert (u.ci_low, u.ci_high) == (pytest.approx(0.0524, abs=1e-4), pytest.approx(0.3339, abs=1e-4))
    assert u.significant and u.p_value is not None and u.p_value < 0.05
    nothing = uplift(0, 100, 0, 100)
    assert nothing.difference == 0 and nothing.p_value == 1.0 and not nothing.significant
    assert uplift(1, 10, 0, 0).difference is None


def test_aa_false_positive_rate_is_near_alpha() -> None:
    rng = np.random.default_rng(20261201)
    p_values = []
    for _ in range(1000):
        a, b = rng.binomial(2000, 0.03, size=2)
        result = uplift(int(a), 2000, int(b), 2000)
        assert result.p_value is not None
        p_values.append(result.p_value)
    assert 0.03 <= false_positive_rate(p_values) <= 0.07


def test_the_minimum_detectable_effect_is_found_with_the_promised_power() -> None:
    mde = minimum_detectable_effect(10_000, 10_000, 0.05)
    assert mde is not None
    # the normal approximation: (z_0.975 + z_0.8) · sqrt(2 p (1 - p) / n)
    assert mde == pytest.approx(2.8016 * (2 * 0.05 * 0.95 / 10_000) ** 0.5, rel=0.05)
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(400):
        t, h = rng.binomial(10_000, 0.05 + mde), rng.binomial(10_000, 0.05)
        found += uplift(int(t), 10_000, int(h), 10_000).significant
    assert 0.72 <= found / 400 <= 0.88
    assert minimum_detectable_effect(0, 10, 0.1) is None and minimum_detectable_effect(10, 10, 0.0) is None
    # a smaller holdout detects less
    smaller = minimum_detectable_effect(10_000, 1_000, 0.05)
    assert smaller is not None and smaller > mde


def test_sample_ratio_mismatch_is_flagged_only_when_real() -> None:
    assert not sample_ratio({"treated": 5030, "holdout": 4970}, {"treated": 0.5, "holdout": 0.5}).mismatch
    flagged = sample_ratio({"treated": 5200, "holdout": 4800}, {"treated": 1, "holdout": 1})
    assert flagged.mismatch and flagged.p_value is not None and flagged.p_value < 0.001
    ok = sample_ratio({"treated": 9000, "holdout": 1000}, {"treated": 0.9, "holdout": 0.1})
    assert not ok.mismatch
    with pytest.raises(ValueError):
        sample_ratio({"treated": 1}, {"holdout": 1})


def test_money() -> None:
    m = money(sent=1000, cost_per_send=0.5, treated=1000, difference=0.02, value=100.0)
    assert (m.cost, m.incremental_conversions, m.incremental_revenue) == (500.0, 20.0, 2000.0)
    assert m.roi == pytest.approx(3.0)
    assert money(0, 0.5, 0, None, 100).roi is None and money(10, 0.0, 10, 0.1, 5).roi is None
