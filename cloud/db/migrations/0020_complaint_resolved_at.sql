-- drivesight 0020: when a complaint was resolved (CRM import kind "complaints", optional column resolved_at).
-- The churn features of an earlier day (a backtest, a training snapshot) count a complaint as unresolved on
-- that day when it was resolved later; before this column they saw its resolution as it is now. A resolved
-- complaint without a date still counts as resolved on every day (the CRM did not say when).
ALTER TABLE complaints
    ADD COLUMN resolved_at date,
    ADD CONSTRAINT complaints_resolved_at_check
        CHECK (resolved_at IS NULL OR (resolved AND resolved_at >= opened_at));
