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

SPEED = "Vehicle.Speed"
ACCEL_LONGITUDINAL = "Vehicle.Acceleration.Longitudinal"
ACCEL_LATERAL = "Vehicle.Acceleration.Lateral"
YAW_RATE = "Vehicle.AngularVelocity.Yaw"
ENGINE_SPEED = "Vehicle.Powertrain.CombustionEngine.Speed"
MOTOR_POWER = "Vehicle.Powertrain.ElectricMotor.Power"
FUEL_LEVEL = "Vehicle.Powertrain.FuelSystem.RelativeLevel"
STATE_OF_CHARGE = "Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed"
ODOMETER = "Vehicle.TraveledDistance"
LATITUDE = "Vehicle.CurrentLocation.Latitude"
LONGITUDE = "Vehicle.CurrentLocation.Longitude"
COOLANT_TEMPERATURE = "Vehicle.Powertrain.CombustionEngine.ECT"
BATTERY_VOLTAGE = "Vehicle.LowVoltageBattery.CurrentVoltage"
#: fuel tank size in litres, an attribute some sources report
TANK_CAPACITY = "Vehicle.Powertrain.FuelSystem.TankCapacity"

CRUISE_CONTROL = "Vehicle.ADAS.CruiseControl.IsActive"
LANE_DEPARTURE_WARNING = "Vehicle.ADAS.LaneDepartureDetection.IsWarning"
AIR_CONDITIONING = "Vehicle.Cabin.HVAC.IsAirConditioningActive"
SEAT_HEATING = "Vehicle.Cabin.Seat.Row1.DriverSide.HeatingCooling"

#: Branches whose signals count as features: a value above 0 means "on" (booleans arrive as 0/1).
FEATURE_BRANCHES = ("Vehicle.ADAS.", "Vehicle.Cabin.", "Vehicle.Body.Lights.")


def is_feature(name: str) -> bool:
    """Whether a signal describes a feature the driver can switch on (ADAS, cabin comfort, lights)."""
    return name.startswith(FEATURE_BRANCHES)


UNITS: dict[str, str] = {
    SPEED: "km/h",
    ACCEL_LONGITUDINAL: "m/s^2",
    ACCEL_LATERAL: "m/s^2",
    YAW_RATE: "deg/s",
    ENGINE_SPEED: "rpm",
    MOTOR_POWER: "kW",
    FUEL_LEVEL: "%",
    STATE_OF_CHARGE: "%",
    ODOMETER: "km",
    LATITUDE: "deg",
    LONGITUDE: "deg",
    COOLANT_TEMPERATURE: "celsius",
    BATTERY_VOLTAGE: "V",
}

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
