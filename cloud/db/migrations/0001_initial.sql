-- drivesight 0001: vehicles, message ledger, trips, driving events, telemetry, dead letters.
-- Plain PostgreSQL; the TimescaleDB dialect (hypertables, policies) arrives with the fleet-scale storage work.

CREATE TABLE vehicles (
    vehicle_id     text PRIMARY KEY,
    first_seen     timestamptz NOT NULL,
    last_seen      timestamptz NOT NULL,
    status         text,
    status_seq     bigint,
    status_at      timestamptz,
    agent_version  text
);

-- One row per stored uplink message: the exactly-once ledger by (vehicle_id, seq).
CREATE TABLE ingested_messages (
    vehicle_id   text        NOT NULL,
    seq          bigint      NOT NULL,
    schema       text        NOT NULL,
    sent_at      timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (vehicle_id, seq)
);

CREATE TABLE trips (
    vehicle_id     text             NOT NULL REFERENCES vehicles (vehicle_id),
    trip_id        text             NOT NULL,
    seq            bigint           NOT NULL,
    started_at     timestamptz      NOT NULL,
    ended_at       timestamptz      NOT NULL,
    distance_km    double precision NOT NULL,
    duration_s     double precision NOT NULL,
    moving_s       double precision NOT NULL,
    idle_s         double precision NOT NULL,
    max_speed_kmh  double precision NOT NULL,
    avg_speed_kmh  double precision NOT NULL,
    night_share    double precision NOT NULL,
    event_counts   jsonb            NOT NULL DEFAULT '{}',
    start_lat      double precision,
    start_lon      double precision,
    end_lat        double precision,
    end_lon        double precision,
    odometer_km    double precision,
    fuel_used_pct  double precision,
    soc_used_pct   double precision,
    samples        integer          NOT NULL,
    PRIMARY KEY (vehicle_id, trip_id)
);
CREATE INDEX trips_vehicle_started ON trips (vehicle_id, started_at DESC);

CREATE TABLE driving_events (
    vehicle_id  text             NOT NULL REFERENCES vehicles (vehicle_id),
    seq         bigint           NOT NULL,
    idx         integer          NOT NULL,
    trip_id     text             NOT NULL,
    kind        text             NOT NULL,
    started_at  timestamptz      NOT NULL,
    ended_at    timestamptz      NOT NULL,
    peak        double precision NOT NULL,
    peak_unit   text             NOT NULL,
    lat         double precision,
    lon         double precision,
    PRIMARY KEY (vehicle_id, seq, idx)
);
CREATE INDEX driving_events_trip ON driving_events (vehicle_id, trip_id);
CREATE INDEX driving_events_time ON driving_events (started_at);

-- Narrow downsampled telemetry: one row per (vehicle, time, signal).
CREATE TABLE telemetry (
    vehicle_id  text             NOT NULL,
    time        timestamptz      NOT NULL,
    signal      text             NOT NULL,
    value       double precision NOT NULL
);
CREATE INDEX telemetry_vehicle_time ON telemetry (vehicle_id, time DESC);

CREATE TABLE dead_letters (
    id           bigserial   PRIMARY KEY,
    received_at  timestamptz NOT NULL DEFAULT now(),
    topic        text        NOT NULL,
    reason       text        NOT NULL,
    detail       text        NOT NULL,
    payload      bytea       NOT NULL
);
CREATE INDEX dead_letters_received ON dead_letters (received_at);
