-- drivesight 0006 (TimescaleDB): telemetry becomes one wide row per (vehicle, time) in a hypertable with
-- daily chunks, compressed after 7 days (segmented by vehicle) and kept for 400 days; 'drivesight cloud db
-- maintain --retention-days N' changes the retention.

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
);
SELECT create_hypertable('telemetry', 'time', chunk_time_interval => INTERVAL '1 day');
CREATE INDEX telemetry_vehicle_time ON telemetry (vehicle_id, time DESC);
ALTER TABLE telemetry SET (
    timescaledb.compress,
    timescaledb.compress_segmentby = 'vehicle_id',
    timescaledb.compress_orderby = 'time DESC'
);
SELECT add_compression_policy('telemetry', INTERVAL '7 days');
SELECT add_retention_policy('telemetry', INTERVAL '400 days');

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
