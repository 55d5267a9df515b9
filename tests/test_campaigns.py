"""Campaigns through the real database and broker: refusals before anything is sent, every decision with its
reason, holdout and global control by hash, consent, time zones, quiet hours, caps across campaigns, a launch
run again sending nothing twice, and results joined from the cars' feedback and CRM conversions."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cloud.downlink import DownlinkPublisher, connect
from cloud.ingest.store import store_batch
from cloud.push import assign
from cloud.push.campaigns import create, launch, mqtt_sender, preview, set_status
from cloud.push.engine import CampaignError, Outgoing
from cloud.push.results import campaign_results
from cloud.push.spec import SpecError, parse_spec
from edge_agent.protocol import BrokerAddress, FeedbackV1, PushAction, decode, encode, uplink_topic
from tests.helpers import count, wait_until

#: 04:00 UTC is noon in Shanghai, outside the default quiet hours (21:00-09:00 local)
NOON_SHANGHAI = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)
CUSTOMERS = 400


def _world(url: str, prefix: str) -> list[str]:
    """CUSTOMERS customers with one car each: 10 % without marketing consent, every 40th car without a time
    zone, half the cars electric; a segment of everyone; three items (one expired, one for EVs only)."""
    ids = [f"{prefix}c{i:04d}" for i in range(CUSTOMERS)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO dealers (dealer_id, name, region) VALUES ('D1', 'd', 'east')")
        with conn.cursor().copy("COPY customers (customer_id, name, region) FROM STDIN") as copy:
            for c in ids:
                copy.write_row((c, f"name {c}", "east"))
        with conn.cursor().copy(
            "COPY vehicles (vehicle_id, first_seen, last_seen, customer_id, dealer_id, model, powertrain,"
            " region, time_zone) FROM STDIN"
        ) as copy:
            for i, c in enumerate(ids):
                zone = None if i % 40 == 0 else "Asia/Shanghai"
                ev = i % 2 == 0
                copy.write_row(
                    (f"{c}-car", NOON_SHANGHAI, NOON_SHANGHAI, c, "D1", "DS-EV" if ev else "DS-SUV",
                     "bev" if ev else "ice", "east", zone)
                )  # fmt: skip
        with conn.cursor().copy(
            "COPY consent_events (customer_id, scope, granted, at, source) FROM STDIN"
        ) as copy:
            for i, c in enumerate(ids):
                copy.write_row((c, "marketing", i % 10 != 3, NOON_SHANGHAI - timedelta(days=30), "dealer"))
        conn.execute(
            "INSERT INTO segments (name, expression, size, computed_at) VALUES ('everyone', '{}', %s, now())",
            (CUSTOMERS,),
        )
        with conn.cursor().copy("COPY segment_members (segment, customer_id) FROM STDIN") as copy:
            for c in ids:
                copy.write_row(("everyone", c))
        conn.execute(
            "INSERT INTO content_items (item_id, kind, title, body, category, tags, target_models,"
            " valid_from, valid_until, cost_per_send, value_per_conversion) VALUES"
            " ('I-TYRES', 'accessory', 'Winter tyres', '15 % off fitted', 'accessory', '{winter,safety}',"
            "  '{}', NULL, NULL, 0.05, 120),"
            " ('I-OLD', 'offer', 'Autumn check', 'over', 'service_package', '{}', '{}',"
            "  '2026-09-01Z', '2026-11-01Z', 0.05, 50),"
            " ('I-CHARGE', 'charging_plan', 'Home charging', 'a wallbox', 'charging_plan', '{ev}', '{DS-EV}',"
            "  NULL, NULL, 0.05, 300)"
        )
    return ids


def _spec(campaign_id: str, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "campaign_id": campaign_id,
        "name": "Winter tyres",
        "audience": {"segment": "everyone"},
        "arms": [
            {"name": "fixed", "content": {"item": "I-TYRES"}},
            {"name": "random", "content": {"recommended": "random"}},
        ],
        "holdout_share": 0.2,
        "starts_at": (NOON_SHANGHAI - timedelta(hours=1)).isoformat(),
        "ends_at": (NOON_SHANGHAI + timedelta(days=7)).isoformat(),
    }
    spec.update(changes)
    return spec


class _Cars:
    """Records the pushes cars of one prefix receive on the real broker."""

    def __init__(self, broker: BrokerAddress, prefix: str) -> None:
        self.pushes: list[tuple[str, str]] = []  # (vehicle, push id)
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.client.subscribe("ds/v1/+/down/push", qos=1)
        assert self._ready.wait(10)
        self.prefix = prefix

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        vehicle = msg.topic.split("/")[2]
        if vehicle.startswith(self.prefix):
            body = decode(
                msg.topic, bytes(msg.payload), now=NOON_SHANGHAI, max_clock_skew=timedelta(days=3650)
            )
            with self._lock:
                self.pushes.append((vehicle, body.body.push_id))  # type: ignore[attr-defined]

    def count(self) -> int:
        with self._lock:
            return len(self.pushes)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def world(fresh_database: str, vehicle_prefix: str) -> tuple[str, list[str], str]:
    return fresh_database, _world(fresh_database, vehicle_prefix), vehicle_prefix


@pytest.fixture
def sender(broker: BrokerAddress) -> Iterator[Any]:
    client = connect(broker, client_id=f"campaign-test-{uuid.uuid4().hex[:8]}")
    yield mqtt_sender(DownlinkPublisher(client))
    client.disconnect()
    client.loop_stop()


def _decisions(conn: psycopg.Connection[Any], campaign_id: str) -> dict[str, tuple[str, str, str | None]]:
    rows = conn.execute(
        "SELECT customer_id, arm, decision, item_id FROM campaign_decisions WHERE campaign_id = %s",
        (campaign_id,),
    ).fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_campaigns_that_cannot_run_are_refused_before_anything_is_stored(
    world: tuple[str, list[str], str],
) -> None:
    url, _, _ = world
    with psycopg.connect(url, autocommit=True) as conn:
        cases = {
            "unknown segment 'nobody'": _spec("a", audience={"segment": "nobody"}),
            "the audience is empty": _spec(
                "b", audience={"where": {"attr": "city", "op": "=", "value": "atlantis"}}
            ),
            "item 'I-OLD' expired": _spec("c", arms=[{"name": "old", "content": {"item": "I-OLD"}}]),
            "unknown catalogue item 'I-NONE'": _spec(
                "d", arms=[{"name": "x", "content": {"item": "I-NONE"}}]
            ),
            "schedule is over": _spec("e", starts_at="2026-01-01T00:00:00Z", ends_at="2026-02-01T00:00:00Z"),
        }
        for message, document in cases.items():
            with pytest.raises(SpecError, match=message):
                create(conn, parse_spec(document), now=NOON_SHANGHAI)
        for bad, message in (
            ({"arms": []}, "arms"),
            ({"arms": [{"name": "holdout", "content": {"item": "I-TYRES"}}]}, "holdout"),
            ({"audience": {"segment": "x", "where": {"tag": "eco"}}}, "either"),
            ({"ends_at": "2026-11-01T00:00:00Z"}, "ends_at must be after starts_at"),
            ({"channels": ["webhook"]}, "webhook_url"),
            ({"holdout_share": 0.9}, "holdout_share"),
        ):
            with pytest.raises(SpecError, match=message):
                parse_spec(_spec("f", **bad))
        assert count(conn, "SELECT count(*) FROM campaigns") == 0


def test_launch_decides_everyone_with_a_reason_and_never_sends_twice(
    world: tuple[str, list[str], str], broker: BrokerAddress, sender: Any
) -> None:
    url, customers, prefix = world
    cars = _Cars(broker, prefix)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            create(conn, parse_spec(_spec("winter")), now=NOON_SHANGHAI)
            shown = preview(conn, "winter", now=NOON_SHANGHAI)
            assert count(conn, "SELECT count(*) FROM campaign_decisions") == 0  # a preview writes nothing
            with pytest.raises(CampaignError, match="draft, not running"):
                from cloud.push.engine import run_campaign

                run_campaign(conn, "winter", sender, now=NOON_SHANGHAI)
            report = launch(conn, "winter", sender, now=NOON_SHANGHAI)
            assert report.decided == shown["decisions"]  # the preview said what the launch did
            decided = _decisions(conn, "winter")
            assert len(decided) == CUSTOMERS
            for i, c in enumerate(customers):
                arm, decision, item = decided[c]
                if i % 10 == 3:
                    assert (arm, decision) == ("ineligible", "no_consent")
                elif assign.in_global_control(c, 0.05):
                    assert decision == "global_control"
                elif assign.group("winter", c, 0.2, [("fixed", 0.5), ("random", 0.5)]) == "holdout":
                    assert decision == "holdout" and item is None
                elif i % 40 == 0:
                    assert decision == "held"  # its car's time zone is unknown: never guessed
                else:
                    assert decision == "sent", (c, decided[c])
                    assert item == "I-TYRES" if arm == "fixed" else item in ("I-TYRES", "I-CHARGE")
                    if item == "I-CHARGE":
                        assert i % 2 == 0  # the EV plan goes to EVs only
            sent = [c for c, d in decided.items() if d[1] == "sent"]
            assert report.acknowledged == len(sent) > 200
            assert wait_until(lambda: cars.count() == len(sent), timeout=30)
            reasons = conn.execute(
                "SELECT DISTINCT decision, reason FROM campaign_decisions"
                " WHERE decision IN ('held', 'no_consent')"
            ).fetchall()
            assert ("no_consent", "no marketing consent now") in reasons
            assert any(d == "held" and "time zone" in r for d, r in reasons)

            again = launch(conn, "winter", sender, now=NOON_SHANGHAI + timedelta(minutes=15))
            assert again.published == 0 and again.decided.get("sent", 0) == 0
            time.sleep(1.0)
            assert cars.count() == len(sent)  # nothing twice
            assert len({p for _, p in cars.pushes}) == len(sent)
            # a paused campaign sends nothing; a finished one cannot be resumed
            set_status(conn, "winter", "paused")
            with pytest.raises(CampaignError, match="paused"):
                from cloud.push.engine import run_campaign

                run_campaign(conn, "winter", sender, now=NOON_SHANGHAI)
    finally:
        cars.close()


def test_quiet_hours_then_caps_across_campaigns(world: tuple[str, list[str], str], sender: Any) -> None:
    url, _, _ = world
    evening = NOON_SHANGHAI + timedelta(hours=10)  # 22:00 in Shanghai
    with psycopg.connect(url, autocommit=True) as conn:
        create(conn, parse_spec(_spec("first", holdout_share=0.0)), now=NOON_SHANGHAI)
        report = launch(conn, "first", sender, now=evening)
        assert report.acknowledged == 0 and report.decided["quiet_hours"] > 300
        assert all("within the quiet hours" in r for (r,) in conn.execute(
            "SELECT reason FROM campaign_decisions WHERE decision = 'quiet_hours'"))  # fmt: skip
        # the next morning, 10:00 local: the same customers are sent to, once
        morning = NOON_SHANGHAI + timedelta(hours=22)
        report = launch(conn, "first", sender, now=morning)
        assert report.acknowledged == report.decided["sent"] > 300
        # a second campaign the same local day: every customer reached today is capped (1 a day)
        create(conn, parse_spec(_spec("second", holdout_share=0.0, priority=5)), now=NOON_SHANGHAI)
        second = launch(conn, "second", sender, now=morning + timedelta(hours=1))
        assert second.decided.get("sent", 0) == 0 and second.decided["capped"] == report.decided["sent"]


def _feedback(conn: psycopg.Connection[Any], vehicle: str, push: str, action: PushAction, seq: int) -> None:
    body = FeedbackV1(
        push_id=push, campaign_id="winter", action=action, at=NOON_SHANGHAI + timedelta(hours=1)
    )
    payload = encode(vehicle, seq, body, sent_at=NOON_SHANGHAI + timedelta(hours=1))
    store_batch(
        conn, [decode(uplink_topic(vehicle, "feedback"), payload, now=NOON_SHANGHAI + timedelta(hours=1))]
    )


def test_results_join_feedback_and_conversions_per_arm(
    world: tuple[str, list[str], str], sender: Any
) -> None:
    url, _, _ = world
    with psycopg.connect(url, autocommit=True) as conn:
        create(
            conn,
            parse_spec(_spec("winter", arms=[{"name": "fixed", "content": {"item": "I-TYRES"}}])),
            now=NOON_SHANGHAI,
        )
        launch(conn, "winter", sender, now=NOON_SHANGHAI)
        sent = conn.execute(
            "SELECT customer_id, vehicle_id, push_id FROM campaign_decisions WHERE decision = 'sent'"
            " ORDER BY customer_id"
        ).fetchall()
        holdout = [
            r[0]
            for r in conn.execute(
                "SELECT customer_id FROM campaign_decisions WHERE decision = 'holdout' ORDER BY customer_id"
            )
        ]
        # every car delivers; every 2nd opens; every 5th converts in the car; every 10th holdout buys anyway
        for n, (_c, vehicle, push) in enumerate(sent):
            seq = 1
            actions = [PushAction.DELIVERED, PushAction.DISPLAYED]
            actions += [PushAction.OPENED] if n % 2 == 0 else [PushAction.DISMISSED]
            actions += [PushAction.CONVERTED] if n % 5 == 0 else []
            for action in actions:
                _feedback(conn, vehicle, push, action, seq)
                seq += 1
        bought = holdout[::10]
        for c in bought:
            conn.execute(
                "INSERT INTO conversions (customer_id, item_id, at, value) VALUES (%s, 'I-TYRES', %s, 120)",
                (c, NOON_SHANGHAI + timedelta(days=2)),
            )
        # a conversion after the attribution window does not count
        conn.execute(
            "INSERT INTO conversions (customer_id, item_id, at) VALUES (%s, 'I-TYRES', %s)",
            (holdout[1], NOON_SHANGHAI + timedelta(days=30)),
        )
        results = campaign_results(conn, "winter")
    arms = {a["arm"]: a for a in results["arms"]}
    fixed, hold = arms["fixed"], arms["holdout"]
    n = len(sent)
    assert (fixed["sent"], fixed["delivered"], fixed["displayed"]) == (n, n, n)
    opened = sum(1 for k in range(n) if k % 2 == 0 or k % 5 == 0)  # a conversion in the car is an open too
    assert fixed["opened"] == opened and fixed["dismissed"] == n // 2
    assert fixed["converted"] == (n + 4) // 5
    assert fixed["ctr"]["value"] == pytest.approx(opened / n)
    assert hold["converted"] == len(bought) and hold["sent"] == 0
    up = fixed["uplift"]
    expected = fixed["converted"] / fixed["assigned"] - len(bought) / hold["assigned"]
    assert up["difference"] == pytest.approx(expected)
    assert up["ci_low"] < up["difference"] < up["ci_high"]
    assert fixed["money"]["cost"] == pytest.approx(0.05 * n)
    assert results["sample_ratio"]["mismatch"] is False
    assert results["decisions"]["sent"] == n


def test_unacknowledged_pushes_are_sent_again_under_the_same_id(world: tuple[str, list[str], str]) -> None:
    url, _, _ = world
    calls: list[list[str]] = []

    def flaky(outgoing: Any) -> set[str]:
        ids = [o.push.push_id for o in outgoing]
        calls.append(ids)
        return set(ids[: len(ids) // 2]) if len(calls) == 1 else set(ids)  # the first run: half acknowledged

    with psycopg.connect(url, autocommit=True) as conn:
        create(conn, parse_spec(_spec("retry")), now=NOON_SHANGHAI)
        first = launch(conn, "retry", flaky, now=NOON_SHANGHAI)
        second = launch(conn, "retry", flaky, now=NOON_SHANGHAI + timedelta(minutes=5))
    assert first.acknowledged == len(calls[0]) // 2
    assert calls[1] == calls[0][len(calls[0]) // 2 :]  # the rest, under the same push ids
    assert second.acknowledged == len(calls[1])


def test_recommended_arms_choose_by_portrait_or_popularity_with_reasons(
    world: tuple[str, list[str], str],
) -> None:
    url, customers, _ = world
    acked: list[Outgoing] = []

    def sender(outgoing: Any) -> set[str]:
        acked.extend(outgoing)
        return {o.push.push_id for o in outgoing}

    with psycopg.connect(url, autocommit=True) as conn:
        # EV owners carry the "ev" tag in their portrait; 30 customers bought the tyres (the popular item)
        for i, c in enumerate(customers):
            if i % 2 == 0:
                conn.execute(
                    "INSERT INTO customer_tags (customer_id, tag, score, evidence, config_version)"
                    " VALUES (%s, 'ev', 0.9, '{}', 1)",
                    (c,),
                )
        for c in customers[1:61:2]:
            conn.execute(
                "INSERT INTO conversions (customer_id, item_id, at) VALUES (%s, 'I-TYRES', %s)",
                (c, NOON_SHANGHAI - timedelta(days=3)),
            )
        arms = [
            {"name": "personalized", "content": {"recommended": "personalized"}},
            {"name": "relevance", "content": {"recommended": "popularity"}},
        ]
        create(conn, parse_spec(_spec("recs", arms=arms, holdout_share=0.1)), now=NOON_SHANGHAI)
        launch(conn, "recs", sender, now=NOON_SHANGHAI)
        rows = conn.execute(
            "SELECT customer_id, arm, item_id, reason FROM campaign_decisions WHERE decision = 'sent'"
        ).fetchall()
    index = {c: i for i, c in enumerate(customers)}
    by_arm: dict[str, list[tuple[int, str, str]]] = {}
    for customer, arm, item, reason in rows:
        by_arm.setdefault(arm, []).append((index[customer], item, reason))
    # the portrait decides for EV owners: the charging plan, because of the tag
    ev = [(item, reason) for i, item, reason in by_arm["personalized"] if i % 2 == 0]
    assert ev and all(item == "I-CHARGE" for item, _ in ev), ev[:3]
    assert all("personalized" in reason and "ev" in reason for _, reason in ev), ev[:3]
    # popularity gives everyone the tyres (bought by 30), EV owners included
    relevance = by_arm["relevance"]
    assert relevance and all(item == "I-TYRES" for _, item, _ in relevance)
    assert all(reason.startswith("by popularity; ") for _, _, reason in relevance)
    # the buyers are not offered the tyres again
    buyers = {index[c] for c in customers[1:61:2]}
    assert not [i for i, item, _ in relevance if i in buyers]
    assert len(acked) == len(rows)
