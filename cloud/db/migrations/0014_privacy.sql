-- drivesight 0014: privacy. Consent per person and scope as a history of events (the current consent is
-- derived from it, cloud/privacy/consent.py), fed by what the cars report; two-step erasure requests; and the
-- erasure ledger (keyed hashes only) that is re-applied after a restore (cloud/privacy/erasure.py).

-- every grant and withdrawal, per customer and scope, with when, where from and who recorded it
CREATE TABLE consent_events (
    event_id     bigserial   PRIMARY KEY,
    customer_id  text        NOT NULL REFERENCES customers (customer_id),
    scope        text        NOT NULL CHECK (scope IN ('marketing', 'profiling', 'location', 'rd')),
    granted      boolean     NOT NULL,
    at           timestamptz NOT NULL,   -- when the person decided (a car: the status message's sent_at)
    source       text        NOT NULL CHECK (source IN ('car', 'app', 'dealer', 'import')),
    key_id       bigint,                 -- the API key that recorded it; NULL for cars, imports and the CLI
    vehicle_id   text,                   -- source 'car': the car that reported it
    recorded_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX consent_events_latest ON consent_events (customer_id, scope, at DESC, event_id DESC);
CREATE INDEX consent_events_vehicle ON consent_events (vehicle_id) WHERE vehicle_id IS NOT NULL;

-- the current consent: the latest event per customer and scope (ties: the later recorded); no row = not granted
CREATE VIEW consent_current AS
SELECT DISTINCT ON (customer_id, scope) customer_id, scope, granted, at, source
FROM consent_events
ORDER BY customer_id, scope, at DESC, event_id DESC;

-- What a car reports (consent_history, per vehicle) counts for the customer who owns the car when the report
-- arrives: telemetry -> rd, location -> location, profiling -> profiling (a car has no marketing switch).
-- A scope is recorded when it differs from the last event this car gave this customer for it, so the status
-- every connect repeats adds nothing, and a new owner's first status from the car is recorded in full.
CREATE FUNCTION consent_events_from_car() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    owner text;
BEGIN
    SELECT customer_id INTO owner FROM vehicles WHERE vehicle_id = NEW.vehicle_id;
    IF owner IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO consent_events (customer_id, scope, granted, at, source, vehicle_id)
    SELECT owner, m.scope, m.granted, NEW.at, 'car', NEW.vehicle_id
    FROM (VALUES ('rd', NEW.telemetry), ('location', NEW.location), ('profiling', NEW.profiling))
         AS m (scope, granted)
    WHERE m.granted IS DISTINCT FROM (
        SELECT e.granted FROM consent_events e
        WHERE e.customer_id = owner AND e.scope = m.scope AND e.vehicle_id = NEW.vehicle_id
        ORDER BY e.at DESC, e.event_id DESC LIMIT 1
    );
    RETURN NULL;
END
$$;
CREATE TRIGGER consent_history_feeds_people AFTER INSERT ON consent_history
    FOR EACH ROW EXECUTE FUNCTION consent_events_from_car();

-- consent the cars reported before this migration, for the cars that have an owner: as the trigger would
-- have recorded it (a car's every status repeats its consent; only changes per car and scope become events)
INSERT INTO consent_events (customer_id, scope, granted, at, source, vehicle_id)
SELECT customer_id, scope, granted, at, 'car', vehicle_id
FROM (
    SELECT v.customer_id, m.scope, m.granted, h.at, h.vehicle_id,
           lag(m.granted) OVER (PARTITION BY h.vehicle_id, m.scope ORDER BY h.at) AS before
    FROM consent_history h
    JOIN vehicles v USING (vehicle_id)
    CROSS JOIN LATERAL (VALUES ('rd', h.telemetry), ('location', h.location), ('profiling', h.profiling))
        AS m (scope, granted)
    WHERE v.customer_id IS NOT NULL
) reported
WHERE before IS DISTINCT FROM granted;

-- an erasure is requested, then confirmed with a token (only its SHA-256 is kept) before it expires; once
-- confirmed (or when the customer is gone), the request keeps no customer id
CREATE TABLE erasure_requests (
    request_id     bigserial   PRIMARY KEY,
    customer_id    text        REFERENCES customers (customer_id) ON DELETE SET NULL,
    token_sha256   bytea       NOT NULL,
    requested_at   timestamptz NOT NULL DEFAULT now(),
    requested_by   bigint,                 -- API key id; NULL from the CLI
    expires_at     timestamptz NOT NULL,
    confirmed_at   timestamptz,
    confirmed_by   bigint,
    erasure_id     bigint,                 -- the ledger entry the confirmation made
    rows_erased    jsonb                   -- per table, how many rows went (counts only)
);
CREATE INDEX erasure_requests_customer ON erasure_requests (customer_id) WHERE customer_id IS NOT NULL;

-- what was erased, as HMAC-SHA256 of the ids under the installation's ledger key (no clear id): re-applied
-- after a restore; key_check tells a ledger written under another key apart (it would match nothing)
CREATE TABLE erasure_ledger (
    erasure_id    bigserial   PRIMARY KEY,
    erased_at     timestamptz NOT NULL,
    customer_hash bytea       NOT NULL,
    vehicle_hashes bytea[]    NOT NULL DEFAULT '{}',
    account_hashes bytea[]    NOT NULL DEFAULT '{}',
    key_check     bytea       NOT NULL
);
CREATE UNIQUE INDEX erasure_ledger_customer ON erasure_ledger (customer_hash, erased_at);
