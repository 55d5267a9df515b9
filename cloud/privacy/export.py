"""Everything held about one person, as one JSON document (``drivesight.export.v1``).

Sections: ``customer`` (the CRM record), ``consent`` (current and the whole history), ``identities``
(online accounts, every identity link and merge, undone ones too), ``interactions``, ``complaints``,
``portrait`` (features, tags, preferences, cluster, segments), ``churn_scores`` (every daily churn score),
``upgrade_scores`` (every daily upgrade score), ``credit_scores`` (every credit score, its reason codes),
``life_events`` (from the CRM), ``leads`` (every dealer lead of theirs, and the leads found to be theirs, each
with its follow-up, assignments and merges),
``vehicles`` (per car: master data and status, purchase, service visits, trips, earlier trip versions,
driving events, fault codes, push feedback, the consent the car reported, telemetry, how many messages the
car sent), ``call_records`` (dealers' call records naming them or holding one of their phones or e-mails,
each with its turns and its latest quality inspection: the records erasure removes, see
:func:`cloud.privacy.erasure.contact_pattern`), ``dead_letters`` (refused payloads that name one of their ids,
payload in base64) and ``erasure_requests``.

Telemetry is bounded, not listed row by row: a car at 1 Hz stores 31 million rows a year. Per car the document
gives the raw rows' count and time span, the newest value of every signal (``telemetry_latest``), and every
hourly and daily rollup row (at the default 1095-day hourly retention, at most 26,280 hourly rows per car).

Values are JSON-ready: times as ISO 8601 with offset, dates as ISO dates, numerics as numbers, bytes as hex.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from . import audit, consent
from .erasure import QA_RECORDS, contact_pattern
from .person import PersonIds, exists, person_ids

FORMAT = "drivesight.export.v1"

Doc = dict[str, Any]


class CustomerNotFound(LookupError):
    """No such customer."""


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _rows(conn: psycopg.Connection[Any], query: str, params: Mapping[str, object]) -> list[Doc]:
    with conn.cursor(row_factory=dict_row) as cur:
        return [_plain(row) for row in cur.execute(query.encode(), params).fetchall()]


def _one(conn: psycopg.Connection[Any], query: str, params: Mapping[str, object]) -> Doc | None:
    rows = _rows(conn, query, params)
    return rows[0] if rows else None


def _vehicle(conn: psycopg.Connection[Any], vehicle_id: str) -> Doc:
    p = {"v": vehicle_id}
    by_vehicle = "FROM {} WHERE vehicle_id = %(v)s"
    span = _one(
        conn,
        "SELECT count(*) AS raw_rows, min(time) AS first, max(time) AS last FROM telemetry"
        " WHERE vehicle_id = %(v)s",
        p,
    )
    ledger = _one(
        conn,
        "SELECT count(*) AS messages, min(sent_at) AS first_sent_at, max(sent_at) AS last_sent_at"
        " FROM ingested_messages WHERE vehicle_id = %(v)s",
        p,
    )
    return {
        "vehicle": _one(conn, "SELECT * " + by_vehicle.format("vehicles"), p),
        "purchase": _one(conn, "SELECT * " + by_vehicle.format("purchases"), p),
        "service_visits": _rows(
            conn, "SELECT * " + by_vehicle.format("service_visits") + " ORDER BY visited_at", p
        ),
        "service_bookings": _rows(
            conn, "SELECT * " + by_vehicle.format("service_bookings") + " ORDER BY booked_at, booking_id", p
        ),
        "trips": _rows(conn, "SELECT * " + by_vehicle.format("trips") + " ORDER BY started_at", p),
        "trip_versions": _rows(
            conn,
            "SELECT trip_id, seq, superseded_at, version "
            + by_vehicle.format("trip_versions")
            + " ORDER BY trip_id, seq",
            p,
        ),
        "driving_events": _rows(
            conn, "SELECT * " + by_vehicle.format("driving_events") + " ORDER BY started_at, seq, idx", p
        ),
        "dtc_reports": _rows(
            conn, "SELECT * " + by_vehicle.format("dtc_reports") + " ORDER BY first_seen, seq, idx", p
        ),
        "push_feedback": _rows(
            conn, "SELECT * " + by_vehicle.format("push_feedback") + " ORDER BY at, seq", p
        ),
        "consent_reported": _rows(
            conn, "SELECT * " + by_vehicle.format("consent_history") + " ORDER BY at", p
        ),
        "telemetry": {
            **(span or {}),
            "latest": _one(conn, "SELECT * " + by_vehicle.format("telemetry_latest"), p),
            "hourly": _rows(conn, "SELECT * " + by_vehicle.format("telemetry_hourly") + " ORDER BY hour", p),
            "daily": _rows(conn, "SELECT * " + by_vehicle.format("telemetry_daily") + " ORDER BY day", p),
        },
        "messages": ledger,
    }


def _dead_letters(conn: psycopg.Connection[Any], ids: Sequence[str]) -> list[Doc]:
    rows = _rows(
        conn,
        "SELECT id, received_at, topic, reason, detail, size_bytes, replayed_at, replay_result, payload"
        " FROM dead_letters d WHERE EXISTS (SELECT 1 FROM unnest(%(ids)s::text[]) i"
        " WHERE strpos(d.topic, i) > 0 OR strpos(d.detail, i) > 0"
        " OR position(convert_to(i, 'UTF8') IN d.payload) > 0) ORDER BY id",
        {"ids": list(ids)},
    )
    for row in rows:  # _plain made the payload hex; base64 is the usual way to carry bytes in JSON
        row["payload_base64"] = base64.b64encode(bytes.fromhex(row.pop("payload"))).decode("ascii")
    return rows


def _call_records(conn: psycopg.Connection[Any], ids: PersonIds) -> list[Doc]:
    """The person's call records (cloud/qa/), each with its inspection (null when not inspected): the same
    records an erasure deletes."""
    params = {
        "c": [ids.customer_id],
        "contacts": contact_pattern(conn, [ids.customer_id], ids.account_ids),
    }
    return _rows(
        conn,
        "SELECT r.record_id, r.dealer_id, r.consultant_id, r.channel, r.started_at, r.language,"
        " r.customer_id, r.turns, r.imported_at,"
        " (SELECT to_jsonb(i) - 'record_id' FROM qa_inspections i WHERE i.record_id = r.record_id)"
        "  AS inspection"
        f" FROM qa_call_records r WHERE r.record_id IN ({QA_RECORDS}) ORDER BY r.started_at, r.record_id",
        params,
    )


def build_export(conn: psycopg.Connection[Any], ids: PersonIds) -> Doc:
    """The export document of the person ``ids`` names (no audit: :func:`export_customer` adds it)."""
    c = {"c": ids.customer_id, "a": list(ids.account_ids), "v": list(ids.vehicle_ids)}
    return {
        "format": FORMAT,
        "generated_at": datetime.now(UTC).isoformat(),
        "customer": _one(conn, "SELECT * FROM customers WHERE customer_id = %(c)s", c),
        "consent": {
            "current": consent.current(conn, ids.customer_id),
            "history": _rows(
                conn,
                "SELECT scope, granted, at, source, key_id, vehicle_id, recorded_at FROM consent_events"
                " WHERE customer_id = %(c)s ORDER BY at, event_id",
                c,
            ),
        },
        "identities": {
            "accounts": _rows(
                conn, "SELECT * FROM online_accounts WHERE account_id = ANY(%(a)s) ORDER BY 1", c
            ),
            "links": _rows(
                conn,
                "SELECT * FROM identity_links WHERE customer_id = %(c)s OR account_id = ANY(%(a)s)"
                " ORDER BY link_id",
                c,
            ),
            "merges": _rows(
                conn, "SELECT * FROM identity_merges WHERE customer_id = %(c)s ORDER BY merge_id", c
            ),
        },
        "interactions": _rows(
            conn,
            "SELECT account_id, item_id, kind, at FROM interactions WHERE account_id = ANY(%(a)s)"
            " ORDER BY at, item_id",
            c,
        ),
        "complaints": _rows(conn, "SELECT * FROM complaints WHERE customer_id = %(c)s ORDER BY opened_at", c),
        "portrait": {
            "features": _one(
                conn, "SELECT features, computed_at FROM customer_features WHERE customer_id = %(c)s", c
            ),
            "tags": _rows(
                conn,
                "SELECT tag, score, evidence, config_version FROM customer_tags WHERE customer_id = %(c)s"
                " ORDER BY tag",
                c,
            ),
            "preferences": _rows(
                conn,
                "SELECT category, score FROM customer_preferences WHERE customer_id = %(c)s"
                " ORDER BY category",
                c,
            ),
            "cluster": _one(
                conn, "SELECT cluster, model_version FROM customer_clusters WHERE customer_id = %(c)s", c
            ),
            "segments": [
                r["segment"]
                for r in _rows(
                    conn, "SELECT segment FROM segment_members WHERE customer_id = %(c)s ORDER BY segment", c
                )
            ],
        },
        "campaigns": {
            # every decision a campaign took for the person (sent, held out, capped ...), with its reason
            "decisions": _rows(
                conn,
                "SELECT * FROM campaign_decisions WHERE customer_id = %(c)s OR vehicle_id = ANY(%(v)s)"
                " ORDER BY decided_at, campaign_id",
                c,
            ),
            "webhook_deliveries": _rows(
                conn,
                "SELECT w.* FROM webhook_deliveries w JOIN campaign_decisions d USING (push_id)"
                " WHERE d.customer_id = %(c)s OR d.vehicle_id = ANY(%(v)s) ORDER BY w.push_id",
                c,
            ),
            "conversions": _rows(
                conn, "SELECT * FROM conversions WHERE customer_id = %(c)s ORDER BY at, item_id", c
            ),
        },
        # every stored daily churn score with its tier and reasons (cloud/churn/)
        "leads": _rows(
            conn,
            "SELECT l.lead_id, l.source, l.channel, l.activity, l.created_at, l.name, l.phone, l.email,"
            " l.city, l.model_interest, l.intent, l.message, l.status, l.status_reason, l.grade, l.score,"
            " l.reasons, l.duplicate_of_lead, l.dealer_id, l.assigned_at, l.first_contact_at, l.raw,"
            " (SELECT coalesce(jsonb_agg(to_jsonb(e) - 'key_id' ORDER BY e.at), '[]') FROM lead_events e"
            "  WHERE e.lead_id = l.lead_id) AS follow_up,"
            " (SELECT coalesce(jsonb_agg(to_jsonb(a) ORDER BY a.assigned_at), '[]') FROM lead_assignments a"
            "  WHERE a.lead_id = l.lead_id) AS assignments,"
            " (SELECT coalesce(jsonb_agg(to_jsonb(m) ORDER BY m.merged_at), '[]') FROM lead_merges m"
            "  WHERE m.lead_id = l.lead_id) AS merges"
            " FROM leads l WHERE l.lead_id IN (WITH RECURSIVE mine(lead_id) AS ("
            "  SELECT lead_id FROM leads WHERE customer_id = %(c)s OR raw->>'customer_id' = %(c)s"
            "  OR vehicle_id IN (SELECT vehicle_id FROM vehicles WHERE customer_id = %(c)s)"
            "  UNION SELECT x.lead_id FROM mine m JOIN leads y ON y.lead_id = m.lead_id"
            "  JOIN leads x ON x.duplicate_of_lead = y.lead_id OR x.lead_id = y.duplicate_of_lead"
            " ) SELECT lead_id FROM mine)"
            " ORDER BY l.created_at, l.lead_id",
            c,
        ),
        # every credit score a scorecard gave them, with its reason codes (financing offers)
        "credit_scores": _rows(
            conn,
            "SELECT scored_at, score, reasons, model, imported_at FROM credit_scores"
            " WHERE customer_id = %(c)s ORDER BY scored_at",
            c,
        ),
        "churn_scores": _rows(
            conn,
            "SELECT day, probability, tier, reasons, model_version, scored_at FROM churn_scores"
            " WHERE customer_id = %(c)s ORDER BY day",
            c,
        ),
        # every stored daily upgrade score with its reasons, and the CRM's life events (cloud/upgrade/)
        "upgrade_scores": _rows(
            conn,
            "SELECT day, probability, reasons, model_version, scored_at FROM upgrade_scores"
            " WHERE customer_id = %(c)s ORDER BY day",
            c,
        ),
        "life_events": _rows(
            conn,
            "SELECT kind, happened_on, source, imported_at FROM life_events WHERE customer_id = %(c)s"
            " ORDER BY happened_on, kind",
            c,
        ),
        # every service reminder decision about the person or their cars, with its reason (cloud/service/)
        "service_reminders": _rows(
            conn,
            "SELECT * FROM service_reminders WHERE customer_id = %(c)s OR vehicle_id = ANY(%(v)s)"
            " ORDER BY decided_at, reminder_id",
            c,
        ),
        "vehicles": [_vehicle(conn, v) for v in ids.vehicle_ids],
        "call_records": _call_records(conn, ids),
        "dead_letters": _dead_letters(conn, [ids.customer_id, *ids.vehicle_ids, *ids.account_ids]),
        "erasure_requests": _rows(
            conn,
            "SELECT request_id, requested_at, expires_at, requested_by FROM erasure_requests"
            " WHERE customer_id = %(c)s ORDER BY request_id",
            c,
        ),
    }


def export_customer(conn: psycopg.Connection[Any], customer_id: str, *, key_id: int | None) -> Doc:
    """Everything held about ``customer_id`` as one JSON-ready document, read and audited in one transaction
    (an unknown customer is audited too, then raises CustomerNotFound)."""
    subject = audit.personal_subject("customer", customer_id)
    document: Doc | None = None
    with conn.transaction():
        if exists(conn, customer_id):
            document = build_export(conn, person_ids(conn, customer_id))
            detail: dict[str, object] = {
                "vehicles": len(document["vehicles"]),
                "trips": sum(len(v["trips"]) for v in document["vehicles"]),
            }
            audit.record(
                conn, key_id=key_id, action="privacy.export", subject=subject, outcome="ok", detail=detail
            )
        else:
            audit.record(conn, key_id=key_id, action="privacy.export", subject=subject, outcome="not_found")
    if document is None:
        raise CustomerNotFound(f"customer {customer_id!r} not found")
    return document
