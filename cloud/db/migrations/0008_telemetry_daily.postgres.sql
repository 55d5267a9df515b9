-- drivesight 0008 (plain PostgreSQL): a daily per-vehicle rollup table, refreshed incrementally by
-- 'drivesight cloud db maintain' (cloud/db/rollups.py) for the days the ingest marked dirty.

CREATE TABLE telemetry_daily (
    vehicle_id     text             NOT NULL,
    day            timestamptz      NOT NULL,
    rows           bigint           NOT NULL,
    avg_speed_kmh  double precision,
    max_speed_kmh  real,
    distance_km    double precision,
    min_battery_v  real,
    max_coolant_c  real,
    PRIMARY KEY (vehicle_id, day)
);
CREATE INDEX telemetry_daily_day ON telemetry_daily (day);

-- per model and day, from the per-vehicle rollup (the same in both dialects)
CREATE VIEW model_daily AS
SELECT d.day, v.model, count(*) AS vehicles, sum(d.rows) AS rows,
       sum(d.avg_speed_kmh * d.rows) / nullif(sum(d.rows), 0) AS avg_speed_kmh,
       max(d.max_speed_kmh) AS max_speed_kmh, sum(d.distance_km) AS distance_km,
       min(d.min_battery_v) AS min_battery_v, max(d.max_coolant_c) AS max_coolant_c
FROM telemetry_daily d JOIN vehicles v USING (vehicle_id)
GROUP BY d.day, v.model;

-- days whose telemetry changed since the rollup last saw them (written by the ingest with the rows;
-- TimescaleDB tracks this itself and leaves the table empty of meaning)
CREATE TABLE telemetry_daily_dirty (day timestamptz PRIMARY KEY);

INSERT INTO telemetry_daily_dirty (day)
SELECT DISTINCT date_bin('1 day', time, TIMESTAMPTZ '2000-01-01 00:00:00+00') FROM telemetry;
