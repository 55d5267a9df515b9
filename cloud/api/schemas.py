"""What the API returns: its own models, converted from database rows at the edge of each route."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel


class Health(BaseModel):
    """Liveness and database reachability."""

    status: str
    database: str


class TripOut(BaseModel):
    """One stored trip summary."""

    trip_id: str
    started_at: datetime
    ended_at: datetime
    distance_km: float
    duration_s: float
    moving_s: float
    idle_s: float
    max_speed_kmh: float
    avg_speed_kmh: float
    night_share: float
    event_counts: dict[str, int]
    start_lat: float | None
    start_lon: float | None
    end_lat: float | None
    end_lon: float | None
    odometer_km: float | None
    fuel_used_pct: float | None
    soc_used_pct: float | None
    fuel_used_l: float | None
    energy_used_kwh: float | None
    safety_score: float | None
    eco_score: float | None
    feature_usage: dict[str, dict[str, float]]
    dtcs: list[str]
    driving_style: str | None
    driving_style_probabilities: dict[str, float]


class EventOut(BaseModel):
    """One stored driving event; ``peak`` is a magnitude in ``peak_unit``."""

    trip_id: str
    kind: str
    started_at: datetime
    ended_at: datetime
    duration_s: float
    peak: float
    peak_unit: str
    lat: float | None
    lon: float | None


class VehicleOut(BaseModel):
    """A vehicle the cloud has heard from."""

    vehicle_id: str
    first_seen: datetime
    last_seen: datetime
    status: str | None
    agent_version: str | None


class LatestOut(BaseModel):
    """A vehicle's newest value of every signal it has sent, by VSS name, and when its newest row was."""

    vehicle_id: str
    time: datetime
    signals: dict[str, float]


class PortraitOut(BaseModel):
    """A customer's portrait as the analytics job last computed it."""

    customer: dict[str, object]
    features: dict[str, float]
    computed_at: datetime | None
    tags: list[dict[str, object]]
    cluster: int | None
    cluster_description: str | None
    preferences: dict[str, float]
    segments: list[str]


class SegmentOut(BaseModel):
    """A named segment: its expression, how many customers it holds and when it was computed."""

    name: str
    expression: dict[str, object]
    size: int
    computed_at: datetime
