-- drivesight 0002: trip scores, energy, feature usage and fault codes; DTC reports as they arrive.

ALTER TABLE trips
    ADD COLUMN fuel_used_l      double precision,
    ADD COLUMN energy_used_kwh  double precision,
    ADD COLUMN safety_score     real,
    ADD COLUMN eco_score        real,
    ADD COLUMN feature_usage    jsonb  NOT NULL DEFAULT '{}',
    ADD COLUMN dtcs             text[] NOT NULL DEFAULT '{}';

CREATE TABLE dtc_reports (
    vehicle_id  text        NOT NULL REFERENCES vehicles (vehicle_id),
    seq         bigint      NOT NULL,
    idx         integer     NOT NULL,
    code        text        NOT NULL,
    first_seen  timestamptz NOT NULL,
    trip_id     text,
    PRIMARY KEY (vehicle_id, seq, idx)
);
CREATE INDEX dtc_reports_code ON dtc_reports (code, first_seen);
