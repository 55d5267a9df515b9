-- drivesight 0013: scoped API keys (only a hash of each secret is stored) and a hash-chained, append-only
-- audit log. One file for both dialects: these are small plain tables.

CREATE TABLE api_keys (
    key_id         bigserial   PRIMARY KEY,
    name           text        NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    -- the visible part of the key (ds_<prefix>_<secret>): names the key in logs and listings, finds its row
    prefix         text        NOT NULL UNIQUE,
    secret_sha256  bytea       NOT NULL CHECK (length(secret_sha256) = 32),
    scopes         text[]      NOT NULL CHECK (cardinality(scopes) > 0),
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    revoked_at     timestamptz,
    -- written at most once a minute per key (the API caches verified keys), not on every request
    last_used_at   timestamptz
);

-- The audit log: one row per personal-data read and per write. Row n's hash is
-- sha256(hash of row n-1 || "n" || LF || canonical JSON of its fields), so a changed, inserted or deleted row
-- breaks the chain (`drivesight cloud audit verify`). Appends are serialized by the single head row, locked
-- in the appending transaction; ids are therefore gapless, and the head names the last row so that a
-- truncated tail shows too.
CREATE TABLE audit_log (
    id         bigint      PRIMARY KEY,
    at         timestamptz NOT NULL,
    key_id     bigint,                 -- the API key that acted; NULL for the CLI
    action     text        NOT NULL,
    subject    text,
    outcome    text        NOT NULL,
    detail     text,                   -- canonical JSON, kept as text so that the hashed bytes are the stored ones
    prev_hash  bytea       NOT NULL,
    hash       bytea       NOT NULL
);
CREATE INDEX audit_log_subject ON audit_log (subject);
CREATE INDEX audit_log_at ON audit_log (at);

CREATE TABLE audit_head (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    id    bigint  NOT NULL,
    hash  bytea   NOT NULL
);
INSERT INTO audit_head (one, id, hash) VALUES (true, 0, decode(repeat('00', 32), 'hex'));

-- append-only: the application's role cannot change or remove rows, whatever privileges it was granted
CREATE FUNCTION audit_log_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
-- the head moves forward only, one row at a time, in step with an insert
CREATE FUNCTION audit_head_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE' OR NEW.id <> OLD.id + 1 THEN
        RAISE EXCEPTION 'audit_head only moves forward by one row' USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER audit_head_forward BEFORE UPDATE OR DELETE ON audit_head
    FOR EACH ROW EXECUTE FUNCTION audit_head_forward();
CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;
