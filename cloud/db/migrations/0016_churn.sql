-- drivesight 0016: churn early warning (cloud/churn/). The fitted models, and one score per customer and day
-- (probability, tier, the top reasons with their contributions), kept as a history so that a trend shows.

-- A fitted churn model: the gradient-boosted trees and their calibration, pickled by the churn job itself
-- (never loaded from anywhere else), the features in column order, what it was trained on and its held-out
-- figures. Parameters over many customers, no person's row.
CREATE TABLE churn_models (
    version     serial      PRIMARY KEY,
    trained_at  timestamptz NOT NULL DEFAULT now(),
    as_of       date[]      NOT NULL,   -- the days whose features and later churn it learnt from
    horizon_days integer    NOT NULL,   -- the label: churned within this many days after a day
    features    text[]      NOT NULL,
    metrics     jsonb       NOT NULL,
    model       bytea       NOT NULL
);

-- One row per customer and scoring day. reasons: up to three {"feature", "value", "contribution"} objects,
-- the features that raised this customer's risk most (contributions in log-odds, cloud/churn/README.md).
CREATE TABLE churn_scores (
    customer_id    text        NOT NULL REFERENCES customers (customer_id),
    day            date        NOT NULL,
    probability    real        NOT NULL CHECK (probability >= 0 AND probability <= 1),
    tier           text        NOT NULL CHECK (tier IN ('high', 'medium', 'low')),
    reasons        jsonb       NOT NULL,
    model_version  integer     NOT NULL REFERENCES churn_models (version),
    scored_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, day)
);
-- the list of a day's tier, riskiest first (keyset pages by probability, then customer)
CREATE INDEX churn_scores_list ON churn_scores (day, tier, probability DESC, customer_id);
