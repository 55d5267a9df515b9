"""The telemetry table's columns: which VSS signal goes where (signals without a column go to ``extra``)."""

from __future__ import annotations

from edge_agent.protocol import vss

#: VSS signal -> (column, binary COPY type), in table order after (time, vehicle_id)
COLUMNS: dict[str, tuple[str, str]] = {
    vss.SPEED: ("speed_kmh", "float4"),
    vss.ACCEL_LONGITUDINAL: ("accel_lon", "float4"),
    vss.ACCEL_LATERAL: ("accel_lat", "float4"),
    vss.YAW_RATE: ("yaw_rate", "float4"),
    vss.ENGINE_SPEED: ("engine_rpm", "float4"),
    vss.MOTOR_POWER: ("motor_power_kw", "float4"),
    vss.FUEL_LEVEL: ("fuel_level_pct", "float4"),
    vss.STATE_OF_CHARGE: ("soc_pct", "float4"),
    vss.ODOMETER: ("odometer_km", "float8"),
    vss.LATITUDE: ("lat", "float8"),
    vss.LONGITUDE: ("lon", "float8"),
    vss.COOLANT_TEMPERATURE: ("coolant_c", "float4"),
    vss.BATTERY_VOLTAGE: ("battery_v", "float4"),
}

COPY_COLUMNS: tuple[str, ...] = ("time", "vehicle_id", *(c for c, _t in COLUMNS.values()), "extra")
COPY_TYPES: tuple[str, ...] = ("timestamptz", "text", *(t for _c, t in COLUMNS.values()), "jsonb")
