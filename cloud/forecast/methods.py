"""The forecasting methods: seasonal-naive (the baseline), damped-trend seasonal exponential smoothing, a
global gradient-boosted model on lags, and the fallback for a history too short for any of them.

Every method gives a point forecast and an 80 % interval (the 10 % and 90 % quantiles) over the horizon, or no
interval where the history cannot support one (said by a flag). Units cannot be negative: points and bounds
are clipped at 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

#: the standard normal's 90 % quantile: a normal 80 % interval is the point +- Z80 sigma
Z80 = 1.2815515655446004


class Method(StrEnum):
    """A forecasting method."""

    ETS = "ets"
    GBM = "gbm"
    SEASONAL_NAIVE = "seasonal_naive"
    MEAN = "mean"  # the fallback: fewer periods than one season


@dataclass(frozen=True, slots=True)
class Forecast:
    """A point forecast per period of the horizon with its 80 % interval (None: the history cannot support
    one), the method that made it and why it is not the one asked for (``flags``)."""

    method: Method
    point: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None
    flags: tuple[str, ...] = ()
    #: exponential smoothing's fitted parameters (and whether it had a season), to refit without optimising
    params: dict[str, float] | None = None


#: the smoothing parameters statsmodels' Holt-Winters fit takes and returns
_ETS_PARAMS = ("smoothing_level", "smoothing_trend", "smoothing_seasonal", "damping_trend")


def _clipped(method: Method, point: np.ndarray, lower: np.ndarray | None, upper: np.ndarray | None,
             flags: tuple[str, ...] = ()) -> Forecast:  # fmt: skip
    point = np.maximum(point, 0.0)
    if lower is not None and upper is not None:
        lower = np.maximum(np.minimum(lower, point), 0.0)
        upper = np.maximum(upper, point)
    return Forecast(method, point, lower, upper, flags)


def seasonal_naive(y: np.ndarray, h: int, m: int) -> Forecast | None:
    """Each period as the same period a season earlier; None with less than one season of history. The
    interval is normal with the in-sample seasonal differences' root mean square, widened by the square root
    of the seasons ahead (the textbook seasonal-naive variance)."""
    if len(y) < m:
        return None
    point = y[-m:][np.arange(h) % m]
    diffs = y[m:] - y[:-m]
    if len(diffs) < 2:
        return _clipped(Method.SEASONAL_NAIVE, point, None, None, ("no interval: under two seasons",))
    sd = np.sqrt(np.mean(diffs**2)) * np.sqrt(np.arange(h) // m + 1)
    return _clipped(Method.SEASONAL_NAIVE, point, point - Z80 * sd, point + Z80 * sd)


def mean_fallback(y: np.ndarray, h: int) -> Forecast:
    """The fallback under one season of history, where no seasonal method exists: the history's mean (steadier
    than the last value on counts this small), with a normal interval from its spread when there are at least
    three periods."""
    point = np.full(h, float(np.mean(y)))
    flag = f"fallback: {len(y)} period(s) of history, under one season; the mean of the history"
    if len(y) < 3:
        return _clipped(Method.MEAN, point, None, None, (flag, "no interval: under three periods"))
    sd = float(np.std(y, ddof=1)) * np.sqrt(1 + 1 / len(y))
    return _clipped(Method.MEAN, point, point - Z80 * sd, point + Z80 * sd, (flag,))


def ets(
    y: np.ndarray,
    h: int,
    m: int,
    rng: np.random.Generator,
    *,
    sims: int = 500,
    params: dict[str, float] | None = None,
) -> Forecast:
    """Additive damped-trend exponential smoothing with additive season ``m`` (statsmodels Holt-Winters); the
    interval from ``sims`` simulated futures of the fitted model. Under two seasons the season is left out
    (flagged); under one season, or a fit that fails, the fallback (flagged). With ``params`` (an earlier
    fit's, of the same kind) the smoothing parameters are kept and only the states run over ``y``."""
    from statsmodels.tsa.holtwinters import ExponentialSmoothing

    seasonal = len(y) >= 2 * m and len(y) >= 10
    if not seasonal and len(y) < max(m, 10):
        return mean_fallback(y, h)
    flags: tuple[str, ...] = () if seasonal else (f"no season: {len(y)} periods, under two seasons",)
    if np.ptp(y) == 0:  # a constant series: nothing to smooth, and the optimiser divides by its variance
        return _clipped(Method.ETS, np.full(h, float(y[-1])), np.full(h, float(y[-1])),
                        np.full(h, float(y[-1])), (*flags, "constant history"))  # fmt: skip
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            # convergence chatter of the optimiser is not the caller's business: a bad fit shows in the
            # backtest, and a failed one takes the fallback below
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(
                y,
                trend="add",
                damped_trend=True,
                seasonal="add" if seasonal else None,
                seasonal_periods=m if seasonal else None,
                initialization_method="heuristic" if seasonal else "estimated",
            )
            if params is not None and params.get("seasonal") == float(seasonal):
                fit = model.fit(optimized=False, **{k: params[k] for k in _ETS_PARAMS if k in params})
            else:
                # no brute-force start grid: 40 times faster, and the same fit on the series measured
                fit = model.fit(method="L-BFGS-B", use_brute=False)
            point = np.asarray(fit.forecast(h), dtype=float)
            paths = np.asarray(fit.simulate(h, repetitions=sims, error="add", anchor="end", rng=rng))
    except (ValueError, np.linalg.LinAlgError) as exc:
        fallback = seasonal_naive(y, h, m) or mean_fallback(y, h)
        return Forecast(fallback.method, fallback.point, fallback.lower, fallback.upper,
                        (*fallback.flags, f"exponential smoothing failed: {exc}"))  # fmt: skip
    paths = paths.reshape(h, -1)
    if not (np.all(np.isfinite(point)) and np.all(np.isfinite(paths))):
        fallback = seasonal_naive(y, h, m) or mean_fallback(y, h)
        return Forecast(fallback.method, fallback.point, fallback.lower, fallback.upper,
                        (*fallback.flags, "exponential smoothing diverged"))  # fmt: skip
    lower, upper = np.quantile(paths, [0.1, 0.9], axis=1)
    fitted = {
        k: float(v) for k in _ETS_PARAMS if isinstance(v := fit.params.get(k), float) and np.isfinite(v)
    }
    made = _clipped(Method.ETS, point, lower, upper, flags)
    return Forecast(
        made.method, made.point, made.lower, made.upper, made.flags, {**fitted, "seasonal": seasonal}
    )


def one_thread() -> AbstractContextManager[object]:
    """OpenMP limited to one thread while the boosted trees fit and predict. Their data is small (thousands
    of rows) and each tree's fixed cost dominates: OpenMP threads spinning for work measured 10 times slower
    than one thread on a busy two-core machine, and the API runs several requests at once anyway.
    threadpoolctl is scikit-learn's own dependency for exactly this."""
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    limits: AbstractContextManager[object] = threadpool_limits(limits=1, user_api="openmp")
    return limits


class GlobalBoosting:
    """One gradient-boosted model for all series (scikit-learn HistGradientBoostingRegressor) on lags 1..12
    (and the season's lag), the position in the year (categorical) and the series' level; every row is scaled
    by the level before it (the mean of the season before, at least 1) so that one model serves big and small
    series: the level is the series' target encoding.

    The point forecast is recursive (each step's prediction becomes the next step's lag 1); the interval is
    direct: two quantile-loss models (10 % and 90 %) with the step ahead as a feature, because quantiles fed
    back recursively would ignore the error of the earlier steps and come out too narrow.
    """

    def __init__(self, season: int, season_of: Callable[[int], int], *, horizon: int, seed: int = 0,
                 max_iter: int = 60, window: int = 24) -> None:  # fmt: skip
        self.season = season
        self.season_of = season_of
        self.horizon = horizon
        self.seed = seed
        self.max_iter = max_iter
        self.window = window  # origins per series the quantile models learn from (the newest)

    @property
    def lags(self) -> list[int]:
        """The lags used: 1..12, and the season when it is longer."""
        return [*range(1, 13), *([self.season] if self.season > 12 else [])]

    def usable(self, y: np.ndarray) -> bool:
        """Whether a history is long enough for the model (a full set of lags and a season besides)."""
        return len(y) >= max(self.lags) + self.season

    @staticmethod
    def _levels(y: np.ndarray, at: np.ndarray, m: int) -> np.ndarray:
        """The level at each index of ``at``: the mean of the season before it, at least 1."""
        total = np.concatenate([[0.0], np.cumsum(y)])
        level: np.ndarray = np.maximum((total[at] - total[at - m]) / m, 1.0)
        return level

    def fit(self, histories: Sequence[np.ndarray], starts: Sequence[int]) -> GlobalBoosting:
        """Learn from every usable history (``starts``: each one's first period)."""
        with one_thread():
            return self._fit(histories, starts)

    def _fit(self, histories: Sequence[np.ndarray], starts: Sequence[int]) -> GlobalBoosting:
        from sklearn.ensemble import HistGradientBoostingRegressor

        lags = np.array(self.lags)
        width = max(self.lags)
        point_x, point_y, q_x, q_y = [], [], [], []
        for y, start in zip(histories, starts, strict=True):
            if not self.usable(y):
                continue
            seasons = np.array([self.season_of(start + t) for t in range(len(y))])
            # each row scaled by the level before it, as a forecast is: a level taken from the whole history
            # would tell the early rows where the series went, and the intervals learnt there came out narrow
            t = np.arange(width, len(y))
            level = self._levels(y, t, self.season)
            point_x.append(
                np.column_stack([seasons[t], np.log1p(level), y[t[:, None] - lags[None, :]] / level[:, None]])
            )
            point_y.append(y[t] / level)
            # direct rows: from origin c (the first unknown index), the value k - 1 periods later
            for k in range(1, self.horizon + 1):
                c = np.arange(max(width, len(y) - k + 1 - self.window), len(y) - k + 1)
                lv = self._levels(y, c, self.season)
                lag_c = y[c[:, None] - lags[None, :]] / lv[:, None]
                q_x.append(np.column_stack([seasons[c + k - 1], np.log1p(lv), np.full(len(c), k), lag_c]))
                q_y.append(y[c + k - 1] / lv)
        if not point_x:
            self.point_ = self.lower_ = self.upper_ = None
            return self

        def model(loss: str, quantile: float | None = None) -> HistGradientBoostingRegressor:
            # small trees and few of them: each tree costs milliseconds of fixed overhead whatever the rows,
            # and deep quantile trees fit the training rows' tails, giving intervals too narrow out of sample
            return HistGradientBoostingRegressor(
                loss=loss, quantile=quantile, max_iter=self.max_iter, learning_rate=0.1, max_leaf_nodes=8,
                min_samples_leaf=40, categorical_features=[0], early_stopping=False, random_state=self.seed,
            )  # fmt: skip

        self.point_ = model("squared_error").fit(np.vstack(point_x), np.concatenate(point_y))
        qx, qy = np.vstack(q_x), np.concatenate(q_y)
        self.lower_ = model("quantile", 0.1).fit(qx, qy)
        self.upper_ = model("quantile", 0.9).fit(qx, qy)
        return self

    def predict(self, histories: Sequence[np.ndarray], starts: Sequence[int]) -> list[Forecast | None]:
        """The forecast of each history over the horizon (None for a history too short for the model)."""
        with one_thread():
            return self._predict(histories, starts)

    def _predict(self, histories: Sequence[np.ndarray], starts: Sequence[int]) -> list[Forecast | None]:
        out: list[Forecast | None] = [None] * len(histories)
        idx = [i for i, y in enumerate(histories) if self.usable(y)]
        if not idx or self.point_ is None or self.lower_ is None or self.upper_ is None:
            return out
        h, lags, m = self.horizon, np.array(self.lags), self.season
        width = max(max(self.lags), m)
        path = np.vstack([histories[i][-width:] for i in idx])
        ends = np.array([starts[i] + len(histories[i]) for i in idx])
        future_seasons = np.array([[self.season_of(int(e) + k) for k in range(h)] for e in ends])
        origin_level = np.maximum(path[:, -m:].mean(axis=1), 1.0)
        origin_lags = path[:, path.shape[1] - lags] / origin_level[:, None]
        point = np.zeros((len(idx), h))
        for k in range(h):
            level = np.maximum(path[:, -m:].mean(axis=1), 1.0)
            lagged = path[:, path.shape[1] - lags] / level[:, None]
            x = np.column_stack([future_seasons[:, k], np.log1p(level), lagged])
            point[:, k] = np.maximum(self.point_.predict(x), 0.0) * level
            path = np.column_stack([path, point[:, k]])
        bounds = []
        for q in (self.lower_, self.upper_):
            b = np.zeros_like(point)
            for k in range(h):
                x = np.column_stack([future_seasons[:, k], np.log1p(origin_level), np.full(len(idx), k + 1),
                                     origin_lags])  # fmt: skip
                b[:, k] = q.predict(x) * origin_level
            bounds.append(b)
        for row, i in enumerate(idx):
            out[i] = _clipped(Method.GBM, point[row], bounds[0][row], bounds[1][row])
        return out
