"""Upgrade intent on a real database: the label and the features against hand-made customers, reasons that
name what raised the odds, consent and erasure respected, the API's list and customer view (audited), the
leads export, the campaign audience leaves (churn tier, upgrade intent) and a backtest on the simulated
world."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from cloud.access.keys import create_key
from cloud.analytics.imports import RowErrors, import_file
from cloud.analytics.segments import SegmentError, compile_expression
from cloud.api.app import create_app
from cloud.cli import main as cloud_main
from cloud.db.migrate import migrate
from cloud.privacy import consent, erasure
from cloud.privacy.audit import personal_subject
from cloud.push.campaigns import create, preview
from cloud.push.spec import SpecError, parse_spec
from cloud.upgrade.backtest import backtest
from cloud.upgrade.config import load_config
from cloud.upgrade.features import NAMES, compute_features, labels
from cloud.upgrade.read import customer_upgrade, leads, list_scores
from cloud.upgrade.run import latest_model, run_upgrade, score, training_days
from simulators.upgrade_world import UpgradeWorld, load_upgrade_world, simulate_upgrade_world
from tests.helpers import scratch_database

CONFIG = load_config()
KEY = b"upgrade-test-ledger-key-01234567"


@dataclass(frozen=True)
class World:
    """A migrated database holding a simulated world, and the day its job scores."""

    url: str
    sim: UpgradeWorld
    day: date


@pytest.fixture(scope="module")
def world(admin_database_url: str) -> Iterator[World]:
    with scratch_database(admin_database_url, "drivesight_upgrade") as url:
        migrate(url)
        sim = simulate_upgrade_world(1500, seed=11)
        with psycopg.connect(url, autocommit=True) as conn:
            load_upgrade_world(conn, sim)
        yield World(url, sim, sim.day(sim.days - 1))


@pytest.fixture(scope="module")
def scored(world: World) -> World:
    """The world after the job scored its last day (training the model first)."""
    run_upgrade(world.url, CONFIG, world.day)
    return world


def _owner(
    conn: psycopg.Connection[Any],
    customer: str,
    purchased: date,
    *,
    marketing: bool = True,
    dealer: str = "UD1",
) -> str:
    vehicle = f"car-{customer}"
    conn.execute("INSERT INTO customers (customer_id) VALUES (%s)", (customer,))
    conn.execute(
        "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, customer_id, dealer_id, time_zone)"
        " VALUES (%s, now(), now(), %s, %s, 'Asia/Shanghai')",
        (vehicle, customer, dealer),
    )
    conn.execute(
        "INSERT INTO purchases (vehicle_id, customer_id, dealer_id, purchased_at) VALUES (%s, %s, %s, %s)",
        (vehicle, customer, dealer, purchased),
    )
    consent.record(conn, customer, "marketing", marketing, "dealer")
    return vehicle


def _visit(conn: psycopg.Connection[Any], car: str, on: date, km: float | None, cost: float) -> None:
    conn.execute(
        "INSERT INTO service_visits (visit_id, vehicle_id, visited_at, kind, cost, odometer_km)"
        " VALUES (%s, %s, %s, 'maintenance', %s, %s)",
        (f"{car}-{on}", car, on, cost, km),
    )


def _csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_features_and_label_match_hand_made_customers(world: World, tmp_path: Path) -> None:
    day = date(2026, 7, 1)
    end = datetime(2026, 7, 2, tzinfo=UTC)
    with psycopg.connect(world.url, autocommit=True) as conn:
        car = _owner(conn, "up-hand-1", date(2020, 3, 1))
        # the odometer: a visit read 88,000 km, a later trip 91,500; a trip after the day is unseen
        _visit(conn, car, day - timedelta(days=400), 70_000, 300)  # 12-24 months back
        _visit(conn, car, day - timedelta(days=500), None, 200)  # 12-24 months back, no reading
        _visit(conn, car, day - timedelta(days=60), 88_000, 900)  # within 12 months
        _visit(conn, car, day + timedelta(days=3), 95_000, 5000)  # after the day: unseen
        for k, (at, km) in enumerate(((end - timedelta(days=2), 91_500), (end + timedelta(days=1), 99_000))):
            conn.execute(
                "INSERT INTO trips (vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s,"
                " moving_s, idle_s, max_speed_kmh, avg_speed_kmh, night_share, samples, odometer_km)"
                " VALUES (%s, %s, %s, %s, %s, 10, 600, 600, 0, 80, 40, 0, 0, %s)",
                (car, f"T{k}", k, at, at + timedelta(minutes=10), km),
            )
        # life events through the import kind: a bad line refuses the whole file, nothing written
        with pytest.raises(RowErrors) as refused:
            import_file(
                conn,
                "life_events",
                _csv(
                    tmp_path / "bad.csv",
                    "customer_id,kind,happened_on\nup-hand-1,new_child,2026-05-01\n"
                    "up-hand-1,won_lottery,2026-05-02\nup-hand-1,moved,2999-01-01\n",
                ),
            )
        assert [line for line, _m in refused.value.errors] == [3, 4]  # (references are checked after)
        assert "won_lottery" in str(refused.value) and "future" in str(refused.value)
        import_file(
            conn,
            "life_events",
            _csv(
                tmp_path / "life.csv",
                "customer_id,kind,happened_on\nup-hand-1,new_child,2026-05-01\nup-hand-1,moved,2025-03-01\n"
                "up-hand-1,new_child,2026-05-01\nup-hand-1,new_job,2026-08-01\n",
            ),
        )
        # new-model content: two views of a test drive and one of an article online; one pushed test drive
        # opened in the car, one pushed article clicked
        conn.execute(
            "INSERT INTO content_items (item_id, kind, title, tags) VALUES"
            " ('up-td', 'test_drive', 't', '{}'), ('up-nm', 'article', 'n', '{new_model}'),"
            " ('up-art', 'article', 'a', '{}')"
        )
        conn.execute("INSERT INTO online_accounts (account_id, channel) VALUES ('up-acct', 'app')")
        merge = conn.execute(
            "INSERT INTO identity_merges (rule, customer_id, links) VALUES ('phone', 'up-hand-1', 1)"
            " RETURNING merge_id"
        ).fetchone()
        assert merge is not None
        conn.execute(
            "INSERT INTO identity_links (account_id, customer_id, rule, merge_id)"
            " VALUES ('up-acct', 'up-hand-1', 'phone', %s)",
            (merge[0],),
        )
        for k, (item, back) in enumerate((("up-td", 5), ("up-nm", 80), ("up-art", 3), ("up-td", 100))):
            conn.execute(
                "INSERT INTO interactions (account_id, item_id, kind, at) VALUES ('up-acct', %s, 'view', %s)",
                (item, end - timedelta(days=back, hours=k)),
            )
        conn.execute(
            "INSERT INTO campaigns (campaign_id, name, spec, starts_at, ends_at)"
            " VALUES ('up-k', 'k', '{}', '2026-01-01Z', '2027-01-01Z')"
        )
        for k, (item, action) in enumerate(
            (("up-td", "opened"), ("up-art", "clicked"), ("up-nm", "delivered"))
        ):
            conn.execute(
                "INSERT INTO campaign_decisions (campaign_id, customer_id, arm, decision, reason, item_id,"
                " vehicle_id, push_id) VALUES ('up-k', %s, 'a', 'sent', 'r', %s, %s, %s)",
                (f"up-hand-{k}x", item, car, f"up-p{k}"),
            )
            conn.execute(
                "INSERT INTO push_feedback (vehicle_id, seq, push_id, action, at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (car, 300 + k, f"up-p{k}", action, end - timedelta(days=10)),
            )
        features = compute_features(conn, day, CONFIG, ["up-hand-1"])
        # the label: a purchase within the horizon after the day, not one before it or after the horizon
        for customer, second in (("up-buys", 30), ("up-late", CONFIG.horizon_days + 5), ("up-before", -10)):
            _owner(conn, customer, date(2019, 1, 1))
            conn.execute(
                "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, customer_id)"
                " VALUES (%s, now(), now(), %s)",
                (f"car2-{customer}", customer),
            )
            conn.execute(
                "INSERT INTO purchases (vehicle_id, customer_id, purchased_at) VALUES (%s, %s, %s)",
                (f"car2-{customer}", customer, day + timedelta(days=second)),
            )
        bought = compute_features(conn, day, CONFIG, ["up-buys", "up-late", "up-before", "up-hand-1"])
        got_labels = dict(zip(bought.customers, labels(conn, bought, CONFIG).tolist(), strict=True))
    assert features.customers == ["up-hand-1"]
    got = dict(zip(NAMES, features.values[0].tolist(), strict=True))
    assert got == pytest.approx(
        {
            "vehicle_age_years": (day - date(2020, 3, 1)).days / 365.25,
            "odometer_km": 91_500,
            "cars_owned": 1,
            "warranty_days_left": (date(2023, 3, 1) - day).days,
            "service_cost_12m": 900,
            "service_cost_trend": 900 - 500,
            "new_model_interactions_90d": 2,  # the test drive 5 days back and the new-model article
            "new_model_push_clicks_90d": 1,  # the test drive opened; the article is no new model
            "life_events_12m": 1,  # the child; the move is older, the job after the day
            "days_since_life_event": (day - date(2026, 5, 1)).days,
        }
    )
    assert got_labels == {"up-buys": 1, "up-late": 0, "up-before": 0, "up-hand-1": 0}
    # the customer who bought before the day owns two cars at it, the newest bought 10 days back
    row = bought.values[bought.customers.index("up-before")]
    assert row[NAMES.index("cars_owned")] == 2 and row[NAMES.index("vehicle_age_years")] == pytest.approx(
        10 / 365.25
    )


def test_an_old_car_with_high_mileage_has_age_and_mileage_as_reasons(scored: World) -> None:
    day = scored.day
    with psycopg.connect(scored.url, autocommit=True) as conn:
        old = _owner(conn, "up-old", day - timedelta(days=round(8 * 365.25)))
        _visit(conn, old, day - timedelta(days=30), 150_000, 900)
        young = _owner(conn, "up-young", day - timedelta(days=200))
        _visit(conn, young, day - timedelta(days=30), 5_000, 150)
        stored = latest_model(conn)
        assert stored is not None
        matrix = compute_features(conn, day, CONFIG, ["up-old", "up-young"])
        everyone = compute_features(conn, day, CONFIG)
    # the reasons' method: per row the contributions and the expected log-odds add up to the log-odds
    np.testing.assert_allclose(
        stored.model.contributions(everyone.values).sum(axis=1) + stored.model.expected_log_odds(),
        stored.model.log_odds(everyone.values),
        atol=1e-6,
    )
    scores = score(stored, matrix)
    old_reasons, _young_reasons = scores.reasons
    features = [r["feature"] for r in old_reasons]
    assert {"vehicle_age_years", "odometer_km"} <= set(features), old_reasons
    assert all(float(r["contribution"]) > 0 for r in old_reasons)
    assert [r["contribution"] for r in old_reasons] == sorted(
        (r["contribution"] for r in old_reasons), reverse=True
    )
    p_old, p_young = scores.probability
    assert p_old > 3 * p_young


def test_withdrawn_and_erased_customers_are_not_scored(scored: World) -> None:
    day = scored.day + timedelta(days=1)
    withdrawn, erased = (str(c) for c in scored.sim.customers[scored.sim.marketing][:2])
    with psycopg.connect(scored.url, autocommit=True) as conn:
        assert customer_upgrade(conn, withdrawn) is not None  # scored before
        consent.record(conn, withdrawn, "marketing", False, "app")
        request = erasure.request_erasure(conn, erased, key_id=None)
        erasure.confirm_erasure(conn, request.request_id, request.token, key_id=None, ledger_key=KEY)
    report = run_upgrade(scored.url, CONFIG, day)
    assert report.scored > 1000
    with psycopg.connect(scored.url, autocommit=True) as conn:
        on_day = {
            str(r[0]) for r in conn.execute("SELECT customer_id FROM upgrade_scores WHERE day = %s", (day,))
        }
        refused = {str(c) for c in scored.sim.customers[~scored.sim.marketing]}
        assert withdrawn not in on_day and erased not in on_day and not on_day & refused
        assert customer_upgrade(conn, withdrawn) is None  # the earlier scores are hidden at once
        assert withdrawn not in {s.customer_id for s in list_scores(conn, limit=100_000)}
        assert conn.execute(
            "SELECT count(*) FROM upgrade_scores WHERE customer_id = %s", (erased,)
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM life_events WHERE customer_id = %s", (erased,)
        ).fetchone() == (0,)
        conn.execute(
            "DELETE FROM upgrade_scores WHERE day = %s", (day,)
        )  # the other tests read the world's day
        consent.record(conn, withdrawn, "marketing", True, "app")


def test_the_api_lists_and_shows_a_customer(scored: World) -> None:
    with psycopg.connect(scored.url, autocommit=True) as conn:
        key = create_key(conn, name="sales", scopes=["marketing:read"])
        fleet = create_key(conn, name="fleet", scopes=["fleet:read"])
        refuser = str(scored.sim.customers[~scored.sim.marketing][0])
        expected = [s.customer_id for s in list_scores(conn, 0.2, limit=100_000)]
    assert len(expected) > 30
    headers = {"Authorization": f"Bearer {key.key}"}
    with TestClient(create_app(scored.url)) as api:
        seen: list[str] = []
        cursor = ""
        while True:
            page = api.get(
                "/v1/upgrade", params={"min_probability": 0.2, "limit": 25, "cursor": cursor}, headers=headers
            )
            assert page.status_code == 200, page.text
            body = page.json()
            for item in body["items"]:
                assert item["probability"] >= 0.2 and len(item["reasons"]) <= 3
            seen += [i["customer_id"] for i in body["items"]]
            if body["next_cursor"] is None:
                break
            cursor = body["next_cursor"]
        assert seen == expected  # every customer above the bar once, likeliest first
        one = api.get(f"/v1/customers/{seen[0]}/upgrade", headers=headers)
        assert one.status_code == 200, one.text
        assert one.json()["probability"] >= 0.2 and one.json()["history"][-1]["day"] == str(scored.day)
        assert {"feature", "value", "contribution"} <= set(one.json()["reasons"][0])
        assert api.get(f"/v1/customers/{refuser}/upgrade", headers=headers).status_code == 404
        assert api.get("/v1/customers/nobody/upgrade", headers=headers).status_code == 404
        assert api.get("/v1/upgrade", headers={"Authorization": f"Bearer {fleet.key}"}).status_code == 403
        assert api.get("/v1/upgrade", params={"min_probability": 2}, headers=headers).status_code == 422
    with psycopg.connect(scored.url) as conn:
        audited = conn.execute(
            "SELECT action, subject, outcome FROM audit_log WHERE key_id = %s ORDER BY id", (key.id,)
        ).fetchall()
    assert [a for a in audited if a[0] == "upgrade.read"] == [
        ("upgrade.read", personal_subject("customer", seen[0]), "ok"),
        ("upgrade.read", personal_subject("customer", refuser), "not_found"),
        ("upgrade.read", personal_subject("customer", "nobody"), "not_found"),
    ]
    assert sum(1 for a in audited if a[0] == "upgrade.list") >= 2


def test_leads_export_lists_customer_dealer_probability_and_reasons(
    scored: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DRIVESIGHT_DATABASE_URL", scored.url)
    capsys.readouterr()
    assert cloud_main(["upgrade", "leads", "--min-probability", "0.25", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)  # stdout is one JSON document
    with psycopg.connect(scored.url) as conn:
        expected = leads(conn, 0.25)
        dealers = dict(
            conn.execute("SELECT customer_id, dealer_id FROM purchases ORDER BY purchased_at").fetchall()
        )  # the newest purchase's dealer last, so it wins
    got = document["leads"]
    assert [x["customer_id"] for x in got] == [x.customer_id for x in expected] and len(got) > 10
    for lead in got:
        assert lead["probability"] >= 0.25 and lead["dealer_id"] == dealers[lead["customer_id"]]
        assert lead["dealer_name"] == f"dealer {lead['dealer_id']}" and lead["reasons"]
    assert [x["probability"] for x in got] == sorted((x["probability"] for x in got), reverse=True)
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:  # argparse refuses it: usage and the reason on stderr
        cloud_main(["upgrade", "leads", "--min-probability", "1.5", "--json"])
    assert refused.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "probability" in captured.err


def test_audience_leaves_are_validated(scored: World) -> None:
    for bad, message in (
        ({"churn_tier": "extreme"}, "churn_tier: expected one of lapsed, quiet, high, medium, low"),
        ({"churn_tier": []}, "churn_tier"),
        ({"churn_tier": "high", "min": 1}, "nothing may stand beside 'churn_tier'"),
        ({"upgrade_intent": 0.6}, "upgrade_intent: expected"),
        ({"upgrade_intent": {"min": 1.5}}, "upgrade_intent.min: expected a probability"),
        ({"upgrade_intent": {"min": True}}, "upgrade_intent.min"),
        ({"upgrade_intent": {"min": 0.6, "max": 0.5}}, "must be below max"),
        ({"upgrade_intent": {"above": 0.5}}, "upgrade_intent: expected"),
    ):
        with pytest.raises(SegmentError, match=message):
            compile_expression({"and": [{"tag": "x"}, bad]}, [])
    params: list[object] = []
    sql = compile_expression({"upgrade_intent": {"min": 0.6}}, params)
    assert "0.6" not in sql and params == [0.6, 2.0]  # values are parameters, never in the text
    with pytest.raises(SpecError, match="churn_tier"):
        parse_spec(_campaign("bad", {"churn_tier": "HIGH"}, scored.day))


def _campaign(campaign_id: str, where: dict[str, Any], day: date) -> dict[str, Any]:
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(days=1)
    return {
        "campaign_id": campaign_id,
        "name": campaign_id,
        "audience": {"where": where},
        "arms": [{"name": "offer", "content": {"item": "UP-OFFER"}}],
        "holdout_share": 0.1,
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(days=14)).isoformat(),
    }


def test_a_campaign_to_a_tier_previews_exactly_that_tier(scored: World) -> None:
    now = datetime.combine(scored.day, datetime.min.time(), tzinfo=UTC) + timedelta(days=1, hours=4)
    customers = [str(c) for c in scored.sim.customers[-300:]]  # none erased by the test before
    with psycopg.connect(scored.url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO content_items (item_id, kind, title) VALUES ('UP-OFFER', 'offer', 'trade-in bonus')"
        )
        # churn scores by hand: an older day in one tier, the newest in another; the newest counts
        conn.execute(
            "INSERT INTO churn_models (as_of, horizon_days, features, metrics, model)"
            " VALUES ('{2026-09-01}', 30, '{}', '{}', '')"
        )
        tiers = ("high", "medium", "low")
        for day, shift in ((scored.day - timedelta(days=7), 1), (scored.day, 0)):
            conn.execute(
                "INSERT INTO churn_scores (customer_id, day, probability, tier, reasons, model_version)"
                " SELECT c, %s, 0.5, (%s::text[])[1 + (i + %s) %% 3], '[]', max(version)"
                " FROM unnest(%s::text[]) WITH ORDINALITY u (c, i), churn_models GROUP BY c, i",
                (day, list(tiers), shift, customers),
            )
        high = {c for i, c in enumerate(customers, start=1) if tiers[i % 3] == "high"}
        intent = {
            str(r[0])
            for r in conn.execute(
                "SELECT customer_id FROM upgrade_scores WHERE day = %s AND probability >= 0.15", (scored.day,)
            )
        }
        assert 10 < len(intent) < 1000
        for campaign_id, where, expected in (
            ("retain-high", {"churn_tier": "high"}, high),
            ("upgrade-likely", {"upgrade_intent": {"min": 0.15}}, intent),
            ("both", {"and": [{"churn_tier": ["high"]}, {"upgrade_intent": {"min": 0.15}}]}, high & intent),
            ("not-likely", {"not": {"upgrade_intent": {"min": 0.15}}}, None),
        ):
            if expected == set():
                continue
            create(conn, parse_spec(_campaign(campaign_id, where, scored.day)), now=now)
            shown = preview(conn, campaign_id, now=now, sample=100_000)
            previewed = {s["customer_id"] for s in shown["sample"]}
            if expected is None:  # everyone else, those never scored too
                everyone = {str(r[0]) for r in conn.execute("SELECT customer_id FROM customers")}
                expected = everyone - intent
            assert previewed == expected, campaign_id
            assert shown["audience_open"] == len(expected)


def test_a_backtest_on_the_simulated_world_beats_chance_and_the_oldest_car(world: World) -> None:
    test_day = world.day - timedelta(days=CONFIG.horizon_days)
    with psycopg.connect(world.url, autocommit=True) as conn:
        result = backtest(conn, CONFIG, training_days(test_day, CONFIG), test_day)
    # a small world (1500 customers, 50-100 buyers on the test day): bars that a model learning nothing
    # (AUC 0.5, lift 1) fails
    assert result.test_rows > 1000 and 0.01 < result.base_rate < 0.2
    assert result.auc > 0.7 and result.auc_ci[1] > result.auc > result.auc_ci[0]
    assert result.top_decile_lift > 2
    assert result.brier < result.brier_base_rate
