"""Unit conversion into the VSS unit of each signal.

A mapping names the unit its column is recorded in; the value is converted to the unit VSS defines for the
signal (``edge_agent.signals.UNITS``, then :data:`EDGE_UNITS`). Converting between units of different
quantities is an error. Unit names are read case-insensitively and through :data:`UNIT_ALIASES`, the
spellings DBC files and loggers use (``Deg``, ``°``, ``Bar``, ``kph``, ``N.m`` ...).

A signal whose VSS unit neither table knows gets the VSS unit of the recorded unit's quantity: the first
unit of each quantity below (km/h, m/s^2, deg/s, rpm, kW, %, km, deg, l, celsius, V, A, kPa, Nm) is the one
VSS uses, so that a pressure in bar reaches the cloud in kPa whatever the signal is called.
"""

from __future__ import annotations

import math

from ..signals import UNITS

# unit -> (quantity, factor to the quantity's base unit)
_UNITS: dict[str, tuple[str, float]] = {
    "km/h": ("speed", 1.0),
    "m/s": ("speed", 3.6),
    "mph": ("speed", 1.609344),
    "kn": ("speed", 1.852),
    "m/s^2": ("acceleration", 1.0),
    "g": ("acceleration", 9.80665),
    "mg": ("acceleration", 9.80665e-3),
    "ft/s^2": ("acceleration", 0.3048),
    "deg/s": ("angular_velocity", 1.0),
    "rad/s": ("angular_velocity", 180.0 / math.pi),
    "rpm": ("rotation", 1.0),
    "kW": ("power", 1.0),
    "W": ("power", 1e-3),
    "hp": ("power", 0.745699872),
    "%": ("ratio", 1.0),
    "fraction": ("ratio", 100.0),
    "km": ("distance", 1.0),
    "m": ("distance", 1e-3),
    "cm": ("distance", 1e-5),
    "mm": ("distance", 1e-6),
    "mi": ("distance", 1.609344),
    "ft": ("distance", 0.3048e-3),
    "deg": ("angle", 1.0),
    "rad": ("angle", 180.0 / math.pi),
    "l": ("volume", 1.0),
    "ml": ("volume", 1e-3),
    "gal": ("volume", 3.785411784),
    "celsius": ("temperature", 1.0),
    "degC": ("temperature", 1.0),
    "V": ("voltage", 1.0),
    "mV": ("voltage", 1e-3),
    "A": ("current", 1.0),
    "mA": ("current", 1e-3),
    "bool": ("boolean", 1.0),
    "1": ("dimensionless", 1.0),
    "kPa": ("pressure", 1.0),
    "bar": ("pressure", 100.0),
    "mbar": ("pressure", 0.1),
    "hPa": ("pressure", 0.1),
    "Pa": ("pressure", 1e-3),
    "psi": ("pressure", 6.894757293168),
    "MPa": ("pressure", 1000.0),
    "Nm": ("torque", 1.0),
    "cNm": ("torque", 0.01),
    "lbf-ft": ("torque", 1.3558179483314),
}

#: other spellings of the units above (matched case-insensitively, like the units themselves)
UNIT_ALIASES = {
    "kph": "km/h",
    "kmh": "km/h",
    "km/hr": "km/h",
    "m/s²": "m/s^2",
    "m/s2": "m/s^2",
    "m/s/s": "m/s^2",
    "°/s": "deg/s",
    "deg/sec": "deg/s",
    "1/min": "rpm",
    "u/min": "rpm",
    "percent": "%",
    "°": "deg",
    "degree": "deg",
    "degrees": "deg",
    "°c": "celsius",
    "n.m": "Nm",
    "n·m": "Nm",
    "n-m": "Nm",
    "lb-ft": "lbf-ft",
    "volt": "V",
    "deg c": "celsius",
    "m/sec": "m/s",
    "meter": "m",
    "unitless": "1",
    "-": "1",
    # spellings in commaai/opendbc's DBCs (GM, Ford, Honda, Hyundai, Tesla, Cadillac exports)
    "km / h": "km/h",
    "kilometer/hour": "km/h",
    "kmph": "km/h",
    "meters/sec": "m/s",
    "m/s**2": "m/s^2",
    "m/sec^2": "m/s^2",
    "degree/s": "deg/s",
    "degrees/sec": "deg/s",
    "degrees/second": "deg/s",
    "deg/sek": "deg/s",
    "grad/s": "deg/s",  # German "Grad": degrees
    "grad/sec": "deg/s",
    "°grad/s": "deg/s",
    "degré/s": "deg/s",
    "radians/sec": "rad/s",
    "radians/second": "rad/s",
    "degs": "deg",
    "°grad": "deg",
    "radians": "rad",
    "r/min": "rpm",
    "rev/min": "rpm",
    "upm": "rpm",  # German "Umdrehungen pro Minute"
    "umin": "rpm",
    "kilopascal": "kPa",
    "millibar": "mbar",
    "meters": "m",
    "kilometer": "km",
    "millimeter": "mm",
    "feet": "ft",
    "liter": "l",
    "liters": "l",
    "litre": "l",
    "degrees c": "celsius",
    "degreesc": "celsius",
    "cel": "celsius",
    "c": "celsius",  # a bare C in a vehicle DBC is a temperature (Ford's radar, GM), not a charge
    "volts": "V",
    "watts": "W",
    "amps": "A",
    "ampere": "A",
    # Vector's CANdb++ unit names, as in Volkswagen's DBCs
    "unit_none": "1",
    "unit_meter": "m",
    "unit_centimeter": "cm",
    "unit_millimeter": "mm",
    "unit_kilometer": "km",
    "unit_meterpersecond": "m/s",
    "unit_meterpersecon": "m/s",
    "unit_meterpersquaresecond": "m/s^2",
    "unit_forceofgravi": "g",
    "unit_degreofarcpersecon": "deg/s",
    "unit_degreepersecond": "deg/s",
    "unit_degreeofarc": "deg",
    "unit_centinewtometer": "cNm",
    "unit_bar": "bar",
    "unit_millibar": "mbar",
    "unit_watt": "W",
    "unit_kilowatt": "kW",
    "unit_liter": "l",
    "unit_milliliter": "ml",
    "unit_millivolt": "mV",
    "unit_amper": "A",
    "unit_milliamper": "mA",
    "unit_percent": "%",
    "unit_meterperseconsquar": "m/s^2",
    "unit_newtometer": "Nm",
    "unit_minutinver": "rpm",
    "unit_kilometerperhour": "km/h",
    "unit_degrecelsi": "celsius",
    "unit_degreofarc": "deg",
    "unit_volt": "V",
}

#: VSS signals outside the shared catalogue that mappings commonly feed, with their VSS unit ("1": an
#: integer enumeration or count). Kept on the edge: the cloud stores them as recorded (``extra``).
EDGE_UNITS = {
    "Vehicle.Powertrain.Transmission.SelectedGear": "1",
    "Vehicle.Powertrain.Transmission.CurrentGear": "1",
    "Vehicle.Chassis.SteeringWheel.Angle": "deg",
    "Vehicle.Powertrain.CombustionEngine.Torque": "Nm",
    "Vehicle.Powertrain.ElectricMotor.Torque": "Nm",
    "Vehicle.Chassis.Accelerator.PedalPosition": "%",
    "Vehicle.Chassis.Brake.PedalPosition": "%",
}

#: VSS enumerations of integer signals, by name, for value tables (DBC ``VAL_``) mapped by name: VSS 4
#: writes the selected gear as 0 neutral, 1.. forward, -1.. reverse, 126 park, 127 drive
VSS_ENUMS: dict[str, dict[str, int]] = {
    "Vehicle.Powertrain.Transmission.SelectedGear": {"P": 126, "R": -1, "N": 0, "D": 127},
    "Vehicle.Powertrain.Transmission.CurrentGear": {"R": -1, "N": 0},
}

_BY_NAME = {u.lower(): u for u in _UNITS} | {alias.lower(): u for alias, u in UNIT_ALIASES.items()}


class UnitError(ValueError):
    """A unit that is unknown or does not fit the signal."""


def known_units() -> list[str]:
    """Every unit a mapping may name (aliases aside)."""
    return sorted(_UNITS)


def vss_unit(signal: str) -> str | None:
    """The unit VSS uses for ``signal``, if this agent knows it."""
    return (
        UNITS.get(signal) or EDGE_UNITS.get(signal) or ("kPa" if signal.endswith(".Tire.Pressure") else None)
    )


def normalize_unit(unit: str) -> str | None:
    """The unit ``unit`` names (any case, or an alias: ``Deg`` -> ``deg``, ``Bar`` -> ``bar``), or None."""
    return _BY_NAME.get(unit.strip().lower())


def conversion(from_unit: str, signal: str) -> float:
    """The factor that converts values in ``from_unit`` to ``signal``'s VSS unit."""
    target = vss_unit(signal)
    unit = normalize_unit(from_unit)
    if unit is None:
        raise UnitError(f"unknown unit {from_unit!r} for {signal}; known: {', '.join(known_units())}")
    q_from, f_from = _UNITS[unit]
    if target is None:
        # no known VSS unit: features and custom signals as recorded if unitless, else the VSS unit of
        # the quantity (each quantity's base unit is the one VSS uses)
        return f_from
    q_to, f_to = _UNITS[target]
    if q_from != q_to:
        raise UnitError(f"{signal} is in {target} ({q_to}); cannot convert from {from_unit} ({q_from})")
    return f_from / f_to
