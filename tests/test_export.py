"""Export: everything held about one person as one JSON document, from every table that can hold a person,
nothing of anyone else, audited."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.privacy import audit, export
from tests.privacy_world import build_world
from tests.test_erasure import TABLES


def _vehicles(doc: dict[str, Any], key: str) -> list[Any]:
    return [v[key] for v in doc["vehicles"]]


def _each(d: dict[str, Any], key: str) -> list[Any]:
    return [row for rows in _vehicles(d, key) for row in rows]


#: where each table that can hold a person shows in the document (a new one must be added here too)
IN_EXPORT: dict[str, Callable[[dict[str, Any]], list[Any]]] = {
    "customers": lambda d: [d["customer"]],
    "vehicles": lambda d: _vehicles(d, "vehicle"),
    "purchases": lambda d: _vehicles(d, "purchase"),
    "service_visits": lambda d: _each(d, "service_visits"),
    "complaints": lambda d: d["complaints"],
    "online_accounts": lambda d: d["identities"]["accounts"],
    "interactions": lambda d: d["interactions"],
    "identity_links": lambda d: d["identities"]["links"],
    "identity_merges": lambda d: d["identities"]["merges"],
    "customer_features": lambda d: [d["portrait"]["features"]],
    "customer_tags": lambda d: d["portrait"]["tags"],
    "customer_preferences": lambda d: d["portrait"]["preferences"],
    "customer_clusters": lambda d: [d["portrait"]["cluster"]],
    "segment_members": lambda d: d["portrait"]["segments"],
    "consent_events": lambda d: d["consent"]["history"],
    "consent_history": lambda d: _each(d, "consent_reported"),
    "trips": lambda d: _each(d, "trips"),
    "trip_versions": lambda d: _each(d, "trip_versions"),
    "driving_events": lambda d: _each(d, "driving_events"),
    "dtc_reports": lambda d: _each(d, "dtc_reports"),
    "push_feedback": lambda d: _each(d, "push_feedback"),
    "telemetry": lambda d: [t["raw_rows"] for t in _vehicles(d, "telemetry") if t["raw_rows"]],
    "telemetry_narrow_v1": lambda d: ["the pre-0006 table: its rows were carried into telemetry by 0006"],
    "telemetry_latest": lambda d: [t["latest"] for t in _vehicles(d, "telemetry")],
    "telemetry_hourly": lambda d: [r for t in _vehicles(d, "telemetry") for r in t["hourly"]],
    "telemetry_daily": lambda d: [r for t in _vehicles(d, "telemetry") for r in t["daily"]],
    "ingested_messages": lambda d: [m["messages"] for m in _vehicles(d, "messages") if m["messages"]],
    "dead_letters": lambda d: d["dead_letters"],
    "erasure_requests": lambda d: d["erasure_requests"],
    "campaign_decisions": lambda d: d["campaigns"]["decisions"],
    "webhook_deliveries": lambda d: d["campaigns"]["webhook_deliveries"],
    "conversions": lambda d: d["campaigns"]["conversions"],
    "service_reminders": lambda d: d["service_reminders"],
    "service_bookings": lambda d: _each(d, "service_bookings"),
    "churn_scores": lambda d: d["churn_scores"],
    "upgrade_scores": lambda d: d["upgrade_scores"],
    "life_events": lambda d: d["life_events"],
    "leads": lambda d: d["leads"],
    "credit_scores": lambda d: d["credit_scores"],
    "lead_events": lambda d: [e for lead in d["leads"] for e in lead["follow_up"]],
    "lead_assignments": lambda d: [a for lead in d["leads"] for a in lead["assignments"]],
    "lead_merges": lambda d: [m for lead in d["leads"] for m in lead["merges"]],
    "qa_call_records": lambda d: d["call_records"],
    "qa_inspections": lambda d: [r["inspection"] for r in d["call_records"]],
}


def test_the_export_holds_everything_of_the_person_and_nothing_of_others(
    fresh_database: str, tmp_path: Path
) -> None:
    a, b = build_world(fresh_database, tmp_path)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        from cloud.privacy import erasure

        erasure.request_erasure(conn, a.customer_id, key_id=1)  # a pending request is held data too
        doc = export.export_customer(conn, a.customer_id, key_id=5)
        text = json.dumps(doc, allow_nan=False)  # one JSON document, nothing that JSON cannot hold
        assert json.loads(text) == doc
        assert doc["format"] == "drivesight.export.v1"
        person_tables = {t for t, how in TABLES.items() if how == "person"}
        assert IN_EXPORT.keys() == person_tables
        missing = [table for table, find in IN_EXPORT.items() if not [x for x in find(doc) if x]]
        assert missing == []
        assert not any(v in text for v in b.identifiers)
        assert doc["customer"]["email"] == a.email and doc["customer"]["customer_id"] == a.customer_id
        assert doc["consent"]["current"]["marketing"] is True
        assert [v["vehicle"]["vehicle_id"] for v in doc["vehicles"]] == sorted(a.vehicle_ids)
        first = doc["vehicles"][0]
        assert [t["distance_km"] for t in first["trips"]] == [5.5]  # the correction is current ...
        assert [v["version"]["distance_km"] for v in first["trip_versions"]] == [5.0]  # ... the first kept
        telemetry = first["telemetry"]
        assert telemetry["raw_rows"] == 60 and len(telemetry["hourly"]) == 2 and len(telemetry["daily"]) == 1
        assert telemetry["first"] < telemetry["last"] and telemetry["latest"]["lat"] == pytest.approx(31.2)
        assert first["messages"]["messages"] == 7
        payloads = [base64.b64decode(d["payload_base64"]) for d in doc["dead_letters"]]
        assert sorted(payloads) == sorted(f'{{"vehicle_id": "{v}"}}'.encode() for v in a.vehicle_ids)
        assert doc["identities"]["accounts"][0]["account_id"] == a.account_id
        assert audit.verify(conn).ok
        rows = conn.execute(
            "SELECT key_id, action, outcome, detail FROM audit_log WHERE action = 'privacy.export'"
        ).fetchall()
        assert rows == [(5, "privacy.export", "ok", '{"trips":2,"vehicles":2}')]


def test_an_unknown_customer_is_not_found_and_audited(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        with pytest.raises(export.CustomerNotFound, match="nobody-here"):
            export.export_customer(conn, "nobody-here", key_id=None)
        row = conn.execute(
            "SELECT outcome FROM audit_log WHERE subject = %s ORDER BY id DESC LIMIT 1",
            (audit.personal_subject("customer", "nobody-here"),),
        ).fetchone()
        assert row == ("not_found",)


def test_the_export_route(fresh_database: str, tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from cloud.access.keys import create_key
    from cloud.api.app import create_app

    a, _b = build_world(fresh_database, tmp_path)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        admin = create_key(conn, name="dpo", scopes=["privacy:admin"]).key
        reader = create_key(conn, name="mk", scopes=["marketing:read"]).key
    with TestClient(create_app(fresh_database)) as api:
        response = api.get(
            f"/v1/privacy/customers/{a.customer_id}/export", headers={"Authorization": f"Bearer {admin}"}
        )
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["customer"]["customer_id"] == a.customer_id and len(doc["vehicles"]) == 2
        unknown = api.get(
            "/v1/privacy/customers/nobody-here/export", headers={"Authorization": f"Bearer {admin}"}
        )
        assert (unknown.status_code, unknown.json()["code"]) == (404, "not_found")
        refused = api.get(
            f"/v1/privacy/customers/{a.customer_id}/export", headers={"Authorization": f"Bearer {reader}"}
        )
        assert refused.status_code == 403
