"""The forecasting job: series from sales, a method per series, forecasts, the hierarchy and the report.

Without a backtest every series gets exponential smoothing (with its documented fallbacks); with one, each
series gets the method of least backtest MASE (seasonal-naive wins ties). Forecasts are made at the level
asked (``by``); the coarser levels are their bottom-up sums, which add up by construction. Interval bounds do
not add up (a sum of 10 % quantiles is not the 10 % quantile of the sum), so each coarser level's interval
comes from that level's own series and own exponential-smoothing forecast, reported next to the bottom-up
point with that forecast's own point.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .evaluate import Backtest, SeriesScore, backtest
from .methods import Forecast, GlobalBoosting, Method, ets, seasonal_naive
from .series import Freq, LineProblem, Sale, Series, build_series, key_dict

#: the backtest's origins (the last six possible ones)
ORIGINS = 6


@dataclass(slots=True)
class SeriesForecast:
    """One series' forecast at the level asked, with its flags and (after a backtest) its scores."""

    series: Series
    forecast: Forecast
    score: SeriesScore | None


@dataclass(slots=True)
class AggregateForecast:
    """A coarser level's key, the bottom-up sum of its series' points, and its own series' forecast (the
    interval to use)."""

    level: str
    key: dict[str, str]
    bottom_up: np.ndarray
    own: Forecast


@dataclass(slots=True)
class ForecastReport:
    """Everything the command prints and the API returns."""

    freq: Freq
    by: tuple[str, ...]
    horizon: int
    end: int
    series: list[SeriesForecast]
    aggregates: list[AggregateForecast]
    backtest: Backtest | None
    problems: list[LineProblem]

    def periods(self) -> list[str]:
        """The labels of the forecast periods."""
        return [self.freq.label(self.end + k) for k in range(self.horizon)]

    def as_dict(self) -> dict[str, Any]:
        """As one JSON document."""
        labels = self.periods()
        return {
            "freq": self.freq.value,
            "by": list(self.by),
            "horizon": self.horizon,
            "last_period": self.freq.label(self.end - 1),
            "periods": labels,
            "problems": [{"line": p.line, "reason": p.reason} for p in self.problems],
            "series": [_series_dict(s, self.by, labels, self.freq) for s in self.series],
            "aggregates": [_aggregate_dict(a, labels) for a in self.aggregates],
            "backtest": self.backtest.as_dict() if self.backtest else None,
            "no_model_beats_seasonal_naive": [
                key_dict(self.by, s.series.key)
                for s in self.series
                if s.score is not None and s.score.beats_seasonal_naive is False
            ],
        }


def _num(v: float) -> float:
    return round(float(v), 2)


def _points(f: Forecast, labels: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "period": label,
            "point": _num(f.point[k]),
            "lower": None if f.lower is None else _num(f.lower[k]),
            "upper": None if f.upper is None else _num(f.upper[k]),
        }
        for k, label in enumerate(labels)
    ]


def _series_dict(s: SeriesForecast, by: tuple[str, ...], labels: list[str], freq: Freq) -> dict[str, Any]:
    return {
        "key": key_dict(by, s.series.key),
        "method": s.forecast.method.value,
        "history_periods": len(s.series.values),
        "first_period": freq.label(s.series.start),
        "filled_periods": s.series.filled,
        "flags": [*s.series.flags, *s.forecast.flags],
        "forecast": _points(s.forecast, labels),
        "backtest": s.score.as_dict() if s.score else None,
    }


def _aggregate_dict(a: AggregateForecast, labels: list[str]) -> dict[str, Any]:
    own = _points(a.own, labels)
    return {
        "level": a.level,
        "key": a.key,
        "own_method": a.own.method.value,
        "own_flags": list(a.own.flags),
        "forecast": [
            {
                "period": label,
                "bottom_up": _num(a.bottom_up[k]),
                "own_point": own[k]["point"],
                "lower": own[k]["lower"],
                "upper": own[k]["upper"],
            }
            for k, label in enumerate(labels)
        ],
    }


def forecast_sales(
    sales: Sequence[Sale],
    freq: Freq,
    by: tuple[str, ...],
    horizon: int,
    *,
    run_backtest: bool = False,
    problems: Sequence[LineProblem] = (),
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> ForecastReport:
    """Forecast ``horizon`` periods of every series of ``sales`` grouped by ``by``, with the coarser levels
    bottom-up; with ``run_backtest`` the method per series is the backtest's winner."""
    say = progress or (lambda _m: None)
    rng = np.random.default_rng(seed)
    series, end = build_series(sales, by)
    m = freq.season
    for s in series:
        if s.filled:
            s.flags.append(f"{s.filled} period(s) without sales filled with 0")
    say(f"{len(series)} series, last period {freq.label(end - 1)}")
    bt = None
    if run_backtest:
        bt = backtest(series, m, freq.season_index, horizon, origins=ORIGINS, seed=seed, progress=say)
    chosen = [
        bt.series[i].winner if bt is not None and bt.series[i].winner is not None else Method.ETS
        for i in range(len(series))
    ]
    gbm: list[Forecast | None] = [None] * len(series)
    if Method.GBM in chosen:
        histories, starts = [s.values for s in series], [s.start for s in series]
        boosted = GlobalBoosting(m, freq.season_index, horizon=horizon, seed=seed).fit(histories, starts)
        gbm = boosted.predict(histories, starts)
    out = []
    for i, s in enumerate(series):
        f: Forecast | None = None
        if chosen[i] is Method.GBM:
            f = gbm[i]
        elif chosen[i] is Method.SEASONAL_NAIVE:
            f = seasonal_naive(s.values, horizon, m)
        if f is None:
            f = ets(s.values, horizon, m, rng)
        out.append(SeriesForecast(s, f, bt.series[i] if bt is not None else None))
    say("forecasts made")
    return ForecastReport(
        freq, by, horizon, end, out, _aggregates(out, by, end, horizon, m, rng), bt, list(problems)
    )


def _aggregates(
    bottom: list[SeriesForecast],
    by: tuple[str, ...],
    end: int,
    horizon: int,
    m: int,
    rng: np.random.Generator,
) -> list[AggregateForecast]:
    """Every coarser level of ``by``: per dimension kept (when two were asked) and the total."""
    if not by:
        return []
    levels: list[tuple[str, ...]] = [(d,) for d in by] if len(by) > 1 else []
    levels.append(())
    out = []
    for level in levels:
        groups: dict[tuple[str, ...], list[SeriesForecast]] = defaultdict(list)
        for sf in bottom:
            groups[tuple(sf.series.key[by.index(d)] for d in level)].append(sf)
        for key, members in sorted(groups.items()):
            start = min(sf.series.start for sf in members)
            values = np.zeros(end - start)
            for sf in members:
                values[sf.series.start - start :] += sf.series.values
            summed = np.sum([sf.forecast.point for sf in members], axis=0)
            own = ets(values, horizon, m, rng)
            out.append(AggregateForecast(",".join(level) or "total", key_dict(level, key), summed, own))
    return out
