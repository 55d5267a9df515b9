-- drivesight 0022: dealer leads (cloud/leads/): captured leads with their cleaning, duplicates, rating and
-- routing; assignments with first-contact deadlines; follow-up events set by dealers; monthly targets; and API
-- keys bound to one dealer (a dealer sees only its own leads).

-- what routing needs to know of a dealer (imported with the dealers: optional columns)
ALTER TABLE dealers
    ADD COLUMN role text NOT NULL DEFAULT 'showroom' CHECK (role IN ('showroom', 'call_centre')),
    ADD COLUMN capacity_per_day integer CHECK (capacity_per_day IS NULL OR capacity_per_day >= 0),
    ADD COLUMN models text[] NOT NULL DEFAULT '{}';

-- a key bound to a dealer may hold the 'dealer' scope only, and a 'dealer' key must be bound
ALTER TABLE api_keys
    ADD COLUMN dealer_id text REFERENCES dealers (dealer_id),
    ADD CONSTRAINT api_keys_dealer_bound CHECK ((dealer_id IS NOT NULL) = ('dealer' = ANY (scopes))),
    ADD CONSTRAINT api_keys_dealer_only CHECK (dealer_id IS NULL OR scopes = ARRAY['dealer']);

-- One row per lead as captured. Contact fields are the cleaned ones (E.164 phone, lower-case e-mail); raw is
-- what the source gave. status follows the funnel; 'duplicate' leads point at the lead or customer they are.
CREATE TABLE leads (
    lead_id            bigserial   PRIMARY KEY,
    source             text        NOT NULL
                                   CHECK (source IN ('form', 'event', 'campaign', 'car', 'upgrade', 'service', 'import')),
    external_id        text,       -- the source's own id: a second capture of it is the same lead
    channel            text        NOT NULL,
    activity           text,
    created_at         timestamptz NOT NULL,
    captured_at        timestamptz NOT NULL DEFAULT now(),
    name               text,
    phone              text,
    email              text,
    city               text,
    region             text,
    model_interest     text,
    intent             text        NOT NULL DEFAULT 'unknown',
    message            text,
    customer_id        text        REFERENCES customers (customer_id) ON DELETE SET NULL,
    vehicle_id         text,
    consent_contact    boolean,
    contactable        boolean     NOT NULL DEFAULT false,
    name_key           text,
    notes              text[]      NOT NULL DEFAULT '{}',
    raw                jsonb       NOT NULL,
    grade              text        CHECK (grade IN ('A', 'B', 'C')),
    score              real,
    reasons            jsonb,
    status             text        NOT NULL DEFAULT 'new'
                                   CHECK (status IN ('new', 'rejected', 'duplicate', 'unassigned', 'assigned',
                                                     'contacted', 'appointment', 'test_drive', 'order', 'lost')),
    status_reason      text,       -- why rejected, unassigned or lost
    duplicate_of_lead  bigint      REFERENCES leads (lead_id),
    dealer_id          text        REFERENCES dealers (dealer_id),
    assigned_at        timestamptz,
    contact_due_at     timestamptz,
    first_contact_at   timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, external_id)
);
CREATE INDEX leads_status ON leads (status, created_at);
CREATE INDEX leads_dealer ON leads (dealer_id, status, lead_id);
CREATE INDEX leads_phone ON leads (phone) WHERE phone IS NOT NULL;
CREATE INDEX leads_email ON leads (email) WHERE email IS NOT NULL;
CREATE INDEX leads_due ON leads (contact_due_at) WHERE status = 'assigned';

-- A merge: a lead found to be the same person as another lead or a known customer (rule and score); undone
-- merges keep their row (undone_at) and the pair is not merged again automatically.
CREATE TABLE lead_merges (
    merge_id     bigserial   PRIMARY KEY,
    lead_id      bigint      NOT NULL REFERENCES leads (lead_id),
    into_lead    bigint      REFERENCES leads (lead_id),
    customer_id  text        REFERENCES customers (customer_id) ON DELETE CASCADE,
    rule         text        NOT NULL,
    score        real        NOT NULL,
    merged_at    timestamptz NOT NULL DEFAULT now(),
    undone_at    timestamptz,
    CHECK ((into_lead IS NULL) <> (customer_id IS NULL))
);
CREATE INDEX lead_merges_lead ON lead_merges (lead_id);

-- Every assignment of a lead to a dealer, with the routing rule that matched and why; ended when the lead
-- was escalated (its first-contact deadline passed) or reassigned.
CREATE TABLE lead_assignments (
    assignment_id  bigserial   PRIMARY KEY,
    lead_id        bigint      NOT NULL REFERENCES leads (lead_id),
    dealer_id      text        NOT NULL REFERENCES dealers (dealer_id),
    rule           text        NOT NULL,
    why            text        NOT NULL,
    assigned_at    timestamptz NOT NULL,
    contact_due_at timestamptz NOT NULL,
    ended_at       timestamptz,
    end_reason     text        CHECK (end_reason IN ('escalated', 'reassigned')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
CREATE INDEX lead_assignments_lead ON lead_assignments (lead_id, assigned_at);
CREATE INDEX lead_assignments_dealer ON lead_assignments (dealer_id, assigned_at);

-- The dealer's webhook per assignment (dealers.webhook_url): the lead posted signed and retried as campaign
-- webhooks are (cloud/push/webhooks.py), the assignment id as the idempotency key; 'sending' until the
-- endpoint took it ('sent') or refused every attempt ('failed'); 'cancelled' when the assignment ended before
-- it went out (the lead is no longer that dealer's to see). Goes with its assignment.
CREATE TABLE lead_webhooks (
    assignment_id   bigint      PRIMARY KEY REFERENCES lead_assignments (assignment_id) ON DELETE CASCADE,
    url             text        NOT NULL,
    outcome         text        NOT NULL DEFAULT 'sending' CHECK (outcome IN ('sending', 'sent', 'failed', 'cancelled')),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    sent_at         timestamptz,
    last_error      text
);
CREATE INDEX lead_webhooks_due ON lead_webhooks (next_attempt_at) WHERE outcome = 'sending';

-- The follow-up: each status a dealer set (or the system: escalated), when, by which key, with a note.
CREATE TABLE lead_events (
    event_id     bigserial   PRIMARY KEY,
    lead_id      bigint      NOT NULL REFERENCES leads (lead_id),
    dealer_id    text,
    status       text        NOT NULL
                             CHECK (status IN ('contacted', 'appointment', 'test_drive', 'order', 'lost', 'escalated',
                                               'reassigned')),
    at           timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    key_id       bigint,
    note         text
);
CREATE INDEX lead_events_lead ON lead_events (lead_id, at);

-- Monthly targets per dealer (import kind "targets"), read against the actuals by the KPIs.
CREATE TABLE dealer_targets (
    dealer_id  text    NOT NULL REFERENCES dealers (dealer_id),
    month      date    NOT NULL CHECK (extract(day FROM month) = 1),
    leads      integer CHECK (leads IS NULL OR leads >= 0),
    contacts   integer CHECK (contacts IS NULL OR contacts >= 0),
    test_drives integer CHECK (test_drives IS NULL OR test_drives >= 0),
    orders     integer CHECK (orders IS NULL OR orders >= 0),
    PRIMARY KEY (dealer_id, month)
);
