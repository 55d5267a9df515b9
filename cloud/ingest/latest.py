"""The newest value of every signal per vehicle (``telemetry_latest``), kept by the ingest.

Each batch folds its telemetry messages per vehicle in time order (a later non-empty value wins) and upserts
one row per vehicle. A stored row and an incoming one merge column by column: the newer row's value wins,
and a column the newer row lacks keeps the older value, so a message that arrives late can only fill gaps.
The upsert is the batch transaction's last statement: two workers that share vehicles then hold those rows'
locks only until their commit, in vehicle order, so they neither deadlock nor wait on each other's COPY.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from psycopg.types.json import Jsonb

from cloud.db.telemetry import COLUMNS
from edge_agent.protocol import Message, TelemetryV1

_NAMES = [column for column, _kind in COLUMNS.values()]
_SQL_TYPES = {"float4": "real", "float8": "double precision"}


@dataclass(slots=True)
class Latest:
    """One vehicle's newest row: its time, the newest value per signal column, and the rest as ``extra``."""

    time: datetime
    values: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)


def _last_value(values: list[float | None]) -> float | None:
    for v in reversed(values):
        if v is not None:
            return v
    return None


def fold_latest(messages: Sequence[Message]) -> dict[str, Latest]:
    """Each vehicle's newest time and newest non-empty value per signal over ``messages``."""
    ends = [
        (m.body.t0 + timedelta(milliseconds=m.body.t_ms[-1]), i, m)
        for i, m in enumerate(messages)
        if isinstance(m.body, TelemetryV1)
    ]
    out: dict[str, Latest] = {}
    for end, _i, m in sorted(ends):
        b = m.body
        assert isinstance(b, TelemetryV1)
        latest = out.get(m.vehicle_id)
        if latest is None:
            latest = out[m.vehicle_id] = Latest(end)
        latest.time = end
        for signal, values in b.signals.items():
            value = _last_value(values)
            if value is None:
                continue
            slot = COLUMNS.get(signal)
            if slot is None:
                latest.extra[signal] = value
            else:
                latest.values[slot[0]] = value
    return out


_MERGE = ", ".join(
    f"{c} = CASE WHEN excluded.time >= l.time"
    f" THEN coalesce(excluded.{c}, l.{c}) ELSE coalesce(l.{c}, excluded.{c}) END"
    for c in _NAMES
)
_UPSERT = (
    f"INSERT INTO telemetry_latest AS l (vehicle_id, time, {', '.join(_NAMES)}, extra)"
    " SELECT * FROM unnest(%s::text[], %s::timestamptz[], "
    + ", ".join(f"%s::{_SQL_TYPES[kind]}[]" for _c, kind in COLUMNS.values())
    + ", %s::jsonb[])"
    f" ON CONFLICT (vehicle_id) DO UPDATE SET {_MERGE},"
    " extra = nullif(CASE WHEN excluded.time >= l.time"
    "  THEN coalesce(l.extra, '{}') || coalesce(excluded.extra, '{}')"
    "  ELSE coalesce(excluded.extra, '{}') || coalesce(l.extra, '{}') END, '{}'),"
    " time = greatest(l.time, excluded.time)"
)


def upsert_latest(cur: psycopg.Cursor[tuple[object, ...]], latest: dict[str, Latest]) -> None:
    """Merge each vehicle's newest values into ``telemetry_latest`` (in vehicle order, see the module doc)."""
    if not latest:
        return
    ids = sorted(latest)
    cur.execute(
        _UPSERT,
        (
            ids,
            [latest[v].time for v in ids],
            *([latest[v].values.get(c) for v in ids] for c in _NAMES),
            [Jsonb(latest[v].extra) if latest[v].extra else None for v in ids],
        ),
    )
