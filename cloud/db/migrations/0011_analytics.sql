-- drivesight 0011: data fusion (CRM and online data beside the vehicle data), identity links with a merge
-- history that can be undone, and what the analytics job computes per customer.

-- CRM: who the customers are (identification keys too), what they bought, serviced and complained about
ALTER TABLE customers
    ADD COLUMN name        text,
    ADD COLUMN phone       text,   -- digits only, as normalized on import
    ADD COLUMN email       text,   -- lower case
    ADD COLUMN updated_at  timestamptz NOT NULL DEFAULT now();
CREATE INDEX customers_phone ON customers (phone);
CREATE INDEX customers_email ON customers (email);
CREATE INDEX customers_name_key ON customers (name, birth_year, city);
CREATE INDEX vehicles_customer ON vehicles (customer_id);

CREATE TABLE purchases (
    vehicle_id    text        PRIMARY KEY REFERENCES vehicles (vehicle_id),
    customer_id   text        NOT NULL REFERENCES customers (customer_id),
    dealer_id     text        REFERENCES dealers (dealer_id),
    purchased_at  date        NOT NULL,
    price         numeric(12, 2)
);

CREATE TABLE service_visits (
    visit_id    text        PRIMARY KEY,
    vehicle_id  text        NOT NULL REFERENCES vehicles (vehicle_id),
    dealer_id   text        REFERENCES dealers (dealer_id),
    visited_at  date        NOT NULL,
    kind        text        NOT NULL,
    cost        numeric(12, 2),
    imported_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_visits_vehicle ON service_visits (vehicle_id, visited_at);

CREATE TABLE complaints (
    complaint_id  text    PRIMARY KEY,
    customer_id   text    NOT NULL REFERENCES customers (customer_id),
    opened_at     date    NOT NULL,
    category      text    NOT NULL,
    resolved      boolean NOT NULL,
    imported_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX complaints_customer ON complaints (customer_id);

-- online: accounts on the site and the app, content items with category memberships, interactions
CREATE TABLE online_accounts (
    account_id  text        PRIMARY KEY,
    channel     text        NOT NULL,
    name        text,      -- as typed; matching uses the normalized form below
    name_key    text,      -- lower case, single spaces
    phone       text,      -- digits only
    email       text,      -- lower case
    birth_year  integer,
    city        text,
    imported_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX online_accounts_phone ON online_accounts (phone) WHERE phone IS NOT NULL;
CREATE INDEX online_accounts_email ON online_accounts (email) WHERE email IS NOT NULL;

CREATE TABLE content_items (
    item_id  text PRIMARY KEY,
    kind     text NOT NULL,
    title    text
);
CREATE TABLE item_categories (
    item_id     text NOT NULL REFERENCES content_items (item_id),
    category    text NOT NULL,
    membership  real NOT NULL CHECK (membership > 0 AND membership <= 1),
    PRIMARY KEY (item_id, category)
);

CREATE TABLE interactions (
    account_id  text        NOT NULL REFERENCES online_accounts (account_id),
    item_id     text        NOT NULL REFERENCES content_items (item_id),
    kind        text        NOT NULL,
    at          timestamptz NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX interactions_key ON interactions (account_id, item_id, kind, at);
CREATE INDEX interactions_imported ON interactions (imported_at);

-- identification: every link an online account ever got to a customer, by which rule, in which merge (the
-- accounts one rule joined to one customer in one run); undoing a merge stamps it and its links, so the
-- history stays and the current identity is the unstamped links
CREATE TABLE identity_merges (
    merge_id     bigserial   PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    rule         text        NOT NULL,
    customer_id  text        NOT NULL REFERENCES customers (customer_id),
    links        integer     NOT NULL,
    undone_at    timestamptz
);
CREATE INDEX identity_merges_customer ON identity_merges (customer_id);
CREATE TABLE identity_links (
    link_id      bigserial   PRIMARY KEY,
    account_id   text        NOT NULL REFERENCES online_accounts (account_id),
    customer_id  text        NOT NULL REFERENCES customers (customer_id),
    rule         text        NOT NULL,
    merge_id     bigint      NOT NULL REFERENCES identity_merges (merge_id),
    undone_at    timestamptz
);
CREATE UNIQUE INDEX identity_links_current ON identity_links (account_id) WHERE undone_at IS NULL;
CREATE INDEX identity_links_customer ON identity_links (customer_id) WHERE undone_at IS NULL;

-- when each trip was stored: the analytics job's incremental runs pick up customers with new trips
ALTER TABLE trips ADD COLUMN stored_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX trips_stored ON trips (stored_at);

-- what the analytics job computed per customer
CREATE TABLE customer_features (
    customer_id  text        PRIMARY KEY REFERENCES customers (customer_id),
    features     jsonb       NOT NULL,
    computed_at  timestamptz NOT NULL
);
CREATE TABLE customer_tags (
    customer_id     text        NOT NULL REFERENCES customers (customer_id),
    tag             text        NOT NULL,
    score           real        NOT NULL,
    evidence        jsonb       NOT NULL,
    config_version  integer     NOT NULL,
    PRIMARY KEY (customer_id, tag)
);
CREATE INDEX customer_tags_tag ON customer_tags (tag);
CREATE TABLE customer_preferences (
    customer_id  text NOT NULL REFERENCES customers (customer_id),
    category     text NOT NULL,
    score        real NOT NULL,
    PRIMARY KEY (customer_id, category)
);
CREATE TABLE cluster_models (
    version     serial      PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    model       jsonb       NOT NULL    -- features, scaling, centroids, k and the criterion, descriptions
);
CREATE TABLE customer_clusters (
    customer_id    text    PRIMARY KEY REFERENCES customers (customer_id),
    cluster        integer NOT NULL,
    model_version  integer NOT NULL REFERENCES cluster_models (version)
);
CREATE TABLE segments (
    name         text        PRIMARY KEY,
    expression   jsonb       NOT NULL,
    size         integer     NOT NULL,
    computed_at  timestamptz NOT NULL
);
CREATE TABLE segment_members (
    segment      text NOT NULL REFERENCES segments (name) ON DELETE CASCADE,
    customer_id  text NOT NULL REFERENCES customers (customer_id),
    PRIMARY KEY (segment, customer_id)
);
CREATE TABLE analytics_runs (
    run_id       bigserial   PRIMARY KEY,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    mode         text        NOT NULL,   -- full | incremental
    since        timestamptz,            -- incremental: data stored after this was considered new
    customers    integer,
    config_version integer NOT NULL      -- a run under another version recomputes everyone
);
