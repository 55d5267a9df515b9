"""Unit conversion into the VSS unit of each signal.

A mapping names the unit its column is recorded in; the value is converted to the unit VSS defines for the
signal (``edge_agent.signals.UNITS``). Converting between units of different quantities is an error.
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
    "mi": ("distance", 1.609344),
    "deg": ("angle", 1.0),
    "rad": ("angle", 180.0 / math.pi),
    "l": ("volume", 1.0),
    "gal": ("volume", 3.785411784),
    "celsius": ("temperature", 1.0),
    "degC": ("temperature", 1.0),
    "V": ("voltage", 1.0),
    "mV": ("voltage", 1e-3),
    "bool": ("boolean", 1.0),
    "1": ("dimensionless", 1.0),
}


class UnitError(ValueError):
    """A unit that is unknown or does not fit the signal."""


def known_units() -> list[str]:
    """Every unit a mapping may name."""
    return sorted(_UNITS)


def vss_unit(signal: str) -> str | None:
    """The unit VSS uses for ``signal``, if this agent knows it."""
    return UNITS.get(signal)


def conversion(from_unit: str, signal: str) -> float:
    """The factor that converts values in ``from_unit`` to ``signal``'s VSS unit."""
    target = vss_unit(signal)
    if from_unit not in _UNITS:
        raise UnitError(f"unknown unit {from_unit!r} for {signal}; known: {', '.join(known_units())}")
    if target is None:
        return 1.0  # a signal without a known VSS unit (features, custom) is passed as recorded
    q_from, f_from = _UNITS[from_unit]
    q_to, f_to = _UNITS[target]
    if q_from != q_to:
        raise UnitError(f"{signal} is in {target} ({q_to}); cannot convert from {from_unit} ({q_from})")
    return f_from / f_to
