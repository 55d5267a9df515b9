"""Timestamps as recorded: epoch or relative, seconds or milliseconds, or ISO 8601 text.

Internally the agent works in epoch seconds; a replay reports events back in the file's own time base.
Relative times are anchored at ``start`` (the mapping's ``[time] start``); without one they are anchored at
1970-01-01T12:00:00Z, so that they convert exactly and night rules see daytime, and the output says
``absolute_time: false``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np

from ..signals import FloatArray

RELATIVE_ANCHOR = 43_200.0  # 1970-01-01T12:00:00Z


class TimeFormat(StrEnum):
    """How a time column is written."""

    AUTO = "auto"
    EPOCH_S = "epoch_s"
    EPOCH_MS = "epoch_ms"
    RELATIVE_S = "relative_s"
    RELATIVE_MS = "relative_ms"
    ISO8601 = "iso8601"


class TimeError(ValueError):
    """Timestamps that cannot be read in the declared or detected format."""


def detect(values: Sequence[str]) -> TimeFormat:
    """Guess the format from the first values: ISO text, then magnitude, then the sampling step.

    Epoch milliseconds are above 1e11 (after 1973), epoch seconds above 1e8 (after 1973); smaller numbers are
    relative, in milliseconds when the typical step is 5 or more (at most 200 Hz), else in seconds. State
    the format in the mapping when a file could be read either way.
    """
    sample = [v.strip() for v in values if v.strip()][:200]
    if not sample:
        raise TimeError("no timestamps to detect the format from")
    try:
        numbers = np.array([float(v) for v in sample])
    except ValueError:
        return TimeFormat.ISO8601
    biggest = float(np.max(np.abs(numbers)))
    if biggest > 1e11:
        return TimeFormat.EPOCH_MS
    if biggest > 1e8:
        return TimeFormat.EPOCH_S
    steps = np.diff(numbers)
    steps = steps[steps > 0]
    step = float(np.median(steps)) if steps.size else 1.0
    return TimeFormat.RELATIVE_MS if step >= 5 else TimeFormat.RELATIVE_S


class TimeBase:
    """Converts one file's timestamps to epoch seconds and back."""

    def __init__(self, fmt: TimeFormat, start: datetime | None = None) -> None:
        if fmt is TimeFormat.AUTO:
            raise ValueError("resolve AUTO with detect() first")
        if start is not None and start.tzinfo is None:
            raise TimeError("[time] start needs a UTC offset, e.g. 2026-11-02T08:00:00+08:00")
        self.format = fmt
        self.relative = fmt in (TimeFormat.RELATIVE_S, TimeFormat.RELATIVE_MS)
        self.absolute = not self.relative or start is not None
        self.anchor = start.timestamp() if start is not None else RELATIVE_ANCHOR

    def to_epoch(self, values: Sequence[str]) -> FloatArray:
        """Epoch seconds of each recorded timestamp; unreadable ones raise :class:`TimeError` with the row."""
        if self.format is TimeFormat.ISO8601:
            out = np.empty(len(values))
            for i, v in enumerate(values):
                try:
                    parsed = datetime.fromisoformat(v.strip())
                except ValueError:
                    raise TimeError(f"row {i}: {v!r} is not an ISO 8601 timestamp") from None
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)  # documented: naive ISO times are UTC
                out[i] = parsed.timestamp()
            return out
        try:
            numbers = np.array([float(v) for v in values], dtype=np.float64)
        except ValueError as exc:
            raise TimeError(f"a timestamp is not a number in {self.format.value}: {exc}") from None
        return self.numbers_to_epoch(numbers)

    def numbers_to_epoch(self, numbers: FloatArray) -> FloatArray:
        """Epoch seconds of numeric timestamps."""
        scale = 1e-3 if self.format in (TimeFormat.EPOCH_MS, TimeFormat.RELATIVE_MS) else 1.0
        offset = self.anchor if self.relative else 0.0
        return np.asarray(numbers * scale + offset, dtype=np.float64)

    def from_epoch(self, t: float) -> float | str:
        """An epoch time written the way the file writes its timestamps."""
        if self.format is TimeFormat.ISO8601:
            return datetime.fromtimestamp(t, UTC).isoformat()
        value = t - (self.anchor if self.relative else 0.0)
        if self.format in (TimeFormat.EPOCH_MS, TimeFormat.RELATIVE_MS):
            return round(value * 1000.0, 3)
        return round(value, 6)
