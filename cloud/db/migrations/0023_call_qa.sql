-- drivesight 0023: call-record quality inspection for dealers (cloud/qa/). The conversations of the
-- dealers' sales consultants with customers (phone, showroom, chat) as transcripts, and each record's latest
-- inspection against its dealer's rules.

-- one row per conversation; re-importing the same record_id replaces it (the export was corrected).
-- Personal data: the customer's words, often their phone number or e-mail. customer_id, when the export names
-- the customer (no foreign key: a call may come before the CRM knows the customer), is how erasure and export
-- find a person's records; records naming no customer are found by the person's phone or e-mail in the turns
-- (cloud/privacy/erasure.py)
CREATE TABLE qa_call_records (
    record_id      text        PRIMARY KEY,
    dealer_id      text        NOT NULL REFERENCES dealers (dealer_id),
    consultant_id  text        NOT NULL,
    channel        text        NOT NULL CHECK (channel IN ('phone', 'showroom', 'chat')),
    started_at     timestamptz NOT NULL,
    language       text        NOT NULL CHECK (language IN ('zh', 'en')),
    customer_id    text        CHECK (customer_id <> ''),
    -- [{"speaker", "start_s", "end_s", "text"}, ...] in start order: read whole, never queried inside
    turns          jsonb       NOT NULL CHECK (jsonb_typeof(turns) = 'array'),
    imported_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX qa_call_records_consultant ON qa_call_records (dealer_id, consultant_id);
CREATE INDEX qa_call_records_customer ON qa_call_records (customer_id) WHERE customer_id IS NOT NULL;

-- the latest inspection of each record: the rule set it was scored with (the rules file's version and the
-- hash of the dealer's effective rules, so scores under different rules can be told apart), the score
-- (0-100), the violations [{"rule", "kind", "message", "turn", "start_s"}] and the steps found {rule: turn}
CREATE TABLE qa_inspections (
    record_id      text        PRIMARY KEY REFERENCES qa_call_records (record_id) ON DELETE CASCADE,
    rules_version  text        NOT NULL,
    rules_hash     text        NOT NULL,
    score          double precision NOT NULL CHECK (score >= 0 AND score <= 100),
    violations     jsonb       NOT NULL CHECK (jsonb_typeof(violations) = 'array'),
    steps          jsonb       NOT NULL CHECK (jsonb_typeof(steps) = 'object'),
    inspected_at   timestamptz NOT NULL
);
