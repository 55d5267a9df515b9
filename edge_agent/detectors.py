"""Streaming threshold detectors for harsh driving events, vectorized over blocks with numpy.

An event is a run of samples whose signal is past a threshold (in the detector's direction) held for at
least ``min_duration_s``. Dips shorter than ``max_gap_s`` inside one manoeuvre do not split it, and a run
that reaches the end of a block stays open until a later block (or the trip's end) closes it, so the
result does not depend on how a source chunks its samples.

Default thresholds follow common telematics practice (insurers and fleet vendors place harsh braking at
0.3-0.45 g, harsh acceleration at 0.3-0.35 g and harsh cornering at 0.4-0.5 g; g = 9.81 m/s^2):
harsh braking <= -3.4 m/s^2, harsh acceleration >= 3.0 m/s^2 and harsh cornering |a_lat| >= 4.0 m/s^2,
each held for at least 0.5 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from . import signals as vss
from .protocol import EventKind
from .signals import FloatArray, SignalBlock


class Direction(IntEnum):
    """Which side of the threshold counts: above, below, or either side by magnitude."""

    ABOVE = 1
    BELOW = -1
    MAGNITUDE = 0


@dataclass(frozen=True, slots=True)
class Threshold:
    """A detector's rule: ``signal`` past ``value`` (a magnitude) in ``direction`` for ``min_duration_s``."""

    kind: EventKind
    signal: str
    value: float
    direction: Direction
    min_duration_s: float = 0.5
    max_gap_s: float = 0.3
    unit: str = "m/s^2"


DEFAULT_THRESHOLDS: tuple[Threshold, ...] = (
    Threshold(EventKind.HARSH_BRAKE, vss.ACCEL_LONGITUDINAL, 3.4, Direction.BELOW),
    Threshold(EventKind.HARSH_ACCEL, vss.ACCEL_LONGITUDINAL, 3.0, Direction.ABOVE),
    Threshold(EventKind.HARSH_CORNER, vss.ACCEL_LATERAL, 4.0, Direction.MAGNITUDE),
)


@dataclass(frozen=True, slots=True)
class DetectedEvent:
    """A closed event: times in the source's epoch seconds, ``peak`` as a magnitude in ``unit``."""

    kind: EventKind
    start: float
    end: float
    peak: float
    unit: str

    @property
    def duration_s(self) -> float:
        """Seconds from the first to the last sample past the threshold."""
        return self.end - self.start


@dataclass(slots=True)
class _OpenRun:
    start: float
    last: float
    peak: float


class RunDetector:
    """Detects one kind of event across consecutive blocks of one trip."""

    def __init__(self, threshold: Threshold) -> None:
        self.threshold = threshold
        self._open: _OpenRun | None = None

    def _signed(self, x: FloatArray) -> FloatArray:
        direction = self.threshold.direction
        if direction is Direction.MAGNITUDE:
            return np.abs(x)
        return x * float(direction)

    def update(self, block: SignalBlock) -> list[DetectedEvent]:
        """Consume one block; return the events that closed within it."""
        column = block.get(self.threshold.signal)
        if column is None or len(block) == 0:
            return []
        thr = self.threshold
        signed = self._signed(column)
        with np.errstate(invalid="ignore"):
            idx = np.flatnonzero(signed >= thr.value)  # NaN compares False: no sample is not an event
        closed: list[DetectedEvent] = []
        if idx.size == 0:
            if self._open is not None and block.t[-1] - self._open.last > thr.max_gap_s:
                closed += self._close()
            return closed
        times = block.t[idx]
        values = signed[idx]
        breaks = np.flatnonzero(np.diff(times) > thr.max_gap_s + 1e-9) + 1
        starts = np.concatenate(([0], breaks))
        ends = np.concatenate((breaks - 1, [idx.size - 1]))
        peaks = np.maximum.reduceat(values, starts)
        runs = [
            _OpenRun(float(times[s]), float(times[e]), float(p))
            for s, e, p in zip(starts, ends, peaks, strict=True)
        ]
        if self._open is not None:
            if runs[0].start - self._open.last <= thr.max_gap_s + 1e-9:
                first = runs[0]
                runs[0] = _OpenRun(self._open.start, first.last, max(self._open.peak, first.peak))
                self._open = None
            else:
                closed += self._close()
        # the last run may continue in the next block unless the block already ran past the gap tolerance
        last = runs[-1]
        if block.t[-1] - last.last <= thr.max_gap_s + 1e-9:
            self._open = runs.pop()
        closed += [e for e in (self._event(r) for r in runs) if e is not None]
        return closed

    def _event(self, run: _OpenRun) -> DetectedEvent | None:
        if run.last - run.start + 1e-9 < self.threshold.min_duration_s:
            return None
        return DetectedEvent(self.threshold.kind, run.start, run.last, run.peak, self.threshold.unit)

    def _close(self) -> list[DetectedEvent]:
        run, self._open = self._open, None
        if run is None:
            return []
        event = self._event(run)
        return [event] if event is not None else []

    def flush(self) -> list[DetectedEvent]:
        """End of trip: close an open run."""
        return self._close()


class EventDetectors:
    """All configured detectors of one trip, fed block by block."""

    def __init__(self, thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS) -> None:
        self.thresholds = thresholds
        self._detectors = [RunDetector(t) for t in thresholds]

    def update(self, block: SignalBlock) -> list[DetectedEvent]:
        """Events that closed in this block, in start order."""
        events = [e for d in self._detectors for e in d.update(block)]
        return sorted(events, key=lambda e: e.start)

    def flush(self) -> list[DetectedEvent]:
        """Close every open run at the end of a trip."""
        events = [e for d in self._detectors for e in d.flush()]
        return sorted(events, key=lambda e: e.start)
