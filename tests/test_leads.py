"""Dealer leads on a real database: a lead file imported line by line, cleaned, deduplicated, rated and routed
by the configured rules; follow-up set by a dealer-bound key (which sees only its own leads), escalation of a
missed first-contact deadline, merges undone, KPIs against targets, the ADF export."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from cloud.analytics.imports import import_file
from cloud.db.migrate import migrate
from cloud.leads.followup import FollowUpError, escalate, set_status
from cloud.leads.imports import read_lead_file
from cloud.leads.pipeline import NO_ROOM, LeadError, capture, process, undo_merge
from cloud.leads.routing import RoutingError, load_routing
from tests.helpers import scratch_database

NOW = datetime(2026, 11, 30, 6, tzinfo=UTC)
ROUTING = load_routing()

DEALERS = """dealer_id,name,region,city,role,capacity_per_day,models
D1,North Motors,north,beijing,showroom,2,DS-SUV;DS-EV
D2,North Calls,north,beijing,call_centre,,
D3,South Motors,south,guangzhou,showroom,5,DS-Compact
D4,North Second,north,beijing,showroom,3,DS-Compact
"""

LEADS = """external_id,source,channel,activity,created_at,name,phone,email,city,region,model_interest,intent,message,customer_id,vehicle_id,consent_contact
F1,form,website,spring-sale,2026-11-30T10:00:00+08:00,Wang Wei,138 1234 5678,wang@qq.com,beijing,north,DS-SUV,test_drive,,,,true
F2,form,website,spring-sale,2026-11-30T11:00:00+08:00,wang wei,+86 13812345678,,beijing,north,DS-SUV,test_drive,,,,true
F3,form,wechat,,2026-11-30T12:00:00+08:00,test,13800000000,,beijing,north,,brochure,,,,
F4,event,autoshow,gz-2026,2026-11-29T12:00:00+08:00,Li Na,13912345678,lina@163.com,guangzhou,south,DS-Compact,quote,,,,true
F5,form,website,,not-a-date,X,1,,,,,,,,,
F6,form,website,,2026-11-30T12:00:00+08:00,Zhao Lei,13712345678,,beijing,north,,newsletter,,,,false
F7,import,purchased_list,,2026-11-30T12:30:00+08:00,Sun Li,13612345678,,beijing,north,,newsletter,,,,true
F8,form,app,,2026-11-30T12:40:00+08:00,Zhou Jie,13512345678,,beijing,north,DS-SUV,quote,,,,true
F9,form,app,,2026-11-30T12:50:00+08:00,Wu Fang,13412345678,,beijing,north,DS-SUV,quote,,,,true
"""  # noqa: E501


@pytest.fixture()
def db(admin_database_url: str, tmp_path: Path) -> Iterator[psycopg.Connection]:
    with scratch_database(admin_database_url, "drivesight_leads") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            (tmp_path / "dealers.csv").write_text(DEALERS, encoding="utf-8")
            import_file(conn, "dealers", tmp_path / "dealers.csv")
            yield conn


def _load(conn: psycopg.Connection, tmp_path: Path) -> None:
    path = tmp_path / "leads.csv"
    path.write_text(LEADS, encoding="utf-8")
    found = read_lead_file(path)
    # the broken line is reported with its number and why; every other line is a lead
    assert [(line, "created_at" in why) for line, why in found.refused] == [(6, True)]
    assert len(found.leads) == 8
    assert capture(conn, found.leads).captured == 8
    assert capture(conn, found.leads).already == 8  # the same file again: nothing twice


def _leads(conn: psycopg.Connection) -> dict[str, tuple]:
    rows = conn.execute(
        "SELECT raw->>'external_id', status, status_reason, phone, grade, dealer_id, duplicate_of_lead,"
        " lead_id FROM leads ORDER BY lead_id"
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def test_leads_are_cleaned_deduplicated_rated_and_routed_by_the_rules(
    db: psycopg.Connection, tmp_path: Path
) -> None:
    _load(db, tmp_path)
    report = process(db, ROUTING, now=NOW)
    leads = _leads(db)
    assert leads["F3"][0] == "rejected" and "junk name" in leads["F3"][1]
    # F2 is F1's person (the same phone written another way): a duplicate, pointing at F1
    assert leads["F2"][0] == "duplicate" and leads["F2"][5] == leads["F1"][6]
    assert leads["F1"][2] == "+8613812345678" and leads["F1"][3] == "A"
    # F6 said no to being contacted: rated, not routed
    assert leads["F6"][:2] == ("unassigned", "the person did not agree to be contacted")
    # the south lead to the south showroom; the north SUV quotes to north showrooms, D1 (sells SUVs) first
    # until its capacity of 2 a day is used, then D4
    assert leads["F4"][4] == "D3"
    north = [leads[k][4] for k in ("F1", "F8", "F9")]
    assert north.count("D1") == 2 and north.count("D4") == 1, north
    # the C lead (a newsletter sign-up from a purchased list) goes to the call centre
    assert leads["F7"][3] == "C" and leads["F7"][4] == "D2"
    assignments = db.execute("SELECT rule, why FROM lead_assignments ORDER BY assignment_id").fetchall()
    assert {r for r, _w in assignments} == {"showroom_in_region", "call_centre_qualifies_c"}
    assert all("candidate" in w for _r, w in assignments)
    assert report.duplicates == 1 and report.rejected == {"test or junk name": 1}
    merges = db.execute("SELECT lead_id, into_lead, rule FROM lead_merges").fetchall()
    assert merges == [(leads["F2"][6], leads["F1"][6], "phone")]


def test_follow_up_moves_forward_only_and_a_missed_deadline_escalates(
    db: psycopg.Connection, tmp_path: Path
) -> None:
    _load(db, tmp_path)
    process(db, ROUTING, now=NOW)
    leads = _leads(db)
    f4, dealer = leads["F4"][6], leads["F4"][4]
    change = set_status(db, f4, dealer, "contacted", at=NOW + timedelta(hours=1), key_id=None)
    assert change.first_contact_at == NOW + timedelta(hours=1)
    set_status(db, f4, dealer, "test_drive", at=NOW + timedelta(days=1), key_id=None, note="Saturday 10:00")
    with pytest.raises(FollowUpError) as backwards:
        set_status(db, f4, dealer, "contacted", at=NOW + timedelta(days=2), key_id=None)
    assert backwards.value.status == 409
    with pytest.raises(FollowUpError) as other:  # another dealer cannot touch it, nor tell it exists
        set_status(db, f4, "D1", "order", at=NOW + timedelta(days=2), key_id=None)
    assert other.value.status == 404
    with pytest.raises(FollowUpError) as reasonless:
        set_status(db, f4, dealer, "lost", at=NOW + timedelta(days=2), key_id=None)
    assert reasonless.value.status == 422
    set_status(db, f4, dealer, "order", at=NOW + timedelta(days=3), key_id=None)
    with pytest.raises(FollowUpError, match="closed"):
        set_status(db, f4, dealer, "lost", at=NOW + timedelta(days=4), key_id=None, lost_reason="price")
    # F1 (an A lead, due in 2 hours) was never contacted: escalated to another north showroom
    f1, first_dealer = leads["F1"][6], leads["F1"][4]
    report = escalate(db, ROUTING, now=NOW + timedelta(hours=3))
    assert report.escalated >= 1
    moved = db.execute("SELECT dealer_id, status FROM leads WHERE lead_id = %s", (f1,)).fetchone()
    assert moved is not None and moved[0] not in (None, first_dealer) and moved[1] == "assigned"
    ended = db.execute(
        "SELECT dealer_id, end_reason FROM lead_assignments WHERE lead_id = %s ORDER BY assignment_id", (f1,)
    ).fetchall()
    assert ended[0] == (first_dealer, "escalated") and ended[1] == (moved[0], None)
    # the contacted lead was not escalated
    assert db.execute("SELECT status FROM leads WHERE lead_id = %s", (f4,)).fetchone() == ("order",)


def test_an_undone_merge_is_not_made_again(db: psycopg.Connection, tmp_path: Path) -> None:
    _load(db, tmp_path)
    process(db, ROUTING, now=NOW)
    leads = _leads(db)
    (merge_id,) = db.execute("SELECT merge_id FROM lead_merges").fetchone() or (None,)
    assert undo_merge(db, int(merge_id), now=NOW + timedelta(minutes=5)) == leads["F2"][6]
    process(db, ROUTING, now=NOW + timedelta(minutes=6))
    again = _leads(db)
    assert again["F2"][0] in ("assigned", "unassigned") and again["F2"][5] is None
    assert db.execute("SELECT count(*) FROM lead_merges WHERE undone_at IS NULL").fetchone() == (0,)


def test_a_routing_file_naming_an_unknown_dealer_or_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "routing.toml"
    path.write_text('version = 1\n[[rules]]\nname = "x"\ndealers = ["D9"]\n', encoding="utf-8")
    config = load_routing(path)
    with pytest.raises(RoutingError, match="unknown dealers: D9"):
        config.check_dealers({"D1", "D2"})
    path.write_text('version = 1\n[[rules]]\nname = "x"\nterritory = "north"\n', encoding="utf-8")
    with pytest.raises(RoutingError, match="territory"):
        load_routing(path)


def test_a_dealer_key_sees_and_moves_only_its_own_leads(db: psycopg.Connection, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    from fastapi.testclient import TestClient

    from cloud.access import InvalidKeyRequest
    from cloud.access.keys import create_key
    from cloud.api.app import create_app

    _load(db, tmp_path)
    process(db, ROUTING, now=datetime.now(UTC))
    leads = _leads(db)
    d1 = create_key(db, name="north motors", scopes=["dealer"], dealer_id="D1")
    d3 = create_key(db, name="south motors", scopes=["dealer"], dealer_id="D3")
    manager = create_key(db, name="lead desk", scopes=["leads:read"])
    marketing = create_key(db, name="marketing", scopes=["marketing:read"])
    admin = create_key(db, name="admin", scopes=["admin"])
    refused = (
        {"scopes": ["dealer"]},
        {"scopes": ["dealer", "leads:read"], "dealer_id": "D1"},
        {"scopes": ["leads:read"], "dealer_id": "D1"},
        {"scopes": ["dealer"], "dealer_id": "D9"},
    )
    for bad in refused:
        with pytest.raises(InvalidKeyRequest):
            create_key(db, name="bad", **bad)  # type: ignore[arg-type]
    url = db.info.dsn
    auth = lambda key: {"Authorization": f"Bearer {key.key}"}  # noqa: E731
    with TestClient(create_app(url)) as api:
        own = api.get("/v1/dealer/leads", headers=auth(d1))
        assert own.status_code == 200, own.text
        mine = {item["lead_id"] for item in own.json()["items"]}
        assert mine == {v[6] for v in leads.values() if v[4] == "D1"} and mine
        south = api.get("/v1/dealer/leads", headers=auth(d3)).json()["items"]
        assert {i["dealer_id"] for i in south} == {"D3"}
        lead = next(iter(mine))
        moved = api.post(f"/v1/dealer/leads/{lead}/status", json={"status": "contacted"}, headers=auth(d1))
        assert moved.status_code == 200 and moved.json()["previous"] == "assigned", moved.text
        # another dealer's lead is indistinguishable from none
        stolen = api.post(f"/v1/dealer/leads/{lead}/status", json={"status": "order"}, headers=auth(d3))
        assert stolen.status_code == 404
        back = api.post(f"/v1/dealer/leads/{lead}/status", json={"status": "contacted"}, headers=auth(d1))
        assert back.status_code == 409
        lost = api.post(f"/v1/dealer/leads/{lead}/status", json={"status": "lost"}, headers=auth(d1))
        assert lost.status_code == 422
        # a dealer key cannot read every lead; marketing cannot read leads; admin has no dealer
        assert api.get("/v1/leads", headers=auth(d1)).status_code == 403
        assert api.get("/v1/leads", headers=auth(marketing)).status_code == 403
        assert api.get("/v1/dealer/leads", headers=auth(admin)).status_code == 403
        everything = api.get("/v1/leads", params={"limit": 3}, headers=auth(manager)).json()
        assert len(everything["items"]) == 3 and everything["next_cursor"]
        kpis = api.get("/v1/dealers/kpis", headers=auth(manager)).json()
        north = next(k for k in kpis if k["dealer_id"] == "D1")
        assert north["assigned"] == len(mine) and north["contacted"] == 1
        assert (
            north["contact_rate"]["ci_low"] < north["contact_rate"]["rate"] < north["contact_rate"]["ci_high"]
        )
        assert api.get("/v1/dealer/kpis", headers=auth(d1)).json()["contacted"] == 1
        adf = api.get("/v1/dealer/leads.adf", headers=auth(d1))
        assert adf.status_code == 200 and adf.headers["content-type"].startswith("application/xml")
        root = ET.fromstring(adf.content)
        ids = {int(p.findtext("id") or 0) for p in root.iter("prospect")}
        assert ids == mine - {lead}  # the assigned ones: the contacted lead is no longer new to the CRM
        assert all(p.findtext("vendor/vendorname") == "North Motors" for p in root.iter("prospect"))
        stats = api.get(
            "/v1/leads/stats", params={"since": "2026-11-01", "until": "2026-12-01"}, headers=auth(manager)
        ).json()
        assert sum(s["captured"] for s in stats) == 8
    audited = db.execute("SELECT action FROM audit_log WHERE key_id = %s", (d1.id,)).fetchall()
    assert ("dealer.leads.list",) in audited and ("dealer.leads.adf",) in audited


def test_a_lead_that_found_no_room_is_routed_when_room_frees_up(
    db: psycopg.Connection, tmp_path: Path
) -> None:
    db.execute("UPDATE dealers SET capacity_per_day = 1 WHERE dealer_id IN ('D1', 'D3', 'D4')")
    _load(db, tmp_path)
    first = process(db, ROUTING, now=NOW)
    waiting = [k for k, v in _leads(db).items() if v[1] == NO_ROOM]
    # four showroom leads (F1, F4, F8, F9) for three showrooms of one lead a day each
    assert first.unassigned.get(NO_ROOM) == 1 and len(waiting) == 1, first
    # the next day: no new lead, but room again
    second = process(db, ROUTING, now=NOW + timedelta(days=1))
    assert second.leads == 0 and second.waiting_assigned == 1
    (lead,) = waiting
    status, _reason, _phone, _grade, dealer, _dup, lead_id = _leads(db)[lead]
    assert status == "assigned" and dealer is not None
    why = db.execute("SELECT why FROM lead_assignments WHERE lead_id = %s", (lead_id,)).fetchone()
    assert why is not None and why[0].startswith("waited for room")


def test_the_commands_import_process_and_report(admin_database_url: str, tmp_path: Path) -> None:
    """What a dealer manager runs from the README: dealers and targets imported, a lead file with a broken
    line imported (exit 0, the line reported), processed, KPIs read, ADF exported; a refused routing file is
    exit 2."""
    import json
    import os
    import subprocess
    import sys
    import xml.etree.ElementTree as ET

    def drivesight(url: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "simulators.cli", "cloud", *args],
            capture_output=True, text=True, timeout=300, env={**os.environ, "DRIVESIGHT_DATABASE_URL": url},
        )  # fmt: skip

    (tmp_path / "dealers.csv").write_text(DEALERS, encoding="utf-8")
    (tmp_path / "targets.csv").write_text("dealer_id,month,leads,orders\nD1,2026-11,40,4\n", encoding="utf-8")
    (tmp_path / "leads.csv").write_text(LEADS, encoding="utf-8")
    (tmp_path / "bad-routing.toml").write_text(
        'version = 1\n[[rules]]\nname = "x"\ndealers = ["D9"]\n', encoding="utf-8"
    )
    with scratch_database(admin_database_url, "drivesight_leads_cli") as url:
        assert drivesight(url, "db", "migrate").returncode == 0
        for kind in ("dealers", "targets"):
            done = drivesight(url, "analytics", "import", kind, str(tmp_path / f"{kind}.csv"))
            assert done.returncode == 0, done.stderr
        imported = drivesight(url, "leads", "import", str(tmp_path / "leads.csv"), "--json")
        assert imported.returncode == 0, imported.stderr
        assert "leads.csv:6:" in imported.stderr  # the broken line, on stderr
        (report,) = json.loads(imported.stdout)["files"].values()
        assert report["captured"] == 8 and [r["line"] for r in report["refused"]] == [6]
        refused = drivesight(url, "leads", "process", "--routing", str(tmp_path / "bad-routing.toml"))
        assert refused.returncode == 2 and "unknown dealers: D9" in refused.stderr and refused.stdout == ""
        processed = drivesight(url, "leads", "process", "--now", "2026-11-30T06:00:00Z", "--json")
        assert processed.returncode == 0, processed.stderr
        # 8 leads: one junk, one duplicate, one who said no to a call; the other five have a dealer
        assert sum(json.loads(processed.stdout)["assigned"].values()) == 5
        kpis = drivesight(url, "leads", "kpis", "--month", "2026-11", "--dealer", "D1", "--json")
        (d1,) = json.loads(kpis.stdout)
        assert d1["assigned"] == 2 and d1["targets"]["orders"] == 4 and d1["attainment"]["leads"] == 0.05
        adf = drivesight(url, "leads", "adf", "--dealer", "D1")
        assert adf.returncode == 0 and len(ET.fromstring(adf.stdout).findall("prospect")) == 2


def test_high_upgrade_intent_becomes_a_lead_once_a_month(db: psycopg.Connection) -> None:
    from cloud.leads.capture import capture_from_system

    for customer, phone in (("C1", "13011112222"), ("C2", "13033334444")):
        db.execute(
            "INSERT INTO customers (customer_id, name, phone, city, region) VALUES (%s, %s, %s, 'beijing',"
            " 'north')",
            (customer, f"Customer {customer}", phone),
        )
    db.execute(
        "INSERT INTO upgrade_models (as_of, horizon_days, features, metrics, model)"
        " VALUES ('{2026-08-01}', 90, '{x}', '{}', '\\x00')"
    )
    for customer, p in (("C1", 0.8), ("C2", 0.2)):
        db.execute(
            "INSERT INTO upgrade_scores (customer_id, day, probability, reasons, model_version)"
            " SELECT %s, '2026-11-29', %s, '[]', max(version) FROM upgrade_models",
            (customer, p),
        )
    first = capture_from_system(db, now=NOW, min_upgrade=0.5)
    assert (first["upgrade_intents"], first["captured"]) == (1, 1)
    assert capture_from_system(db, now=NOW + timedelta(hours=12), min_upgrade=0.5)["captured"] == 0
    assert capture_from_system(db, now=NOW + timedelta(days=1), min_upgrade=0.5)["captured"] == 1  # December
    lead = db.execute("SELECT source, customer_id, phone, intent, message FROM leads").fetchone()
    assert lead is not None and lead[:4] == ("upgrade", "C1", "13011112222", "quote") and "80%" in lead[4]
    with pytest.raises(ValueError, match="min-upgrade"):
        capture_from_system(db, now=NOW, min_upgrade=0)


def test_a_dealer_with_a_webhook_gets_each_lead_signed_once(db: psycopg.Connection, tmp_path: Path) -> None:
    import json

    from cloud.leads.webhooks import deliver
    from cloud.push.webhooks import verify
    from tests.test_webhooks import _Receiver

    receiver = _Receiver([503])  # the first post fails: retried later
    try:
        db.execute("UPDATE dealers SET webhook_url = %s WHERE dealer_id = 'D3'", (receiver.url,))
        _load(db, tmp_path)
        report = process(db, ROUTING, now=NOW)
        assert report.webhooks_queued == 1  # F4, the one lead of D3 (the only dealer with a webhook)
        secret = b"lead-hook-secret"
        assert deliver(db, secret, now=NOW) == (0, 0)  # refused (503): to be tried again
        assert deliver(db, secret, now=NOW) == (0, 0)  # not due yet
        assert deliver(db, secret, now=NOW + timedelta(minutes=5)) == (1, 0)
        assert deliver(db, secret, now=NOW + timedelta(hours=5)) == (0, 0)  # never twice
        headers, body = receiver.requests[-1]
        assert (
            len(receiver.requests) == 2
            and headers["Idempotency-Key"] == receiver.requests[0][0]["Idempotency-Key"]
        )
        stamp = int(headers["X-Drivesight-Timestamp"])
        assert verify(secret, stamp, body, headers["X-Drivesight-Signature"], now=stamp)
        sent = json.loads(body)
        assert (
            sent["kind"] == "lead_assigned"
            and sent["dealer_id"] == "D3"
            and sent["phone"] == "+8613912345678"
        )
        assert sent["rule"] == "showroom_in_region" and sent["due"]
        # escalated to another dealer: that dealer's webhook (none here) or nothing; D3 is not told twice
        escalate(db, ROUTING, now=NOW + timedelta(days=3))
        assert db.execute("SELECT count(*) FROM lead_webhooks").fetchone() == (1,)
    finally:
        receiver.close()


def _lead(db: psycopg.Connection, **fields: object) -> int:
    """A lead row as processing leaves it (for the cases a file cannot reach in one run)."""
    columns = {"source": "form", "channel": "website", "created_at": NOW, "raw": "{}", **fields}
    row = db.execute(
        f"INSERT INTO leads ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
        " RETURNING lead_id",
        list(columns.values()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def test_an_erasure_takes_every_lead_found_to_be_the_person(db: psycopg.Connection) -> None:
    from cloud.privacy import erasure

    db.execute("INSERT INTO customers (customer_id, name, phone) VALUES ('C3', 'Li Na', '13633334444')")
    db.execute("INSERT INTO customers (customer_id, name) VALUES ('C4', 'Zhou Yi')")
    db.execute(
        "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, customer_id)"
        " VALUES ('V3', now(), now(), 'C3')"
    )
    # L names nobody; M names C3 and was found to be L's person (M points at L); a duplicate of M (N)
    first = _lead(db, name="Li Na", phone="+8613633334444", status="assigned", dealer_id="D1")
    named = _lead(db, customer_id="C3", phone="+8613633334444", status="duplicate", duplicate_of_lead=first)
    twin = _lead(db, phone="+8613633334444", status="duplicate", duplicate_of_lead=named)
    # a lead from C3's car, with a duplicate; a rejected lead whose source named C3 (its raw says so)
    car = _lead(db, source="car", vehicle_id="V3", status="assigned", dealer_id="D1")
    car_twin = _lead(db, phone="+8613633334444", status="duplicate", duplicate_of_lead=car)
    rejected = _lead(db, name="test", raw='{"customer_id": "C3"}', status="rejected")
    other = _lead(db, customer_id="C4", name="Zhou Yi", status="assigned", dealer_id="D1")
    db.execute(
        "INSERT INTO lead_assignments (lead_id, dealer_id, rule, why, assigned_at, contact_due_at)"
        " VALUES (%s, 'D1', 'x', 'y', now(), now())",
        (first,),
    )
    db.execute(
        "INSERT INTO lead_merges (lead_id, into_lead, rule, score) VALUES (%s, %s, 'phone', 1)",
        (named, first),
    )
    request = erasure.request_erasure(db, "C3", key_id=None)
    erasure.confirm_erasure(db, request.request_id, request.token, key_id=None, ledger_key=b"k" * 32)
    left = {int(r[0]) for r in db.execute("SELECT lead_id FROM leads")}
    assert left == {other}, {first, named, twin, car, car_twin, rejected} & left
    assert db.execute("SELECT count(*) FROM lead_merges").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM lead_assignments").fetchone() == (0,)


def test_an_undone_customer_merge_is_not_made_again(db: psycopg.Connection, tmp_path: Path) -> None:
    # Wang Wei (F1's phone) is a known customer: F1 is linked to them, F2 is F1's duplicate
    db.execute("INSERT INTO customers (customer_id, name, phone) VALUES ('C1', 'Wang Wei', '13812345678')")
    _load(db, tmp_path)
    process(db, ROUTING, now=NOW)
    leads = _leads(db)
    f1 = leads["F1"][6]
    merge = db.execute(
        "SELECT merge_id FROM lead_merges WHERE lead_id = %s AND customer_id = 'C1'", (f1,)
    ).fetchone()
    assert merge is not None and db.execute(
        "SELECT customer_id FROM leads WHERE lead_id = %s", (f1,)
    ).fetchone() == ("C1",)
    undo_merge(db, int(merge[0]), now=NOW + timedelta(minutes=1))
    process(db, ROUTING, now=NOW + timedelta(minutes=2))
    assert db.execute("SELECT customer_id, status FROM leads WHERE lead_id = %s", (f1,)).fetchone() == (
        None,
        "assigned",
    )
    assert db.execute(
        "SELECT count(*) FROM lead_merges WHERE lead_id = %s AND customer_id = 'C1' AND undone_at IS NULL",
        (f1,),
    ).fetchone() == (0,)
    # a lead a dealer has worked keeps its merges
    (f2_merge,) = db.execute(
        "SELECT merge_id FROM lead_merges WHERE lead_id = %s AND undone_at IS NULL", (leads["F2"][6],)
    ).fetchone() or (None,)
    dealer = db.execute("SELECT dealer_id FROM leads WHERE lead_id = %s", (f1,)).fetchone()
    assert dealer is not None
    set_status(db, f1, str(dealer[0]), "contacted", at=NOW + timedelta(minutes=3), key_id=None)
    assert f2_merge is not None
    db.execute("UPDATE leads SET status = 'contacted' WHERE lead_id = %s", (leads["F2"][6],))
    with pytest.raises(LeadError, match="a dealer worked it"):
        undo_merge(db, int(f2_merge), now=NOW + timedelta(minutes=4))


def test_a_withdrawn_consent_stops_a_reroute_and_a_stale_webhook_is_never_posted(
    db: psycopg.Connection,
) -> None:
    from cloud.leads.webhooks import deliver
    from cloud.privacy import consent
    from tests.test_webhooks import _Receiver

    receiver = _Receiver([503])
    try:
        db.execute("UPDATE dealers SET webhook_url = %s WHERE dealer_id = 'D1'", (receiver.url,))
        db.execute(
            "INSERT INTO customers (customer_id, name, phone, region)"
            " VALUES ('C5', 'Qian Bo', '13755556666', 'north')"
        )
        consent.record(db, "C5", "dealer_sharing", True, "app")
        from cloud.leads.model import RawLead

        raw = RawLead(
            source="upgrade", channel="score", created_at=NOW - timedelta(hours=1), external_id="upgrade:C5",
            name="Qian Bo", phone="13755556666", region="north", intent="quote", customer_id="C5",
            model_interest="DS-SUV",
        )  # fmt: skip
        capture(db, [raw])
        process(db, ROUTING, now=NOW)
        lead, dealer = db.execute(
            "SELECT lead_id, dealer_id FROM leads WHERE customer_id = 'C5'"
        ).fetchone() or (0, "")
        assert dealer == "D1"
        assert deliver(db, b"s", now=NOW) == (0, 0)  # the endpoint refused: to be tried again
        # the customer withdraws dealer_sharing; the deadline passes: escalated, but not passed to anyone
        consent.record(db, "C5", "dealer_sharing", False, "app")
        escalate(db, ROUTING, now=NOW + timedelta(days=2))
        status = db.execute(
            "SELECT status, dealer_id, status_reason FROM leads WHERE lead_id = %s", (lead,)
        ).fetchone()
        assert status is not None and status[:2] == ("unassigned", None) and "dealer_sharing" in status[2]
        # D1's pending post is cancelled, never sent: the lead is no longer D1's to see
        assert deliver(db, b"s", now=NOW + timedelta(days=3)) == (0, 0)
        assert len(receiver.requests) == 1
        assert db.execute("SELECT outcome FROM lead_webhooks").fetchone() == ("cancelled",)
    finally:
        receiver.close()


def test_follow_up_times_and_giving_up_are_checked(db: psycopg.Connection, tmp_path: Path) -> None:
    _load(db, tmp_path)
    process(db, ROUTING, now=NOW)
    leads = _leads(db)
    f4, dealer = leads["F4"][6], leads["F4"][4]  # an A lead: due 2 hours after NOW
    with pytest.raises(FollowUpError, match="keep trying") as early:
        set_status(db, f4, dealer, "lost", at=NOW + timedelta(hours=1), key_id=None, lost_reason="no_answer")
    assert early.value.status == 409
    set_status(db, f4, dealer, "contacted", at=NOW + timedelta(hours=1), key_id=None)
    with pytest.raises(FollowUpError, match="last step") as before:
        set_status(db, f4, dealer, "test_drive", at=NOW + timedelta(minutes=30), key_id=None)
    assert before.value.status == 422
    f8, d8 = leads["F8"][6], leads["F8"][4]
    set_status(db, f8, d8, "lost", at=NOW + timedelta(hours=30), key_id=None, lost_reason="no_answer")
    assert db.execute("SELECT first_contact_at FROM leads WHERE lead_id = %s", (f8,)).fetchone() == (None,)


def test_a_service_reminded_and_not_booked_becomes_a_dealer_lead(db: psycopg.Connection) -> None:
    from cloud.leads.capture import capture_from_system

    db.execute("INSERT INTO customers (customer_id, name, phone) VALUES ('C6', 'He Ping', '13977778888')")
    for vehicle in ("V6", "V7"):
        db.execute(
            "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, customer_id, model)"
            " VALUES (%s, now(), now(), 'C6', 'DS-SUV')",
            (vehicle,),
        )
    for vehicle, outcome in (("V6", "sent"), ("V7", "sent"), ("V7", "stopped_by_booking")):
        db.execute(
            "INSERT INTO service_reminders (customer_id, vehicle_id, channel, reason, episode, due_at,"
            " attempt, outcome, why, decided_at, sent_at) VALUES ('C6', %s, 'push', 'due_by_time',"
            " 'service:delivery', %s, 1, %s, '12 months passed', %s, %s)",
            (vehicle, NOW - timedelta(days=10), outcome, NOW - timedelta(days=9), NOW - timedelta(days=9)),
        )
    assert capture_from_system(db, now=NOW - timedelta(days=5), min_upgrade=0.5)["unbooked_services"] == 0
    found = capture_from_system(db, now=NOW, min_upgrade=0.5)
    assert found["unbooked_services"] == 1 and found["captured"] == 1  # V7 was booked
    assert capture_from_system(db, now=NOW, min_upgrade=0.5)["captured"] == 0
    lead = db.execute("SELECT source, vehicle_id, intent, message FROM leads").fetchone()
    assert lead is not None and lead[:3] == ("service", "V6", "service") and "not booked" in lead[3]
