-- drivesight 0024: credit scores for financing offers (issue 18). A customer's scores as the scorecard gave
-- them (models/credit_*: points, the reason codes of a low score, which model), kept per scoring time; a
-- catalogue item (a financing or leasing offer) may require a minimum score of the customer's newest one.
-- Scores are personal data: they go with the person's erasure and are in their export.
CREATE TABLE credit_scores (
    customer_id  text        NOT NULL REFERENCES customers (customer_id),
    scored_at    timestamptz NOT NULL,
    score        real        NOT NULL CHECK (score >= 0 AND score <= 1000),
    reasons      text[]      NOT NULL DEFAULT '{}',
    model        text        NOT NULL,
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, scored_at)
);

ALTER TABLE content_items
    ADD COLUMN min_credit_score real CHECK (min_credit_score IS NULL OR min_credit_score BETWEEN 0 AND 1000);
