-- drivesight 0018: upgrade intent (cloud/upgrade/). Life events from the CRM (import kind life_events), the
-- fitted upgrade models, and one score per customer and day (probability of buying another car within the
-- horizon, the top reasons with their contributions), kept as a history so that a trend shows.

-- A life event the CRM or the dealer recorded for a customer (a child, a move, a new job, retirement):
-- what may make a car too small, too far or newly affordable. One row per customer, kind and day.
CREATE TABLE life_events (
    customer_id  text        NOT NULL REFERENCES customers (customer_id),
    kind         text        NOT NULL CHECK (kind IN ('new_child', 'married', 'moved', 'new_job', 'retired')),
    happened_on  date        NOT NULL,
    source       text        NOT NULL DEFAULT 'import',
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, kind, happened_on)
);

-- A fitted upgrade model (the same calibrated trees as churn's, pickled by the upgrade job itself and loaded
-- only from here): the days it learnt from, the label's horizon, the features in column order, its figures.
CREATE TABLE upgrade_models (
    version      serial      PRIMARY KEY,
    trained_at   timestamptz NOT NULL DEFAULT now(),
    as_of        date[]      NOT NULL,
    horizon_days integer     NOT NULL,
    features     text[]      NOT NULL,
    metrics      jsonb       NOT NULL,
    model        bytea       NOT NULL
);

-- One row per customer and scoring day. reasons: up to three {"feature", "value", "contribution"} objects,
-- the features that raised this customer's odds of buying again most (log-odds, cloud/upgrade/README.md).
CREATE TABLE upgrade_scores (
    customer_id    text        NOT NULL REFERENCES customers (customer_id),
    day            date        NOT NULL,
    probability    real        NOT NULL CHECK (probability >= 0 AND probability <= 1),
    reasons        jsonb       NOT NULL,
    model_version  integer     NOT NULL REFERENCES upgrade_models (version),
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, day)
);
-- a day's list, likeliest first (keyset pages by probability, then customer)
CREATE INDEX upgrade_scores_list ON upgrade_scores (day, probability DESC, customer_id);
