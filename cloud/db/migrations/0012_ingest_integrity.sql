-- drivesight 0012: ingest integrity. The ledger keeps each message's digest (a resend under the same
-- (vehicle_id, seq) with other content is a conflict, not a duplicate) and what plausibility checks dropped;
-- dead letters keep a bounded payload with its full size and SHA-256, and what a replay did; trip corrections
-- keep every earlier version; days whose late telemetry arrived after retention are flagged.

ALTER TABLE ingested_messages
    ADD COLUMN digest   bytea,   -- sha256 of the payload; NULL for messages stored before this migration
    ADD COLUMN dropped  jsonb;   -- implausible samples dropped per signal, when any were

ALTER TABLE dead_letters
    ADD COLUMN size_bytes     integer,
    ADD COLUMN sha256         bytea,
    ADD COLUMN replayed_at    timestamptz,
    ADD COLUMN replay_result  text;
UPDATE dead_letters SET size_bytes = length(payload), sha256 = sha256(payload);
UPDATE dead_letters SET payload = substring(payload FROM 1 FOR 65536) WHERE length(payload) > 65536;
ALTER TABLE dead_letters ALTER COLUMN size_bytes SET NOT NULL, ALTER COLUMN sha256 SET NOT NULL;
CREATE INDEX dead_letters_reason ON dead_letters (reason, received_at);

-- trips keeps the version with the highest seq of each (vehicle_id, trip_id); every other version is here
CREATE TABLE trip_versions (
    vehicle_id     text        NOT NULL,
    trip_id        text        NOT NULL,
    seq            bigint      NOT NULL,
    superseded_at  timestamptz NOT NULL DEFAULT now(),
    version        jsonb       NOT NULL,   -- the trips row of that version
    PRIMARY KEY (vehicle_id, trip_id, seq)
);

-- UTC days before the raw-telemetry retention cutoff for which late rows arrived: their rollups were kept
-- as they were (complete) instead of being recomputed from the late rows alone
CREATE TABLE telemetry_late_days (
    day         timestamptz PRIMARY KEY,
    flagged_at  timestamptz NOT NULL DEFAULT now(),
    times       integer     NOT NULL DEFAULT 1
);
