-- drivesight 0010 (plain PostgreSQL): telemetry downsampled per vehicle and hour, a table refreshed with the
-- daily rollup for the days the ingest marked dirty (cloud/db/rollups.py). It outlives raw telemetry.

CREATE TABLE telemetry_hourly (
    vehicle_id     text             NOT NULL,
    hour           timestamptz      NOT NULL,
    rows           bigint           NOT NULL,
    avg_speed_kmh  double precision,
    max_speed_kmh  real,
    distance_km    double precision,
    min_battery_v  real,
    max_coolant_c  real,
    avg_soc_pct    double precision,
    avg_fuel_pct   double precision,
    lat            double precision,   -- the last position in the hour
    lon            double precision,
    PRIMARY KEY (vehicle_id, hour)
);
CREATE INDEX telemetry_hourly_hour ON telemetry_hourly (hour);

-- every day already stored must be downsampled once
INSERT INTO telemetry_daily_dirty (day)
SELECT DISTINCT date_bin('1 day', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') FROM telemetry
ON CONFLICT DO NOTHING;
