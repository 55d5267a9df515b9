"""What a campaign earned, with its uncertainty: rates per arm, uplift against the holdout, sample-ratio
mismatch, the minimum detectable effect, cost and ROI.

The statistics are statsmodels' and scipy's, chosen for small and unbalanced groups and rare conversions:

- a rate's 95 % interval is Wilson's score interval (it stays inside [0, 1] and is honest at 0 successes,
  where the normal approximation gives an interval of width 0);
- uplift is the difference of conversion rates, treatment minus holdout, with Newcombe's hybrid score
  interval (method 10 of Newcombe 1998, built from the two Wilson intervals) and the p-value of the score
  test of no difference — the pair agree far better than Wald's at rates of a few percent;
- a sample-ratio mismatch is a chi-square goodness-of-fit test of the groups' sizes against the split they
  were assigned with, flagged below p = 0.001 (a broken assignment or a lossy pipeline, not chance);
- the minimum detectable effect is the rate difference a two-sided test at ``alpha`` finds with ``power``
  at the current group sizes and the holdout's rate (Cohen's h through statsmodels' power solver, turned back
  into a difference of rates).

Money: cost is what the sends cost; incremental conversions are the uplift times the treated group's size;
incremental revenue is those times the value per conversion; ROI is (incremental revenue - cost) / cost.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import chisquare
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    test_proportions_2indep,
)

#: a sample-ratio mismatch is flagged below this p-value
SRM_ALPHA = 0.001


@dataclass(frozen=True, slots=True)
class Rate:
    """A proportion with its Wilson interval."""

    successes: int
    trials: int
    value: float | None
    ci_low: float | None
    ci_high: float | None


def rate(successes: int, trials: int, alpha: float = 0.05) -> Rate:
    """``successes / trials`` with its Wilson score interval (None throughout when there are no trials)."""
    _counts(successes, trials)
    if trials == 0:
        return Rate(successes, trials, None, None, None)
    low, high = proportion_confint(successes, trials, alpha=alpha, method="wilson")
    return Rate(successes, trials, successes / trials, float(low), float(high))


@dataclass(frozen=True, slots=True)
class Uplift:
    """Treatment's conversion rate minus the holdout's, its interval, and the score test's p-value."""

    difference: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    alpha: float

    @property
    def significant(self) -> bool:
        """Whether the interval excludes zero (the test rejects no difference at ``alpha``)."""
        return self.ci_low is not None and self.ci_high is not None and (self.ci_low > 0 or self.ci_high < 0)


def uplift(
    treated_conversions: int,
    treated: int,
    holdout_conversions: int,
    holdout: int,
    alpha: float = 0.05,
) -> Uplift:
    """The uplift of a treated group over its holdout (Newcombe interval, score-test p-value); all None when
    a group is empty."""
    _counts(treated_conversions, treated)
    _counts(holdout_conversions, holdout)
    if treated == 0 or holdout == 0:
        return Uplift(None, None, None, None, alpha)
    difference = treated_conversions / treated - holdout_conversions / holdout
    with warnings.catch_warnings():  # 0 or all conversions in both groups: a 0/0 the test reports as NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = confint_proportions_2indep(
            treated_conversions, treated, holdout_conversions, holdout, method="newcomb", compare="diff",
            alpha=alpha,
        )  # fmt: skip
        p = float(
            test_proportions_2indep(
                treated_conversions, treated, holdout_conversions, holdout, method="score", compare="diff"
            ).pvalue
        )
    # both groups all-or-nothing alike: no evidence of any difference
    return Uplift(difference, float(low), float(high), 1.0 if math.isnan(p) else p, alpha)


@dataclass(frozen=True, slots=True)
class SampleRatio:
    """Observed group sizes against the assigned split: chi-square p-value and whether it is a mismatch."""

    observed: dict[str, int]
    expected_share: dict[str, float]
    p_value: float | None
    mismatch: bool


def sample_ratio(observed: Mapping[str, int], expected_share: Mapping[str, float]) -> SampleRatio:
    """Test group sizes against the shares they were assigned with (shares are normalised to sum to 1)."""
    if set(observed) != set(expected_share):
        raise ValueError("observed groups and expected shares name different groups")
    if any(v < 0 for v in observed.values()) or any(s <= 0 for s in expected_share.values()):
        raise ValueError("group sizes must be >= 0 and expected shares > 0")
    names = sorted(observed)
    total = sum(observed.values())
    share_sum = sum(expected_share.values())
    shares = {g: expected_share[g] / share_sum for g in names}
    if total == 0 or len(names) < 2:
        return SampleRatio(dict(observed), shares, None, False)
    _, p = chisquare([observed[g] for g in names], [shares[g] * total for g in names])
    return SampleRatio(dict(observed), shares, float(p), float(p) < SRM_ALPHA)


def minimum_detectable_effect(
    treated: int, holdout: int, baseline: float, alpha: float = 0.05, power: float = 0.8
) -> float | None:
    """The smallest rate increase over ``baseline`` a two-sided test at ``alpha`` detects with ``power`` at
    these group sizes (None when a group is empty or the baseline is 0 or 1, where no effect size exists)."""
    if treated <= 0 or holdout <= 0 or not 0 < baseline < 1:
        return None
    h = NormalIndPower().solve_power(
        effect_size=None, nobs1=treated, ratio=holdout / treated, alpha=alpha, power=power
    )
    # Cohen's h = 2·asin(√p1) - 2·asin(√p0): solve for p1 (capped at a rate of 1)
    angle = min(math.asin(math.sqrt(baseline)) + float(h) / 2, math.pi / 2)
    return math.sin(angle) ** 2 - baseline


@dataclass(frozen=True, slots=True)
class Money:
    """A treated arm's cost, incremental conversions and revenue, and ROI (None without a cost)."""

    cost: float
    incremental_conversions: float | None
    incremental_revenue: float | None
    roi: float | None


def money(sent: int, cost_per_send: float, treated: int, difference: float | None, value: float) -> Money:
    """Cost of ``sent`` sends, and what the uplift ``difference`` over ``treated`` customers earned."""
    cost = sent * cost_per_send
    if difference is None:
        return Money(cost, None, None, None)
    conversions = difference * treated
    revenue = conversions * value
    return Money(cost, conversions, revenue, (revenue - cost) / cost if cost > 0 else None)


def false_positive_rate(p_values: Sequence[float], alpha: float = 0.05) -> float:
    """The share of A/A comparisons a test at ``alpha`` calls significant (its false-positive rate)."""
    if not p_values:
        raise ValueError("no p-values")
    return sum(p < alpha for p in p_values) / len(p_values)


def _counts(successes: int, trials: int) -> None:
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
