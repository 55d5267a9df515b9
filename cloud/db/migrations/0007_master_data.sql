-- drivesight 0007: who the cars belong to and where they are sold, and the history of owners' consent.
-- (CRM imports fill these; the ingest knows vehicles only by id.)

CREATE TABLE dealers (
    dealer_id  text PRIMARY KEY,
    name       text NOT NULL,
    region     text,
    city       text
);

CREATE TABLE customers (
    customer_id  text PRIMARY KEY,
    birth_year   integer,
    gender       text,
    region       text,
    city         text,
    income_band  text,
    education    text,
    created_at   timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE vehicles
    ADD COLUMN model        text,
    ADD COLUMN trim_level   text,
    ADD COLUMN model_year   integer,
    ADD COLUMN powertrain   text,
    ADD COLUMN region       text,
    ADD COLUMN customer_id  text REFERENCES customers (customer_id),
    ADD COLUMN dealer_id    text REFERENCES dealers (dealer_id);
CREATE INDEX vehicles_model ON vehicles (model);

-- every consent a car reported, in order: what was allowed when
CREATE TABLE consent_history (
    vehicle_id  text        NOT NULL REFERENCES vehicles (vehicle_id),
    at          timestamptz NOT NULL,
    telemetry   boolean     NOT NULL,
    location    boolean     NOT NULL,
    profiling   boolean     NOT NULL,
    PRIMARY KEY (vehicle_id, at)
);
