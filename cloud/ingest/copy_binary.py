"""PostgreSQL's binary COPY stream for telemetry, built per message with numpy instead of row by row.

A telemetry message is already columnar, so each message becomes one packed numpy record array whose layout
is the COPY binary tuple format (all integers big-endian): a 16-bit field count, then per field a 32-bit
length (-1 for NULL) and the value — timestamptz as microseconds since 2000-01-01, float4/float8 as IEEE,
text as UTF-8. A signal absent from the message is a NULL field of the same layout in every row. Messages
whose columns have gaps (a None among values) or signals without a column are left to the row-by-row path.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np

from cloud.db.telemetry import COLUMNS
from edge_agent.protocol import Message, TelemetryV1

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_FIELDS = 2 + len(COLUMNS) + 1  # time, vehicle_id, the signal columns, extra
_WIDTH = {"float4": ">f4", "float8": ">f8"}


def records(vehicle_id: bytes, start_us: int, t_ms: np.ndarray, columns: dict[str, np.ndarray]) -> bytes:
    """COPY tuples for one vehicle: ``start_us`` is the first time in microseconds since 2000-01-01,
    ``columns`` maps VSS signals (with a telemetry column) to float arrays of the same length as ``t_ms``."""
    n = len(t_ms)
    dtype: list[tuple[str, str]] = [
        ("n", ">i2"), ("t_len", ">i4"), ("t", ">i8"), ("v_len", ">i4"), ("v", f"S{len(vehicle_id)}"),
    ]  # fmt: skip
    for i, (signal, (_column, kind)) in enumerate(COLUMNS.items()):
        dtype.append((f"l{i}", ">i4"))
        if signal in columns:
            dtype.append((f"c{i}", _WIDTH[kind]))
    dtype.append(("x_len", ">i4"))
    out = np.empty(n, dtype=np.dtype(dtype))
    out["n"] = _FIELDS
    out["t_len"] = 8
    out["t"] = start_us + np.asarray(t_ms, dtype=np.int64) * 1000
    out["v_len"] = len(vehicle_id)
    out["v"] = vehicle_id
    for i, (signal, (_column, kind)) in enumerate(COLUMNS.items()):
        array = columns.get(signal)
        out[f"l{i}"] = -1 if array is None else (4 if kind == "float4" else 8)
        if array is not None:
            out[f"c{i}"] = array
    out["x_len"] = -1
    return out.tobytes()


def _record(body: TelemetryV1, vehicle_id: bytes, arrays: dict[str, np.ndarray] | None) -> bytes | None:
    columns: dict[str, np.ndarray] = {}
    for signal, values in body.signals.items():
        # the decoder's plausibility check already made the arrays; convert only when it did not
        column = arrays[signal] if arrays is not None else np.asarray(values, dtype=np.float64)
        # numpy turns None into NaN; the contract admits no NaN, so a NaN here is a gap, which must be stored
        # as NULL: leave the message to the row path
        if np.isnan(column).any():
            return None
        columns[signal] = column
    start_us = (body.t0 - PG_EPOCH) // timedelta(microseconds=1)
    return records(vehicle_id, start_us, np.asarray(body.t_ms, dtype=np.int64), columns)


def copy_stream(messages: Sequence[Message]) -> tuple[bytes, list[Message]]:
    """The binary COPY stream (signature to trailer) of the messages it can encode, and those it left."""
    parts = [SIGNATURE]
    left: list[Message] = []
    for m in messages:
        body = m.body
        assert isinstance(body, TelemetryV1)
        encoded = (
            None if set(body.signals) - COLUMNS.keys() else _record(body, m.vehicle_id.encode(), m.arrays)
        )
        if encoded is None:
            left.append(m)
        else:
            parts.append(encoded)
    parts.append(TRAILER)
    return b"".join(parts), left
