"""Honest evaluation: a rolling-origin backtest of every method on every series, scored by MASE and the 80 %
interval's coverage, and the per-series choice of a method.

At each origin the methods see only the periods before it (the global boosted model is refitted on all
series cut at the same calendar period), forecast the horizon, and are scored on what followed. MASE divides
the mean absolute error by the in-sample mean absolute seasonal-naive error of the same training periods (the
one-step naive error when the training part is shorter than a season and a period), so a MASE under 1 beats
the baseline's typical in-sample error and the methods' MASEs on a series compare directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .methods import Forecast, GlobalBoosting, Method, ets, seasonal_naive
from .series import Series

#: the methods compared, in the order a tie is broken (the simplest first)
COMPARED = (Method.SEASONAL_NAIVE, Method.ETS, Method.GBM)


def mase_scale(train: np.ndarray, m: int) -> float | None:
    """The in-sample mean absolute seasonal-naive error (one-step naive under m + 1 periods); None when it is
    0 or cannot be computed (a constant or one-period history: no scale to measure errors against)."""
    if len(train) > m:
        diffs = np.abs(train[m:] - train[:-m])
    elif len(train) > 1:
        diffs = np.abs(np.diff(train))
    else:
        return None
    scale = float(np.mean(diffs))
    return scale if scale > 0 else None


def mase(actual: np.ndarray, predicted: np.ndarray, scale: float) -> float:
    """The mean absolute error over ``scale``."""
    return float(np.mean(np.abs(actual - predicted)) / scale)


@dataclass(slots=True)
class SeriesScore:
    """One series' backtest: mean MASE and interval coverage per method over the origins it had, the method
    with the least MASE, and whether any model beat seasonal-naive (None: seasonal-naive had no score)."""

    origins: int = 0
    mase: dict[str, float | None] = field(default_factory=dict)
    coverage_80: dict[str, float | None] = field(default_factory=dict)
    winner: Method | None = None
    beats_seasonal_naive: bool | None = None

    def as_dict(self) -> dict[str, object]:
        """As JSON."""
        return {
            "origins": self.origins,
            "mase": {k: _round(v) for k, v in self.mase.items()},
            "coverage_80": {k: _round(v) for k, v in self.coverage_80.items()},
            "winner": self.winner.value if self.winner else None,
            "beats_seasonal_naive": self.beats_seasonal_naive,
        }


@dataclass(slots=True)
class Backtest:
    """The backtest of every series (in the order given), and a summary per method over the series every
    method could forecast (so the means compare like with like) with the interval coverage pooled over their
    forecasts."""

    origins: int
    horizon: int
    series: list[SeriesScore]
    mase: dict[str, float | None]
    coverage_80: dict[str, float | None]
    compared_series: int
    best_overall: Method | None

    def as_dict(self) -> dict[str, object]:
        """The summary as JSON (the per-series scores go with each series)."""
        return {
            "origins": self.origins,
            "horizon": self.horizon,
            "compared_series": self.compared_series,
            "mase": {k: _round(v) for k, v in self.mase.items()},
            "coverage_80": {k: _round(v) for k, v in self.coverage_80.items()},
            "best_overall": self.best_overall.value if self.best_overall else None,
        }


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 4)


def backtest(
    series: Sequence[Series],
    season: int,
    season_of: Callable[[int], int],
    horizon: int,
    *,
    origins: int = 6,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Backtest:
    """Rolling-origin backtest: origins at 1..``origins`` periods before the last possible one (the newest
    origin's horizon ends at the data's last period), each method forecasting ``horizon`` periods."""
    say = progress or (lambda _m: None)
    rng = np.random.default_rng(seed)
    # per series and method: per-origin MASEs, interval hits and interval points
    errors: list[dict[Method, list[float]]] = [{m: [] for m in COMPARED} for _ in series]
    hits = np.zeros((len(series), len(COMPARED)))
    shown = np.zeros((len(series), len(COMPARED)))
    done = [0] * len(series)
    # exponential smoothing's parameters are optimised at the earliest origin and kept at the later ones
    # (only the states see the newer periods): six times fewer optimisations, and still nothing from after
    # an origin is used at it
    ets_params: list[dict[str, float] | None] = [None] * len(series)
    for j in reversed(range(origins)):
        back = horizon + j
        trains = [s.values[: max(len(s.values) - back, 0)] for s in series]
        starts = [s.start for s in series]
        boosted = GlobalBoosting(season, season_of, horizon=horizon, seed=seed).fit(trains, starts)
        gbm = boosted.predict(trains, starts)
        for i, s in enumerate(series):
            train, test = trains[i], s.values[len(trains[i]) : len(trains[i]) + horizon]
            scale = mase_scale(train, season)
            if len(train) < 2 or scale is None:
                continue
            done[i] += 1
            made: dict[Method, Forecast | None] = {
                Method.SEASONAL_NAIVE: seasonal_naive(train, horizon, season),
                Method.ETS: ets(train, horizon, season, rng, params=ets_params[i]),
                Method.GBM: gbm[i],
            }
            if ets_params[i] is None and (fitted := made[Method.ETS]) is not None:
                ets_params[i] = fitted.params
            for col, method in enumerate(COMPARED):
                f = made[method]
                if f is None:
                    continue
                errors[i][method].append(mase(test, f.point, scale))
                if f.lower is not None and f.upper is not None:
                    hits[i, col] += np.sum((test >= f.lower) & (test <= f.upper))
                    shown[i, col] += len(test)
        say(f"backtest: origin {origins - j} of {origins} done")
    scores = []
    for i in range(len(series)):
        score = SeriesScore(origins=done[i])
        for col, method in enumerate(COMPARED):
            e = errors[i][method]
            score.mase[method.value] = float(np.mean(e)) if e else None
            score.coverage_80[method.value] = float(hits[i, col] / shown[i, col]) if shown[i, col] else None
        scored = [(v, n, m) for n, m in enumerate(COMPARED) if (v := score.mase[m.value]) is not None]
        if scored:
            score.winner = min(scored)[2]
        base = score.mase[Method.SEASONAL_NAIVE.value]
        models = [v for m in (Method.ETS, Method.GBM) if (v := score.mase[m.value]) is not None]
        if base is not None and models:
            score.beats_seasonal_naive = min(models) < base
        scores.append(score)
    full = [i for i, s in enumerate(scores) if all(s.mase[m.value] is not None for m in COMPARED)]
    summary: dict[str, float | None] = {}
    coverage: dict[str, float | None] = {}
    for col, method in enumerate(COMPARED):
        values = [v for i in full if (v := scores[i].mase[method.value]) is not None]
        summary[method.value] = float(np.mean(values)) if values else None
        n = shown[full, col].sum() if full else 0
        coverage[method.value] = float(hits[full, col].sum() / n) if n else None
    ranked = [(v, n, m) for n, m in enumerate(COMPARED) if (v := summary[m.value]) is not None]
    best = min(ranked)[2] if ranked else None
    return Backtest(origins, horizon, scores, summary, coverage, len(full), best)
