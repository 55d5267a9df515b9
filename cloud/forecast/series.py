"""Unit-sales series: periods (months or Monday-weeks), the CSV and database readers, grouping, gap filling.

A period is an integer: months since year 0 (``year * 12 + month - 1``) or Monday-weeks since 1970-01-05, so
that consecutive periods differ by one and a gap is visible as a jump.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np

from . import DataError

#: the grouping dimensions, in the order keys are written
DIMENSIONS = ("model", "region")
_MONDAY0 = date(1970, 1, 5)


class Freq(StrEnum):
    """The series' period: calendar months (season 12) or Monday-weeks (season 52)."""

    MONTH = "M"
    WEEK = "W"

    @property
    def season(self) -> int:
        """The seasonal period in periods."""
        return 12 if self is Freq.MONTH else 52

    def period(self, day: date) -> int:
        """The period a day falls in."""
        if self is Freq.MONTH:
            return day.year * 12 + day.month - 1
        return (day - _MONDAY0).days // 7

    def start(self, period: int) -> date:
        """The first day of a period."""
        if self is Freq.MONTH:
            return date(period // 12, period % 12 + 1, 1)
        return _MONDAY0 + timedelta(weeks=period)

    def label(self, period: int) -> str:
        """``2026-03`` for a month, the Monday's ISO date for a week."""
        d = self.start(period)
        return f"{d.year:04d}-{d.month:02d}" if self is Freq.MONTH else d.isoformat()

    def season_index(self, period: int) -> int:
        """The position in the year: month 0..11, or ISO week 0..51 (week 53 shares week 52's index)."""
        if self is Freq.MONTH:
            return period % 12
        return min(self.start(period).isocalendar().week, 52) - 1


def parse_by(text: str) -> tuple[str, ...]:
    """``model,region`` -> ("model", "region"); ``total`` -> (); anything else is a DataError."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if parts == ["total"]:
        return ()
    if not parts or any(p not in DIMENSIONS for p in parts) or len(set(parts)) != len(parts):
        raise DataError(f"--by {text!r}: give model, region, model,region or total")
    return tuple(d for d in DIMENSIONS if d in parts)


@dataclass(frozen=True, slots=True)
class Sale:
    """Units sold in one period of one model in one region."""

    period: int
    model: str
    region: str
    units: float


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A refused line of a data file: its number (the header is line 1) and why."""

    line: int
    reason: str


@dataclass(slots=True)
class Series:
    """One series: its key (a value per grouping dimension), the first period and the units per period from
    there to the data's last period (gaps filled with 0)."""

    key: tuple[str, ...]
    start: int
    values: np.ndarray
    filled: int = 0  # periods inside the series with no row at all, now 0
    flags: list[str] = field(default_factory=list)

    @property
    def end(self) -> int:
        """The period after the last value."""
        return self.start + len(self.values)


def key_dict(by: Sequence[str], key: tuple[str, ...]) -> dict[str, str]:
    """A key as a JSON object (``{}`` for the total)."""
    return dict(zip(by, key, strict=True))


def read_csv(path: Path, freq: Freq) -> tuple[list[Sale], list[LineProblem]]:
    """The sales of a ``date,model,region,units`` file and its refused lines. Refused: a date that does not
    parse (ISO ``YYYY-MM-DD``, or ``YYYY-MM`` for a month), units that are not a number or negative, a missing
    model or region, a (date, model, region) seen on an earlier line. Days in one period are summed."""
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise DataError(f"{path}: {exc.strerror or exc}") from exc
    sales: list[Sale] = []
    problems: list[LineProblem] = []
    seen: dict[tuple[date, str, str], int] = {}
    with handle:
        try:
            rows = csv.reader(handle)
            header = [h.strip().lower() for h in next(rows, [])]
            if header != ["date", "model", "region", "units"]:
                raise DataError(
                    f"{path}: the header must be date,model,region,units (found {','.join(header)})"
                )
            for number, row in enumerate(rows, start=2):
                if not row or all(not c.strip() for c in row):
                    continue
                sale, reason = _parse_row(row, freq)
                if sale is not None:
                    day, s = sale
                    k = (day, s.model, s.region)
                    if k in seen:
                        reason = f"duplicate of line {seen[k]} ({day}, {s.model}, {s.region})"
                    else:
                        seen[k] = number
                        sales.append(s)
                        continue
                problems.append(LineProblem(number, reason))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: not a readable CSV file ({exc})") from exc
    return sales, problems


def _parse_row(row: list[str], freq: Freq) -> tuple[tuple[date, Sale] | None, str]:
    if len(row) != 4:
        return None, f"{len(row)} fields, expected 4"
    raw_date, model, region, raw_units = (c.strip() for c in row)
    try:
        day = date.fromisoformat(raw_date) if len(raw_date) > 7 else date.fromisoformat(raw_date + "-01")
    except ValueError:
        return None, f"unparseable date {raw_date!r}"
    if not model or not region:
        return None, "missing model or region"
    try:
        units = float(raw_units)
    except ValueError:
        return None, f"units {raw_units!r} not a number"
    if not np.isfinite(units):
        return None, f"units {raw_units!r} not a number"
    if units < 0:
        return None, f"negative units {raw_units}"
    return (day, Sale(freq.period(day), model, region, units)), ""


#: units per (period start, model, region); the car's own region first, else its dealer's
_PURCHASES = """
SELECT date_trunc(%(unit)s, p.purchased_at)::date AS period,
       coalesce(v.model, 'unknown') AS model,
       coalesce(v.region, d.region, 'unknown') AS region,
       count(*) AS units
FROM purchases p
JOIN vehicles v ON v.vehicle_id = p.vehicle_id
LEFT JOIN dealers d ON d.dealer_id = p.dealer_id
WHERE p.purchased_at < %(before)s
GROUP BY 1, 2, 3
"""


def read_database(conn: Any, freq: Freq, today: date) -> list[Sale]:
    """The purchases of a database as sales per period, model and region (a car without a model or region is
    ``unknown``, its own series), up to the period before ``today``'s: the current period is still selling,
    and its half-counted units would read as a slump."""
    from psycopg.rows import tuple_row

    unit = "month" if freq is Freq.MONTH else "week"
    # tuples whatever the connection's row factory (the API's pool hands out dict rows)
    with conn.cursor(row_factory=tuple_row) as cur:
        rows = cur.execute(_PURCHASES, {"unit": unit, "before": freq.start(freq.period(today))}).fetchall()
    return [Sale(freq.period(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]


def build_series(sales: Iterable[Sale], by: Sequence[str]) -> tuple[list[Series], int]:
    """Sales summed into a series per key of ``by`` (``()``: one total series), each from its first period
    with a sale to the last period of all the data; periods without a row are 0, counted in ``filled``.
    Returns the series (sorted by key) and the data's last period plus one."""
    sums: dict[tuple[str, ...], dict[int, float]] = defaultdict(lambda: defaultdict(float))
    rows: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for s in sales:
        key = tuple(s.model if d == "model" else s.region for d in by)
        sums[key][s.period] += s.units
        rows[key].add(s.period)
    if not sums:
        raise DataError("no sales to forecast")
    end = max(max(p) for p in sums.values()) + 1
    out = []
    for key in sorted(sums):
        per = sums[key]
        start = min(per)
        values = np.zeros(end - start)
        for p, u in per.items():
            values[p - start] = u
        filled = (end - start) - len(rows[key])
        out.append(Series(key, start, values, filled))
    return out, end
