"""Driver personas: how a simulated driver plans trips and how hard they drive.

Rates of injected harsh events are per trip minute; normal driving stays below the edge agent's default
thresholds (see ``edge_agent.detectors.DEFAULT_THRESHOLDS``) by a margin the sensor noise cannot cross, so
that every harsh event the edge detects is one the simulator injected.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PersonaName(StrEnum):
    """The built-in driver personas."""

    CALM_COMMUTER = "calm_commuter"
    AGGRESSIVE = "aggressive"
    NIGHT_DRIVER = "night_driver"
    HIGHWAY = "highway"


@dataclass(frozen=True, slots=True)
class Persona:
    """Parameters of one driving style. Ranges are (low, high) for a uniform draw."""

    name: PersonaName
    trips_per_day: tuple[int, int]
    #: local hours (0-23, may pass midnight as 21..26) at which trips start
    start_hours: tuple[tuple[float, float], ...]
    trip_minutes: tuple[float, float]
    cruise_kmh: tuple[float, float]
    accel_ms2: tuple[float, float]
    decel_ms2: tuple[float, float]
    curve_lateral_ms2: tuple[float, float]
    stops_per_10min: float
    idle_s: tuple[float, float]
    harsh_brake_per_min: float
    harsh_accel_per_min: float
    harsh_corner_per_min: float
    speed_noise_kmh: float = 0.2


PERSONAS: dict[PersonaName, Persona] = {
    PersonaName.CALM_COMMUTER: Persona(
        name=PersonaName.CALM_COMMUTER,
        trips_per_day=(2, 2),
        start_hours=((7.0, 8.5), (17.0, 18.5)),
        trip_minutes=(15, 35),
        cruise_kmh=(35, 70),
        accel_ms2=(0.8, 1.6),
        decel_ms2=(0.8, 1.8),
        curve_lateral_ms2=(0.5, 1.8),
        stops_per_10min=3.0,
        idle_s=(10, 50),
        harsh_brake_per_min=0.01,
        harsh_accel_per_min=0.005,
        harsh_corner_per_min=0.005,
    ),
    PersonaName.AGGRESSIVE: Persona(
        name=PersonaName.AGGRESSIVE,
        trips_per_day=(2, 4),
        start_hours=((8.0, 20.0),),
        trip_minutes=(10, 30),
        cruise_kmh=(50, 95),
        accel_ms2=(1.5, 2.4),
        decel_ms2=(1.5, 2.6),
        curve_lateral_ms2=(1.0, 2.8),
        stops_per_10min=2.5,
        idle_s=(5, 30),
        harsh_brake_per_min=0.12,
        harsh_accel_per_min=0.1,
        harsh_corner_per_min=0.08,
    ),
    PersonaName.NIGHT_DRIVER: Persona(
        name=PersonaName.NIGHT_DRIVER,
        trips_per_day=(1, 3),
        start_hours=((21.0, 26.0),),
        trip_minutes=(15, 45),
        cruise_kmh=(45, 85),
        accel_ms2=(1.0, 2.0),
        decel_ms2=(1.0, 2.2),
        curve_lateral_ms2=(0.8, 2.2),
        stops_per_10min=1.0,
        idle_s=(5, 30),
        harsh_brake_per_min=0.04,
        harsh_accel_per_min=0.03,
        harsh_corner_per_min=0.02,
    ),
    PersonaName.HIGHWAY: Persona(
        name=PersonaName.HIGHWAY,
        trips_per_day=(1, 1),
        start_hours=((9.0, 14.0),),
        trip_minutes=(60, 120),
        cruise_kmh=(100, 130),
        accel_ms2=(0.8, 1.5),
        decel_ms2=(0.8, 1.5),
        curve_lateral_ms2=(0.3, 1.5),
        stops_per_10min=0.2,
        idle_s=(10, 40),
        harsh_brake_per_min=0.01,
        harsh_accel_per_min=0.0,
        harsh_corner_per_min=0.0,
    ),
}
