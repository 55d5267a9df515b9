-- drivesight 0006 (plain PostgreSQL): telemetry becomes one wide row per (vehicle, time), range-partitioned
-- by day. Partitions are created ahead by the ingest and by 'drivesight cloud db maintain' (cloud/db/
-- partitions.py); the default partition takes whatever arrives outside them, so no row is ever refused, and
-- its rows move into their day's partition when that is created.

ALTER TABLE telemetry RENAME TO telemetry_narrow_v1;
ALTER INDEX telemetry_vehicle_time RENAME TO telemetry_narrow_v1_vehicle_time;

CREATE TABLE telemetry (
    time            timestamptz      NOT NULL,
    vehicle_id      text             NOT NULL,
    speed_kmh       real,
    accel_lon       real,
    accel_lat       real,
    yaw_rate        real,
    engine_rpm      real,
    motor_power_kw  real,
    fuel_level_pct  real,
    soc_pct         real,
    odometer_km     double precision,
    lat             double precision,
    lon             double precision,
    coolant_c       real,
    battery_v       real,
    extra           jsonb            -- signals without a column of their own: {"Vehicle.X.Y": value}
) PARTITION BY RANGE (time);
CREATE INDEX telemetry_vehicle_time ON telemetry (vehicle_id, time DESC);
CREATE TABLE telemetry_default PARTITION OF telemetry DEFAULT;

-- carry over what the narrow table held: one row per (vehicle, time)
INSERT INTO telemetry (time, vehicle_id, speed_kmh, accel_lon, accel_lat, yaw_rate, engine_rpm, motor_power_kw,
                       fuel_level_pct, soc_pct, odometer_km, lat, lon)
SELECT time, vehicle_id,
       max(value) FILTER (WHERE signal = 'Vehicle.Speed'),
       max(value) FILTER (WHERE signal = 'Vehicle.Acceleration.Longitudinal'),
       max(value) FILTER (WHERE signal = 'Vehicle.Acceleration.Lateral'),
       max(value) FILTER (WHERE signal = 'Vehicle.AngularVelocity.Yaw'),
       max(value) FILTER (WHERE signal = 'Vehicle.Powertrain.CombustionEngine.Speed'),
       max(value) FILTER (WHERE signal = 'Vehicle.Powertrain.ElectricMotor.Power'),
       max(value) FILTER (WHERE signal = 'Vehicle.Powertrain.FuelSystem.RelativeLevel'),
       max(value) FILTER (WHERE signal = 'Vehicle.Powertrain.TractionBattery.StateOfCharge.Displayed'),
       max(value) FILTER (WHERE signal = 'Vehicle.TraveledDistance'),
       max(value) FILTER (WHERE signal = 'Vehicle.CurrentLocation.Latitude'),
       max(value) FILTER (WHERE signal = 'Vehicle.CurrentLocation.Longitude')
FROM telemetry_narrow_v1 GROUP BY vehicle_id, time;
