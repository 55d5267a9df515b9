-- drivesight 0010 (TimescaleDB): telemetry downsampled per vehicle and hour as a continuous aggregate,
-- refreshed every 30 minutes over the last three days. It outlives raw telemetry (its own retention policy
-- is set by 'drivesight cloud db maintain').

CREATE MATERIALIZED VIEW telemetry_hourly WITH (timescaledb.continuous) AS
SELECT vehicle_id, time_bucket(INTERVAL '1 hour', time) AS hour,
       count(*) AS rows, avg(speed_kmh) AS avg_speed_kmh, max(speed_kmh) AS max_speed_kmh,
       max(odometer_km) - min(odometer_km) AS distance_km, min(battery_v) AS min_battery_v,
       max(coolant_c) AS max_coolant_c, avg(soc_pct) AS avg_soc_pct, avg(fuel_level_pct) AS avg_fuel_pct,
       last(lat, time) AS lat, last(lon, time) AS lon
FROM telemetry
GROUP BY vehicle_id, time_bucket(INTERVAL '1 hour', time)
WITH NO DATA;
SELECT add_continuous_aggregate_policy('telemetry_hourly',
    start_offset => INTERVAL '3 days', end_offset => INTERVAL '1 hour', schedule_interval => INTERVAL '30 minutes');
-- (no refresh here: it cannot run inside the migration's transaction; the policy and 'maintain' do it)
