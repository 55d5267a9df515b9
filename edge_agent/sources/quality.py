"""Data quality at the source: out-of-order, duplicate and out-of-range samples, gaps — reported, not hidden.

- A sample whose time is not after the newest one passed on is dropped: as a duplicate when the time is
  equal, as out-of-order when it is earlier (a streaming consumer cannot go back in time).
- A value outside its signal's physically plausible range becomes "no sample" (NaN) and is counted.
- A pause between consecutive samples longer than ``gap_s`` is recorded as a gap (start, end).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import signals as vss
from ..signals import FloatArray, SignalBlock

#: Physically plausible range of each VSS signal, in its VSS unit.
PLAUSIBLE: dict[str, tuple[float, float]] = {
    vss.SPEED: (0.0, 400.0),
    vss.ACCEL_LONGITUDINAL: (-40.0, 40.0),
    vss.ACCEL_LATERAL: (-40.0, 40.0),
    vss.YAW_RATE: (-720.0, 720.0),
    vss.ENGINE_SPEED: (0.0, 20_000.0),
    vss.MOTOR_POWER: (-1_000.0, 2_000.0),
    vss.FUEL_LEVEL: (0.0, 100.0),
    vss.STATE_OF_CHARGE: (0.0, 100.0),
    vss.ODOMETER: (0.0, 5_000_000.0),
    vss.LATITUDE: (-90.0, 90.0),
    vss.LONGITUDE: (-180.0, 180.0),
    vss.TANK_CAPACITY: (0.0, 2_000.0),
    vss.COOLANT_TEMPERATURE: (-40.0, 215.0),
    vss.BATTERY_VOLTAGE: (0.0, 60.0),
}

MAX_GAPS_KEPT = 1_000


@dataclass(frozen=True, slots=True)
class Gap:
    """No sample from ``start`` to ``end`` (epoch seconds)."""

    start: float
    end: float


@dataclass(slots=True)
class SourceReport:
    """What a source saw and what it refused."""

    rows: int = 0
    samples: int = 0
    out_of_order: int = 0
    duplicates: int = 0
    out_of_range: dict[str, int] = field(default_factory=dict)
    unparsable: dict[str, int] = field(default_factory=dict)
    gaps: list[Gap] = field(default_factory=list)
    gaps_total: int = 0
    first_t: float | None = None
    last_t: float | None = None
    #: problems of the source's set-up it worked around (e.g. what a lenient DBC load skipped), one line each
    warnings: list[str] = field(default_factory=list)

    def as_dict(self, time_of: Any = float) -> dict[str, Any]:
        """Plain data; ``time_of`` renders epoch seconds (a replay uses the file's own time base)."""
        return {
            "rows": self.rows,
            "samples": self.samples,
            "out_of_order": self.out_of_order,
            "duplicates": self.duplicates,
            "out_of_range": dict(sorted(self.out_of_range.items())),
            "unparsable": dict(sorted(self.unparsable.items())),
            "gaps": [{"start": time_of(g.start), "end": time_of(g.end)} for g in self.gaps],
            "gaps_total": self.gaps_total,
            "first": time_of(self.first_t) if self.first_t is not None else None,
            "last": time_of(self.last_t) if self.last_t is not None else None,
            "warnings": list(self.warnings),
        }


class QualityMonitor:
    """Checks consecutive chunks of one source and builds clean signal blocks."""

    def __init__(self, *, gap_s: float = 2.0, ranges: Mapping[str, tuple[float, float]] = PLAUSIBLE) -> None:
        self.gap_s = gap_s
        self.ranges = ranges
        self.report = SourceReport()
        self._last_t = -np.inf

    def check(
        self, t: FloatArray, columns: Mapping[str, FloatArray], dtcs: tuple[tuple[float, str], ...] = ()
    ) -> SignalBlock:
        """Drop what cannot be passed on, blank implausible values, record gaps; return the clean block."""
        report = self.report
        report.rows += int(t.size)
        running = np.maximum.accumulate(np.concatenate(([self._last_t], t)))[:-1]
        keep = t > running
        dropped = ~keep
        if dropped.any():
            equal = dropped & (t == running)
            report.duplicates += int(np.count_nonzero(equal))
            report.out_of_order += int(np.count_nonzero(dropped & ~equal))
        kept_t = t[keep]
        if kept_t.size:
            previous = np.concatenate(([self._last_t], kept_t[:-1]))
            for i in np.flatnonzero(np.isfinite(previous) & (kept_t - previous > self.gap_s)):
                report.gaps_total += 1
                if len(report.gaps) < MAX_GAPS_KEPT:
                    report.gaps.append(Gap(float(previous[i]), float(kept_t[i])))
            if report.first_t is None:
                report.first_t = float(kept_t[0])
            report.last_t = self._last_t = float(kept_t[-1])
        clean: dict[str, FloatArray] = {}
        for name, column in columns.items():
            values = np.array(column[keep], dtype=np.float64)
            bounds = self.ranges.get(name)
            if bounds is not None:
                with np.errstate(invalid="ignore"):
                    bad = (values < bounds[0]) | (values > bounds[1])
                n_bad = int(np.count_nonzero(bad))
                if n_bad:
                    values[bad] = np.nan
                    report.out_of_range[name] = report.out_of_range.get(name, 0) + n_bad
            clean[name] = values
        report.samples += int(kept_t.size)
        return SignalBlock(kept_t, clean, dtcs)
