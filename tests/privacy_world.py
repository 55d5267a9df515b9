"""Two people whose data reaches every table a person can be in, through the real import, ingest, rollup and
analytics paths: the ground for the export, erasure and backup tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from cloud.analytics.config import load_config
from cloud.analytics.imports import import_file
from cloud.analytics.run import run_analytics
from cloud.db.rollups import refresh
from cloud.ingest.store import Rejected, store_batch, store_dead_letters_alone
from cloud.qa.inspect import inspect_all
from cloud.qa.model import CallRecord, Channel, Language, Speaker, Turn
from cloud.qa.rules import load_rules
from cloud.qa.store import store as store_calls
from edge_agent.protocol import (
    ConsentState,
    DrivingEvent,
    DtcRecord,
    DtcV1,
    EventKind,
    EventsV1,
    FeedbackV1,
    Message,
    StatusV1,
    TelemetryV1,
    TripSummaryV1,
    decode,
    encode,
    uplink_topic,
)

T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


@dataclass(frozen=True)
class Person:
    """One person's ids and the identifying values their CRM and account rows hold."""

    customer_id: str
    vehicle_ids: tuple[str, ...]
    account_id: str
    name: str
    phone: str
    email: str

    @property
    def identifiers(self) -> tuple[str, ...]:
        """Every value that names this person."""
        return (self.customer_id, *self.vehicle_ids, self.account_id, self.name, self.phone, self.email)


def _person(tag: str, vehicles: int) -> Person:
    u = uuid.uuid4().hex[:10]
    digits = str(int(u, 16))[-9:].rjust(9, "7")
    return Person(
        customer_id=f"cust{tag}{u}",
        vehicle_ids=tuple(f"veh{tag}{i}{u}" for i in range(vehicles)),
        account_id=f"acct{tag}{u}",
        name=f"name{tag} {u}",
        phone=f"13{digits}",
        email=f"mail{tag}{u}@mail.example",
    )


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _messages(vehicle_id: str) -> list[Message]:
    trip = {
        "trip_id": "T1",
        "started_at": T0,
        "ended_at": T0 + timedelta(minutes=10),
        "duration_s": 600.0,
        "moving_s": 550.0,
        "idle_s": 50.0,
        "max_speed_kmh": 80.0,
        "avg_speed_kmh": 30.0,
        "night_share": 0.0,
        "samples": 6000,
    }
    bodies = [
        StatusV1(
            state="online",
            agent_version="1",
            consent=ConsentState(telemetry=True, location=True, profiling=True),
        ),
        TripSummaryV1(**trip, distance_km=5.0),
        TripSummaryV1(**trip, distance_km=5.5),  # a correction: trip_versions
        EventsV1(
            events=[
                DrivingEvent(
                    kind=EventKind.HARSH_BRAKE,
                    trip_id="T1",
                    start=T0 + timedelta(minutes=2),
                    end=T0 + timedelta(minutes=2, seconds=1),
                    peak=-5.0,
                    peak_unit="m/s^2",
                )
            ]
        ),
        TelemetryV1(
            t0=T0 + timedelta(minutes=30),
            t_ms=[i * 60_000 for i in range(60)],  # 08:30-09:29: two hours in the hourly rollup
            signals={
                "Vehicle.Speed": [30.0 + i % 20 for i in range(60)],
                "Vehicle.CurrentLocation.Latitude": [31.2] * 60,
                "Vehicle.CurrentLocation.Longitude": [121.4] * 60,
                "Vehicle.TraveledDistance": [1000.0 + i for i in range(60)],
            },
        ),
        DtcV1(codes=[DtcRecord(code="P0301", first_seen=T0, trip_id="T1")]),
        FeedbackV1(push_id="P1", campaign_id="K1", action="opened", at=T0),
    ]
    return [
        decode(
            uplink_topic(vehicle_id, body.KIND),
            encode(vehicle_id, seq, body, sent_at=T0 + timedelta(seconds=seq)),
        )
        for seq, body in enumerate(bodies, start=1)
    ]


def build_world(url: str, directory: Path) -> tuple[Person, Person]:
    """Two people (the first with two cars) in every table that can hold a person; return them."""
    a, b = _person("a", 2), _person("b", 1)
    people = (a, b)
    files = {
        "dealers": "dealer_id,name,region\nD1,drivesight north,north\n",
        "customers": "customer_id,name,phone,email,birth_year,city,income_band\n"
        + "".join(f"{p.customer_id},{p.name},{p.phone},{p.email},1980,north-city-1,high\n" for p in people),
        "consent": "customer_id,scope,granted,at,source\n"
        + "".join(f"{p.customer_id},marketing,true,2026-08-01T10:00:00Z,dealer\n" for p in people),
        "vehicles": "vehicle_id,customer_id,dealer_id,model,model_year,powertrain,purchased_at,price\n"
        + "".join(
            f"{v},{p.customer_id},D1,DS-SUV,2024,ice,2025-01-02,200000\n"
            for p in people
            for v in p.vehicle_ids
        ),
        "service_visits": "visit_id,vehicle_id,dealer_id,visited_at,kind,cost\n"
        + "".join(f"S{v},{v},D1,2026-09-01,maintenance,300\n" for p in people for v in p.vehicle_ids),
        "complaints": "complaint_id,customer_id,opened_at,category,resolved\n"
        + "".join(f"Q{p.customer_id},{p.customer_id},2026-09-02,quality,false\n" for p in people),
        "accounts": "account_id,channel,name,phone,email,birth_year,city\n"
        + "".join(f"{p.account_id},app,{p.name},{p.phone},,1980,north-city-1\n" for p in people),
        "items": "item_id,kind,title,categories\nI1,article,SUVs,suv:0.9;family:0.3\n",
        "life_events": "customer_id,kind,happened_on\n"
        + "".join(f"{p.customer_id},new_child,2026-06-01\n" for p in people),
        "interactions": "account_id,item_id,kind,at\n"
        + "".join(f"{p.account_id},I1,collect,2026-09-03T10:00:00Z\n" for p in people),
    }
    with psycopg.connect(url, autocommit=True) as conn:
        for kind, text in files.items():
            import_file(conn, kind, _csv(directory / f"{kind}.csv", text))
        for p in people:
            for v in p.vehicle_ids:
                for m in _messages(v):
                    store_batch(conn, [m])
                store_dead_letters_alone(
                    conn,
                    [
                        Rejected(
                            uplink_topic(v, "trip"),
                            "invalid",
                            "bad trip",
                            f'{{"vehicle_id": "{v}"}}'.encode(),
                        )
                    ],
                )
            # the narrow telemetry table of before migration 0006 stays in the schema: a person can be in it
            conn.execute(
                "INSERT INTO telemetry_narrow_v1 (vehicle_id, time, signal, value)"
                " VALUES (%s, %s, 'Vehicle.Speed', 1)",
                (p.vehicle_ids[0], T0),
            )
    refresh(url)
    run_analytics(url, load_config(), full=True)
    with psycopg.connect(url, autocommit=True) as conn:
        # too few people to cluster or to fill a segment by the shipped rules: give them analytics outputs of
        # the same shape directly
        conn.execute("INSERT INTO cluster_models (model) VALUES ('{}') ON CONFLICT DO NOTHING")
        conn.execute(
            "INSERT INTO churn_models (as_of, horizon_days, features, metrics, model)"
            " VALUES ('{2026-10-01}', 30, '{}', '{}', '')"
        )
        conn.execute(
            "INSERT INTO upgrade_models (as_of, horizon_days, features, metrics, model)"
            " VALUES ('{2026-10-01}', 90, '{}', '{}', '')"
        )
        conn.execute(
            "INSERT INTO campaigns (campaign_id, name, spec, starts_at, ends_at)"
            " VALUES ('privacy-campaign', 'privacy test', '{}', now(), now() + interval '1 day')"
        )
        conn.execute(
            "INSERT INTO segments (name, expression, size, computed_at)"
            " VALUES ('privacy-test', '{}', 2, now())"
            " ON CONFLICT DO NOTHING"
        )
        for p in people:
            conn.execute(
                "INSERT INTO customer_clusters (customer_id, cluster, model_version)"
                " SELECT %s, 0, max(version) FROM cluster_models ON CONFLICT DO NOTHING",
                (p.customer_id,),
            )
            conn.execute(
                "INSERT INTO segment_members (segment, customer_id) VALUES ('privacy-test', %s)"
                " ON CONFLICT DO NOTHING",
                (p.customer_id,),
            )
            conn.execute(
                "INSERT INTO customer_preferences (customer_id, category, score) VALUES (%s, 'suv', 1)"
                " ON CONFLICT DO NOTHING",
                (p.customer_id,),
            )
            conn.execute(
                "INSERT INTO customer_tags (customer_id, tag, score, evidence, config_version)"
                " VALUES (%s, 'eco', 0.9, '{}', 1) ON CONFLICT DO NOTHING",
                (p.customer_id,),
            )
            # a campaign's decision for the person, its webhook delivery, and a conversion from the CRM
            conn.execute(
                "INSERT INTO campaign_decisions (campaign_id, customer_id, arm, decision, reason, item_id,"
                " vehicle_id, push_id, sent_at, channel) VALUES"
                " ('privacy-campaign', %s, 'personalized', 'sent', 'sent', 'I1', %s, %s, now(), 'webhook')",
                (p.customer_id, p.vehicle_ids[0], f"push-{p.customer_id}"),
            )
            conn.execute(
                "INSERT INTO webhook_deliveries (push_id, url) VALUES (%s, 'https://crm.example/hook')",
                (f"push-{p.customer_id}",),
            )
            conn.execute(
                "INSERT INTO conversions (customer_id, item_id, at, value) VALUES (%s, 'I1', now(), 10)",
                (p.customer_id,),
            )
            # a service reminder decision about the person's car, and a booking from the dealer's CRM
            conn.execute(
                "INSERT INTO service_reminders (customer_id, vehicle_id, channel, reason, episode, due_at,"
                " attempt, outcome, why, decided_at) VALUES"
                " (%s, %s, 'push', 'due_by_time', 'service:delivery', now(), 1, 'sent', 'due', now())",
                (p.customer_id, p.vehicle_ids[0]),
            )
            conn.execute(
                "INSERT INTO service_bookings (booking_id, vehicle_id, booked_at) VALUES (%s, %s, now())",
                (f"booking-{p.customer_id}", p.vehicle_ids[0]),
            )
            # a churn score with its reasons, under a model of the same shape as the churn job's
            conn.execute(
                "INSERT INTO churn_scores (customer_id, day, probability, tier, reasons, model_version)"
                " SELECT %s, '2026-11-01', 0.4, 'high', '[]', max(version) FROM churn_models",
                (p.customer_id,),
            )
            # an upgrade score, under a model of the same shape as the upgrade job's
            conn.execute(
                "INSERT INTO upgrade_scores (customer_id, day, probability, reasons, model_version)"
                " SELECT %s, '2026-11-01', 0.3, '[]', max(version) FROM upgrade_models",
                (p.customer_id,),
            )
            # a credit score with its reason codes (a financing offer's scorecard)
            conn.execute(
                "INSERT INTO credit_scores (customer_id, scored_at, score, reasons, model)"
                " VALUES (%s, '2026-11-01T00:00:00Z', 612, %s, 'credit_score v1')",
                (p.customer_id, [f"debt_to_income of {p.customer_id}"]),
            )
            # a dealer lead of theirs, assigned and contacted, and a second lead found to be its duplicate
            # (it names no customer: only the duplicate link ties it to the person)
            lead = conn.execute(
                "INSERT INTO leads (source, channel, created_at, name, phone, customer_id, raw, status,"
                " dealer_id, assigned_at) VALUES ('form', 'website', now(), %s, %s, %s, '{}', 'contacted',"
                " 'D1', now()) RETURNING lead_id",
                (p.name, p.phone, p.customer_id),
            ).fetchone()
            assert lead is not None
            twin = conn.execute(
                "INSERT INTO leads (source, channel, created_at, phone, raw, status, duplicate_of_lead)"
                " VALUES ('form', 'app', now(), %s, '{}', 'duplicate', %s) RETURNING lead_id",
                (p.phone, lead[0]),
            ).fetchone()
            assert twin is not None
            conn.execute(
                "INSERT INTO lead_merges (lead_id, into_lead, rule, score) VALUES (%s, %s, 'phone', 1)",
                (twin[0], lead[0]),
            )
            conn.execute(
                "INSERT INTO lead_merges (lead_id, customer_id, rule, score) VALUES (%s, %s, 'email', 1)",
                (lead[0], p.customer_id),
            )
            conn.execute(
                "INSERT INTO lead_assignments (lead_id, dealer_id, rule, why, assigned_at, contact_due_at)"
                " VALUES (%s, 'D1', 'showroom_in_region', %s, now(), now())",
                (lead[0], f"for {p.customer_id}"),
            )
            conn.execute(
                "INSERT INTO lead_events (lead_id, dealer_id, status, at, note)"
                " VALUES (%s, 'D1', 'contacted', now(), %s)",
                (lead[0], f"called {p.name}"),
            )
        # a dealer's call with the person, naming them and with their phone number said in it, inspected
        # against the shipped rules (the record id names them too, so the inspection row is found by the
        # search for their ids)
        calls = [
            CallRecord(
                f"call-{p.customer_id}", "D1", "C1", Channel.PHONE, T0, Language.EN,
                (
                    Turn(Speaker.CONSULTANT, 0.0, 4.0, "Hello, this is drivesight north, Anna speaking."),
                    Turn(Speaker.CUSTOMER, 4.5, 9.0, f"Hi, please call me back on {p.phone}."),
                    Turn(Speaker.CONSULTANT, 9.5, 12.0, "Thank you, we will call you back."),
                ),
                p.customer_id,
            )
            for p in people
        ]  # fmt: skip
        store_calls(conn, calls, inspect_all(calls, load_rules()), inspected_at=T0)
    return a, b
