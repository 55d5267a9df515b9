-- drivesight 0003: what drivers did with pushes; the consent and drop counts cars report in their status.

CREATE TABLE push_feedback (
    vehicle_id   text        NOT NULL REFERENCES vehicles (vehicle_id),
    seq          bigint      NOT NULL,
    push_id      text        NOT NULL,
    campaign_id  text,
    action       text        NOT NULL,
    at           timestamptz NOT NULL,
    PRIMARY KEY (vehicle_id, seq)
);
CREATE INDEX push_feedback_push ON push_feedback (push_id, action);
CREATE INDEX push_feedback_campaign ON push_feedback (campaign_id, action) WHERE campaign_id IS NOT NULL;

ALTER TABLE vehicles
    ADD COLUMN consent         jsonb,
    ADD COLUMN consent_at      timestamptz,
    ADD COLUMN outbox_dropped  jsonb NOT NULL DEFAULT '{}';
