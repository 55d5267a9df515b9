"""The VSS signal catalogue both sides share: names (COVESA VSS paths), units and plausible ranges.

Units follow VSS: speed in km/h, accelerations in m/s^2, yaw rate in deg/s, engine speed in rpm, motor power
in kW, levels in percent, odometer in km, positions in WGS84 degrees, temperatures in degrees Celsius.

A plausible range is what the quantity can physically be on a road vehicle, wide enough for noisy sensors
and sensor full scale, never a judgement on driving: a value outside it is a broken sensor, a unit mix-up or
a hostile sender. The cloud drops such samples (``drop_implausible`` in ``edge_agent.protocol.bounds``) and
counts them per signal; a signal outside the catalogue must still be finite and within ``ANY_SIGNAL``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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

VSS_PATH_RE = re.compile(r"^Vehicle(\.[A-Z][A-Za-z0-9]*){1,12}$")
#: the longest signal name the contract accepts
MAX_SIGNAL_NAME = 128


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


@dataclass(frozen=True, slots=True)
class Range:
    """Inclusive bounds of a plausible value, and why they are where they are."""

    low: float
    high: float
    why: str

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high


#: one plausible range per catalogued signal, in its VSS unit
PLAUSIBLE: dict[str, Range] = {
    SPEED: Range(-50, 400, "reverse to the fastest road cars; some CAN senders report reverse as negative"),
    ACCEL_LONGITUDINAL: Range(-100, 100, "about 10 g: beyond a MEMS IMU's +-8 g full scale plus noise"),
    ACCEL_LATERAL: Range(-100, 100, "as longitudinal"),
    YAW_RATE: Range(-500, 500, "a common gyroscope full scale (+-500 deg/s)"),
    ENGINE_SPEED: Range(0, 20_000, "above any production engine's red line"),
    MOTOR_POWER: Range(-1_500, 1_500, "the strongest production EV drives; negative when recuperating"),
    FUEL_LEVEL: Range(0, 100, "a percentage (OBD-II PID 0x2F is 0-100)"),
    STATE_OF_CHARGE: Range(0, 100, "a percentage"),
    ODOMETER: Range(0, 5_000_000, "more than any recorded vehicle's lifetime distance"),
    LATITUDE: Range(-90, 90, "WGS84"),
    LONGITUDE: Range(-180, 180, "WGS84"),
    COOLANT_TEMPERATURE: Range(-40, 215, "OBD-II PID 0x05's range"),
    BATTERY_VOLTAGE: Range(0, 60, "12, 24 and 48 V systems with charging peaks"),
    TANK_CAPACITY: Range(0, 2_000, "litres, up to a truck's tanks"),
}
#: signals outside the catalogue (stored in ``extra``): finite and at most this large in magnitude
ANY_SIGNAL = Range(-1e9, 1e9, "storable as a double and meaningful as a reading")


def plausible_range(signal: str) -> Range:
    """The plausible range of ``signal``: its own if catalogued, else the bound on any signal."""
    return PLAUSIBLE.get(signal, ANY_SIGNAL)
