"""Sales forecasting with honest backtests: unit sales by model x region (or any subset), monthly or weekly.

Modules: ``series`` (periods, the CSV and database readers, gap filling), ``methods`` (seasonal-naive,
exponential smoothing, the global boosted model on lags, the short-history fallback), ``evaluate`` (MASE,
rolling-origin backtest, per-series choice), ``run`` (the job: forecasts, the hierarchy, the report).

Errors::

    ForecastError            refused input: the command exits 2, the API answers 422
    └── DataError            a file or a database without a single usable row, a bad header, a bad --by

A bad line of a data file is not an error: it is reported (``LineProblem``) and the rest is used.
"""

from __future__ import annotations


class ForecastError(Exception):
    """The root of the forecasting errors: a refused input."""


class DataError(ForecastError):
    """Data that cannot be forecast at all (no usable rows, an unreadable file, a bad grouping)."""
