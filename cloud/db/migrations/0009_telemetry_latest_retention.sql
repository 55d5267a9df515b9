-- drivesight 0009: the newest value of every signal per vehicle (kept by the ingest, so "where is each car
-- now" reads one row per vehicle instead of every partition's index), what retention has cut off per stream,
-- and time indexes that retention deletes by.

-- the same columns as telemetry: time is the newest row seen; every other column its newest value
CREATE TABLE telemetry_latest (LIKE telemetry);
ALTER TABLE telemetry_latest ADD PRIMARY KEY (vehicle_id);

-- carry over what telemetry already holds: each vehicle's newest row
INSERT INTO telemetry_latest SELECT DISTINCT ON (vehicle_id) * FROM telemetry ORDER BY vehicle_id, time DESC;

-- per stream, the time before which retention removed data ('drivesight cloud db maintain'); the rollup
-- refresh must not recompute a day from raw rows that are partly gone
CREATE TABLE retention_cutoffs (
    stream      text        PRIMARY KEY,
    before      timestamptz NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX trips_ended ON trips (ended_at);
CREATE INDEX dtc_reports_first_seen ON dtc_reports (first_seen);
CREATE INDEX push_feedback_at ON push_feedback (at);
CREATE INDEX consent_history_at ON consent_history (at);
CREATE INDEX ingested_messages_received ON ingested_messages (received_at);
