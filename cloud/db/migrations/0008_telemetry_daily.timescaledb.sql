-- drivesight 0008 (TimescaleDB): a continuous aggregate per vehicle and day, refreshed hourly by policy
-- over the last three days (late data within that window is counted).

CREATE MATERIALIZED VIEW telemetry_daily WITH (timescaledb.continuous) AS
SELECT vehicle_id, time_bucket(INTERVAL '1 day', time) AS day,
       count(*) AS rows, avg(speed_kmh) AS avg_speed_kmh, max(speed_kmh) AS max_speed_kmh,
       max(odometer_km) - min(odometer_km) AS distance_km, min(battery_v) AS min_battery_v,
       max(coolant_c) AS max_coolant_c
FROM telemetry
GROUP BY vehicle_id, time_bucket(INTERVAL '1 day', time)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_daily',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '1 hour');
-- (no refresh here: it cannot run inside the migration's transaction; the policy and 'maintain' do it)

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
