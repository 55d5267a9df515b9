-- drivesight 0017: service reminders (cloud/service/). What a workshop visit read on the odometer, where a
-- dealer takes bookings and notifications, bookings from the dealer's CRM, every reminder decision with its
-- reason, and a consent scope for telling the dealer about a customer's car.

-- the odometer the workshop read (km); NULL: not given, estimated from what the car reported before the visit
ALTER TABLE service_visits ADD COLUMN odometer_km double precision CHECK (odometer_km IS NULL OR odometer_km >= 0);

-- a dealer's service booking page (the link a reminder carries) and its endpoint for fault notifications
ALTER TABLE dealers
    ADD COLUMN booking_url text CHECK (booking_url IS NULL OR booking_url ~ '^https?://'),
    ADD COLUMN webhook_url text CHECK (webhook_url IS NULL OR webhook_url ~ '^https?://');

-- the person may let their dealer be told about their car's faults and service needs (cloud/privacy/consent.py)
ALTER TABLE consent_events DROP CONSTRAINT consent_events_scope_check;
ALTER TABLE consent_events ADD CONSTRAINT consent_events_scope_check
    CHECK (scope IN ('marketing', 'profiling', 'location', 'rd', 'dealer_sharing'));

-- service bookings from the dealer's CRM (import kind "bookings"): a booking made after the car became due
-- stops its reminders; a cancelled one does not
CREATE TABLE service_bookings (
    booking_id      text        PRIMARY KEY,
    vehicle_id      text        NOT NULL REFERENCES vehicles (vehicle_id),
    dealer_id       text        REFERENCES dealers (dealer_id),
    booked_at       timestamptz NOT NULL,
    appointment_at  timestamptz,
    status          text        NOT NULL DEFAULT 'booked' CHECK (status IN ('booked', 'cancelled', 'done')),
    imported_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX service_bookings_vehicle ON service_bookings (vehicle_id, booked_at);

-- One row per reminder decision (append-only): which car and customer, why it was due (reason, the fault
-- code), since when (due_at), the episode it belongs to (episode: the service baseline or fault it is about;
-- attempts count within it), the channel (the in-car push or the dealer's webhook) and the outcome with why.
-- A push is 'sending' once decided and committed, 'sent' once the broker acknowledged it (the next run
-- publishes a 'sending' one again under the same push id); a webhook is 'sending' until delivered ('sent')
-- or refused for good ('failed').
CREATE TABLE service_reminders (
    reminder_id     bigserial   PRIMARY KEY,
    customer_id     text        NOT NULL,
    vehicle_id      text        NOT NULL,
    dealer_id       text,
    channel         text        NOT NULL CHECK (channel IN ('push', 'dealer_webhook')),
    reason          text        NOT NULL CHECK (reason IN ('due_by_mileage', 'due_by_time', 'fault_code')),
    fault_code      text,
    episode         text        NOT NULL,
    due_at          timestamptz NOT NULL,
    attempt         integer     NOT NULL CHECK (attempt >= 1),
    outcome         text        NOT NULL
                                CHECK (outcome IN ('sending', 'sent', 'failed', 'suppressed', 'stopped_by_booking')),
    -- for 'suppressed': no_consent, quiet_hours, capped, held (time zone unknown), no_dealer, no_endpoint
    suppressed_by   text,
    why             text        NOT NULL,
    push_id         text        UNIQUE,
    url             text,
    decided_at      timestamptz NOT NULL,
    sent_at         timestamptz,
    expires_at      timestamptz,
    -- the dealer webhook's delivery (cloud/push/webhooks.py signs and posts it)
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz,
    last_error      text,
    CHECK ((outcome = 'suppressed') = (suppressed_by IS NOT NULL)),
    CHECK ((reason = 'fault_code') = (fault_code IS NOT NULL))
);
CREATE INDEX service_reminders_vehicle ON service_reminders (vehicle_id, channel, episode, decided_at);
CREATE INDEX service_reminders_customer ON service_reminders (customer_id, decided_at);
CREATE INDEX service_reminders_due_webhooks ON service_reminders (next_attempt_at)
    WHERE channel = 'dealer_webhook' AND outcome = 'sending';
