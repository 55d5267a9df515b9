-- The push engine (cloud/push/): the catalogue grown from content_items, each car's time zone, campaigns, the
-- decision taken for every customer of a campaign, webhook deliveries, and conversions from CRM imports.

-- Catalogue: what can be pushed, to whom, when, and what it costs and earns. Empty target arrays mean every
-- model / region; validity NULL means open-ended.
ALTER TABLE content_items
    ADD COLUMN category             text,
    ADD COLUMN tags                 text[]        NOT NULL DEFAULT '{}',
    ADD COLUMN target_models        text[]        NOT NULL DEFAULT '{}',
    ADD COLUMN target_regions       text[]        NOT NULL DEFAULT '{}',
    ADD COLUMN valid_from           timestamptz,
    ADD COLUMN valid_until          timestamptz,
    ADD COLUMN cost_per_send        numeric(12, 4) NOT NULL DEFAULT 0 CHECK (cost_per_send >= 0),
    ADD COLUMN value_per_conversion numeric(14, 2) NOT NULL DEFAULT 0 CHECK (value_per_conversion >= 0),
    ADD COLUMN body                 text,
    ADD COLUMN url                  text,
    ADD COLUMN updated_at           timestamptz   NOT NULL DEFAULT now(),
    ADD CONSTRAINT content_items_validity CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from);

-- Quiet hours are the car's local hours: an IANA zone name (e.g. Asia/Shanghai), from master data. Unknown
-- (NULL) means a campaign holds the car's pushes instead of guessing.
ALTER TABLE vehicles ADD COLUMN time_zone text;

CREATE TABLE campaigns (
    campaign_id     text        PRIMARY KEY,
    name            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'draft'
                                CHECK (status IN ('draft', 'running', 'paused', 'finished')),
    -- the whole definition as validated (cloud/push/campaigns.py: audience, arms, schedule, rules)
    spec            jsonb       NOT NULL,
    priority        integer     NOT NULL DEFAULT 0,
    starts_at       timestamptz NOT NULL,
    ends_at         timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    created_by_key  bigint,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);

-- One row per campaign and customer: the group the customer fell in (deterministic by hash), the decision
-- and why, and what was sent. Written once per customer: a launch run again finds the row and sends nothing
-- twice. outcome_at columns are filled by feedback from the car (push_feedback) and conversions.
CREATE TABLE campaign_decisions (
    campaign_id   text        NOT NULL REFERENCES campaigns (campaign_id),
    customer_id   text        NOT NULL,
    arm           text        NOT NULL,  -- an arm's name, 'holdout' or 'global_control'
    decision      text        NOT NULL,  -- sent, held, holdout, global_control, capped, quiet_hours, no_consent, ...
    reason        text        NOT NULL,
    item_id       text,
    score         real,
    vehicle_id    text,
    push_id       text        UNIQUE,
    decided_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz,
    expires_at    timestamptz,
    channel       text,
    PRIMARY KEY (campaign_id, customer_id)
);
CREATE INDEX campaign_decisions_customer_sent ON campaign_decisions (customer_id, sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX campaign_decisions_vehicle ON campaign_decisions (vehicle_id) WHERE vehicle_id IS NOT NULL;

-- Webhook deliveries: one row per push sent by webhook, retried with backoff, never sent twice once
-- delivered (the receiver also gets the push id as its idempotency key).
CREATE TABLE webhook_deliveries (
    push_id         text        PRIMARY KEY REFERENCES campaign_decisions (push_id),
    url             text        NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    last_error      text,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';

-- Conversions reported outside the car (a CRM import: the customer bought the item), attributed to a
-- campaign's decision when within its attribution window.
CREATE TABLE conversions (
    customer_id  text        NOT NULL,
    item_id      text        NOT NULL,
    at           timestamptz NOT NULL,
    value        numeric(14, 2),
    source       text        NOT NULL DEFAULT 'import',
    imported_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, item_id, at)
);
