"""Sales forecasts for R&D and planning (``rd:read``): unit sales by model x region (or a coarser grouping)
from the purchases, with the bottom-up sums and, on request, the rolling-origin backtest.

Aggregates of purchases only: no customer is named, so nothing is audited per request. As R&D insights do
(``cloud/api/least_data.py``), a series of fewer purchases in its whole history than the server's minimum
group size (``DRIVESIGHT_API_MIN_GROUP_SIZE``) is left out before anything is fitted, counted in
``suppressed_series``: a model sold twice in a region would show when each of those buyers bought. The
coarser levels are the sums of the series shown. A backtest refits every method at six origins, so it is
asked for explicitly (``backtest=true``).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from cloud.forecast import ForecastError
from cloud.forecast.run import forecast_sales
from cloud.forecast.series import Freq, Sale, parse_by, read_database

from .auth import Principal, require
from .deps import Conn
from .errors import ApiError, documented

router = APIRouter()


class ForecastOut(BaseModel):
    """The forecast document of ``drivesight cloud forecast --json`` (``cloud/forecast/README.md``)."""

    freq: str
    by: list[str]
    horizon: int
    last_period: str | None
    periods: list[str]
    problems: list[dict[str, Any]]
    series: list[dict[str, Any]]
    aggregates: list[dict[str, Any]]
    backtest: dict[str, Any] | None
    no_model_beats_seasonal_naive: list[dict[str, str]]
    suppressed_series: int = 0  # series under the minimum group size, left out


@router.get(
    "/v1/forecast",
    response_model=ForecastOut,
    responses={422: documented("a bad grouping or horizon")},
)
def get_forecast(
    request: Request,
    principal: Annotated[Principal, require("rd:read")],
    conn: Conn,
    by: Annotated[
        str,
        Query(
            pattern=r"^(model,region|region,model|model|region|total)$",
            description="model,region | model | region | total",
        ),
    ] = "model,region",
    horizon: Annotated[int, Query(ge=1, le=24, description="periods ahead")] = 6,
    freq: Annotated[Freq, Query(description="M: months, W: Monday-weeks")] = Freq.MONTH,
    backtest: Annotated[bool, Query(description="backtest every method; each series gets its best")] = False,
) -> ForecastOut:
    """Unit-sales forecasts per series with 80 % intervals, the coarser levels bottom-up (their intervals from
    their own series), and the backtest's MASE and coverage when asked; no purchases: no series."""
    try:
        grouping = parse_by(by)
    except ForecastError as exc:
        raise ApiError(422, str(exc)) from exc
    sales, suppressed = _large_enough(
        read_database(conn, freq, datetime.now(UTC).date()),
        grouping,
        request.app.state.settings.api_min_group_size,
    )
    if not sales:
        return ForecastOut(
            freq=freq.value, by=list(grouping), horizon=horizon, last_period=None, periods=[], problems=[],
            series=[], aggregates=[], backtest=None, no_model_beats_seasonal_naive=[],
            suppressed_series=suppressed,
        )  # fmt: skip
    report = forecast_sales(sales, freq, grouping, horizon, run_backtest=backtest)
    return ForecastOut(**report.as_dict(), suppressed_series=suppressed)


def _large_enough(sales: list[Sale], grouping: tuple[str, ...], min_size: int) -> tuple[list[Sale], int]:
    """The sales of the series (by ``grouping``) with at least ``min_size`` units in all, and how many
    series were left out."""
    totals: dict[tuple[str, ...], float] = defaultdict(float)
    for sale in sales:
        totals[tuple(getattr(sale, d) for d in grouping)] += sale.units
    small = {key for key, units in totals.items() if units < min_size}
    kept = [s for s in sales if tuple(getattr(s, d) for d in grouping) not in small]
    return kept, len(small)
