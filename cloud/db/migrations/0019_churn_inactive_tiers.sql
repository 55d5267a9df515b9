-- drivesight 0019: churn tiers for customers who are not active (cloud/churn/run.py): "lapsed", silent (no
-- trip, no service visit) for longer than the label's horizon, gone already; "quiet", silent for longer than
-- active_days but not lapsed. They used to be stored as "high" and crowded out the active customers an in-car
-- retention offer can still reach.
ALTER TABLE churn_scores DROP CONSTRAINT churn_scores_tier_check;
ALTER TABLE churn_scores ADD CONSTRAINT churn_scores_tier_check
    CHECK (tier IN ('lapsed', 'quiet', 'high', 'medium', 'low'));
