"""COVESA VSS signal names the agent understands, and the columnar block sources hand to it.

Units follow VSS: speed in km/h, accelerations in m/s^2, yaw rate in deg/s, engine speed in rpm, motor power
in kW, levels in percent, odometer in km, positions in WGS84 degrees.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

# The catalogue (names, units, plausible ranges) is part of the wire contract; re-exported here for the edge.
from .protocol.vss import (
    ACCEL_LATERAL,
    ACCEL_LONGITUDINAL,
    AIR_CONDITIONING,
    BATTERY_VOLTAGE,
    COOLANT_TEMPERATURE,
    CRUISE_CONTROL,
    ENGINE_SPEED,
    FEATURE_BRANCHES,
    FUEL_LEVEL,
    LANE_DEPARTURE_WARNING,
    LATITUDE,
    LONGITUDE,
    MOTOR_POWER,
    ODOMETER,
    SEAT_HEATING,
    SPEED,
    STATE_OF_CHARGE,
    TANK_CAPACITY,
    UNITS,
    YAW_RATE,
    is_feature,
)

__all__ = [
    "ACCEL_LATERAL", "ACCEL_LONGITUDINAL", "AIR_CONDITIONING", "BATTERY_VOLTAGE", "COOLANT_TEMPERATURE",
    "CRUISE_CONTROL", "ENGINE_SPEED", "FEATURE_BRANCHES", "FUEL_LEVEL", "LANE_DEPARTURE_WARNING", "LATITUDE",
    "LONGITUDE", "MOTOR_POWER", "ODOMETER", "SEAT_HEATING", "SPEED", "STATE_OF_CHARGE", "TANK_CAPACITY",
    "UNITS", "YAW_RATE", "FloatArray", "SignalBlock", "Source", "is_feature", "iter_blocks",
]  # fmt: skip

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SignalBlock:
    """Consecutive samples: ``t`` in epoch seconds (non-decreasing), one float column per VSS signal.

    A NaN in a column means the signal had no sample at that time; a signal that is absent from
    ``signals`` is one the source does not offer at all.
    """

    t: FloatArray
    signals: Mapping[str, FloatArray] = field(default_factory=dict)
    #: diagnostic trouble codes reported in this block: (epoch seconds, code)
    dtcs: tuple[tuple[float, str], ...] = ()

    def __post_init__(self) -> None:
        n = self.t.shape[0]
        for name, column in self.signals.items():
            if column.shape != (n,):
                raise ValueError(f"signal {name} has shape {column.shape}, expected ({n},)")

    def __len__(self) -> int:
        return int(self.t.shape[0])

    def get(self, name: str) -> FloatArray | None:
        """The column of ``name``, or None if the source does not offer it."""
        return self.signals.get(name)

    def slice(self, start: int, stop: int) -> SignalBlock:
        """The samples ``start:stop`` as a new block sharing memory with this one."""
        n = len(self)
        start, stop = max(0, min(start, n)), max(0, min(stop, n))
        dtcs: tuple[tuple[float, str], ...] = ()
        if self.dtcs:
            # each code goes to exactly one slice: [time of first sample, time of the next slice's first)
            lo = -np.inf if start == 0 else self.t[start]
            hi = np.inf if stop >= n else self.t[stop]
            dtcs = tuple(d for d in self.dtcs if lo <= d[0] < hi)
        return SignalBlock(self.t[start:stop], {k: v[start:stop] for k, v in self.signals.items()}, dtcs)


class Source(Protocol):
    """Anything that yields signal blocks in time order: a simulator, a replayed file, a CAN bus."""

    def __iter__(self) -> Iterator[SignalBlock]: ...


def iter_blocks(sources: Iterable[SignalBlock], block_len: int) -> Iterator[SignalBlock]:
    """Re-chunk blocks into pieces of at most ``block_len`` samples (streaming, no copy)."""
    for block in sources:
        for start in range(0, len(block), block_len):
            yield block.slice(start, start + block_len)
