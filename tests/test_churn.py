"""Churn early warning on a real database: features from SQL against a hand-computed customer, tiers by the
configured thresholds, reasons that name what raised the risk, consent and erasure respected, the API's list
and customer view (audited), a trend over two runs, and a backtest on the simulated world."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cloud.access.keys import create_key
from cloud.analytics.imports import ComplaintRow
from cloud.api.app import create_app
from cloud.churn.backtest import backtest
from cloud.churn.config import ConfigError, Tiers, load_config
from cloud.churn.features import NAMES, compute_features, day_end
from cloud.churn.read import customer_churn, list_tier
from cloud.churn.run import consenting_features, latest_model, run_churn, score, training_days
from cloud.db.migrate import migrate
from cloud.privacy import consent, erasure
from cloud.privacy.audit import personal_subject
from simulators.churn_world import ChurnWorld, load_churn_world, simulate_churn_world
from tests.helpers import scratch_database

CONFIG = load_config()
KEY = b"churn-test-ledger-key-0123456789"


@dataclass(frozen=True)
class World:
    """A migrated database holding a simulated world, and the day its job scores."""

    url: str
    sim: ChurnWorld
    day: date


@pytest.fixture(scope="module")
def world(admin_database_url: str) -> Iterator[World]:
    with scratch_database(admin_database_url, "drivesight_churn") as url:
        migrate(url)
        sim = simulate_churn_world(1500, seed=7, days=150)
        with psycopg.connect(url, autocommit=True) as conn:
            load_churn_world(conn, sim)
        yield World(url, sim, sim.day(sim.days - 1))


@pytest.fixture(scope="module")
def scored(world: World) -> World:
    """The world after the job scored its last day (training the model first)."""
    run_churn(world.url, CONFIG, world.day)
    return world


def _car_owner(conn: psycopg.Connection, customer: str, purchased: date, *, marketing: bool = True) -> str:
    vehicle = f"car-{customer}"
    conn.execute("INSERT INTO customers (customer_id) VALUES (%s)", (customer,))
    conn.execute(
        "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, customer_id) VALUES (%s, now(), now(), %s)",
        (vehicle, customer),
    )
    conn.execute(
        "INSERT INTO purchases (vehicle_id, customer_id, purchased_at) VALUES (%s, %s, %s)",
        (vehicle, customer, purchased),
    )
    consent.record(conn, customer, "marketing", marketing, "dealer")
    return vehicle


def _trips(conn: psycopg.Connection, vehicle: str, days: list[date]) -> None:
    for i, d in enumerate(days):
        conn.execute(
            "INSERT INTO trips (vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s,"
            " moving_s, idle_s, max_speed_kmh, avg_speed_kmh, night_share, samples)"
            " VALUES (%s, %s, %s, %s::date + time '08:00' AT TIME ZONE 'UTC',"
            " %s::date + time '08:30' AT TIME ZONE 'UTC', 10, 1800, 1700, 100, 80, 30, 0, 0)",
            (vehicle, f"H{i}", i, d, d),
        )


def test_features_match_a_hand_computed_customer(world: World) -> None:
    day = date(2026, 7, 1)
    with psycopg.connect(world.url, autocommit=True) as conn:
        car = _car_owner(conn, "hand-1", date(2024, 1, 15))
        # 6 trips in the last 4 weeks (days 0-27 back), 4 in the 8 before, one after the day (unseen)
        recent = [day - timedelta(days=k) for k in (3, 5, 10, 12, 20, 27)]
        earlier = [day - timedelta(days=k) for k in (28, 40, 60, 83)]
        _trips(conn, car, [*recent, *earlier, day + timedelta(days=1)])
        for k, back in enumerate((100, 400)):  # one visit within 12 months, one before
            conn.execute(
                "INSERT INTO service_visits (visit_id, vehicle_id, visited_at, kind)"
                " VALUES (%s, %s, %s, 'x')",
                (f"hand-visit-{k}", car, day - timedelta(days=back)),
            )
        # (opened days back, resolved days back): resolved 5 days after the day: still open on it
        complaints = ((30, None), (200, 190), (500, None), (-3, None), (60, -5))
        for k, (back, done) in enumerate(complaints):
            conn.execute(
                "INSERT INTO complaints (complaint_id, customer_id, opened_at, category, resolved,"
                " resolved_at)"
                " VALUES (%s, 'hand-1', %s, 'service', %s, %s)",
                (
                    f"hand-q-{k}",
                    day - timedelta(days=back),
                    done is not None,
                    None if done is None else day - timedelta(days=done),
                ),
            )
        # faults: before the last visit (repaired), two codes after it (one twice), one outside 180 days
        for k, (back, code) in enumerate(((150, "P0301"), (50, "P0420"), (20, "P0420"), (10, "P0171"))):
            conn.execute(
                "INSERT INTO dtc_reports (vehicle_id, seq, idx, code, first_seen)"
                " VALUES (%s, %s, 0, %s, %s::date + time '09:00' AT TIME ZONE 'UTC')",
                (car, 100 + k, code, day - timedelta(days=back)),
            )
        # pushes within 90 days: P1 delivered and opened, P2 delivered only; P3 100 days back
        for k, (push, action, back) in enumerate(
            (("P1", "delivered", 5), ("P1", "opened", 5), ("P2", "delivered", 40), ("P3", "delivered", 100))
        ):
            conn.execute(
                "INSERT INTO push_feedback (vehicle_id, seq, push_id, action, at)"
                " VALUES (%s, %s, %s, %s, %s::date + time '09:00' AT TIME ZONE 'UTC')",
                (car, 200 + k, push, action, day - timedelta(days=back)),
            )
        features = compute_features(conn, day, CONFIG, ["hand-1"])
    assert features.customers == ["hand-1"]
    got = dict(zip(NAMES, features.values[0].tolist(), strict=True))
    warranty_end = date(2027, 1, 15)  # 36 months after the purchase
    assert got == pytest.approx(
        {
            "trips_per_week_4w": 6 / 4,
            "activity_trend": (6 / 4 - 4 / 8) / (4 / 8 + 1),
            "days_since_last_trip": 3,
            "service_visits_12m": 1,
            "days_since_service": 100,
            "complaints_12m": 3,
            # the one 500 days back is unresolved too, the one resolved after the day was open on it; the
            # future one unseen
            "unresolved_complaints": 3,
            "warranty_days_left": (warranty_end - day).days,
            "open_fault_codes": 2,
            "pushes_received_90d": 2,
            "push_open_rate_90d": 0.5,
            "vehicle_age_years": (day - date(2024, 1, 15)).days / 365.25,
        }
    )


def test_tiers_follow_the_configured_thresholds(scored: World) -> None:
    world = scored
    tiers = Tiers(basis="probability", high=0.4, medium=0.2)
    assert [tiers.of(p) for p in (0.0, 0.19999, 0.2, 0.39, 0.4, 1.0)] == [
        "low", "low", "medium", "medium", "high", "high"
    ]  # fmt: skip
    # relative to the base rate: multiples of it
    relative = Tiers(basis="base_rate", high=3.0, medium=1.5)
    assert relative.thresholds(0.02) == pytest.approx((0.06, 0.03))
    assert [relative.of(p, 0.02) for p in (0.029, 0.03, 0.059, 0.06)] == ["low", "medium", "medium", "high"]
    with pytest.raises(ValueError, match="base rate"):
        relative.thresholds(None)
    # by share: the riskiest tenth, then the next fifth
    shares = Tiers(basis="share", high=0.1, medium=0.2)
    assert shares.thresholds(active=np.arange(100) / 100) == pytest.approx((0.90, 0.70))
    with pytest.raises(ValueError, match="below high"):
        Tiers(high=0.2, medium=0.3)
    with pytest.raises(ValueError, match="probability below 1"):
        Tiers(basis="probability", high=3.0, medium=1.5)
    with pytest.raises(ValueError, match="exceed 1"):
        Tiers(basis="share", high=0.5, medium=0.6)
    with psycopg.connect(world.url) as conn:
        stored = latest_model(conn)
        assert stored is not None
        matrix = consenting_features(conn, world.day, CONFIG)
        rows = conn.execute(
            "SELECT probability, tier FROM churn_scores WHERE day = %s", (world.day,)
        ).fetchall()
    assert len(rows) == len(matrix.customers) > 1000
    assert {t for _p, t in rows} == {"lapsed", "quiet", "high", "medium", "low"}
    # customers silent (no trip, no visit) for longer than the horizon have churned by definition: lapsed,
    # never a risk tier, whatever the thresholds; silent for longer than active_days: quiet
    days_silent = np.minimum(matrix.column("days_since_last_trip"), matrix.column("days_since_service"))
    silent = days_silent > CONFIG.horizon_days
    quiet = (days_silent > CONFIG.active_days) & ~silent
    assert silent.sum() > 50 and quiet.sum() > 10
    gone = score(stored, matrix.rows(silent), CONFIG)
    assert set(gone.probability.tolist()) == {1.0} and set(gone.tiers) == {"lapsed"}
    assert sum(1 for _p, t in rows if t == "lapsed") == silent.sum()
    assert sum(1 for _p, t in rows if t == "quiet") == quiet.sum()
    # the active customers: the riskiest tenth is high, the next fifth medium
    active_p = np.array([p for p, t in rows if t in ("high", "medium", "low")])
    for p, t in rows:
        if t in ("high", "medium", "low"):
            assert t == CONFIG.tiers.of(p, active=active_p), (p, t)
    high = [p for p, t in rows if t == "high"]
    assert len(high) == pytest.approx(0.1 * len(active_p), abs=3)
    # other thresholds, other tiers: the same probabilities, cut where the configuration says
    strict = CONFIG.model_copy(update={"tiers": Tiers(basis="probability", high=0.9, medium=0.5)})
    scores = score(stored, matrix, strict)
    assert scores.thresholds == {"high": 0.9, "medium": 0.5}
    assert (scores.tiers.count("lapsed"), scores.tiers.count("quiet")) == (silent.sum(), quiet.sum())
    assert all(
        t == strict.tiers.of(float(p))
        for p, t in zip(scores.probability, scores.tiers, strict=True)
        if t not in ("lapsed", "quiet")
    )
    assert scores.tiers.count("high") < len(high)


def test_a_complaint_resolution_must_follow_its_opening() -> None:
    row = {"complaint_id": "q", "customer_id": "c", "opened_at": "2026-08-01", "category": "service"}
    assert ComplaintRow.model_validate({**row, "resolved": True, "resolved_at": "2026-08-03"}).resolved_at
    with pytest.raises(ValidationError, match="resolved is false"):
        ComplaintRow.model_validate({**row, "resolved": False, "resolved_at": "2026-08-03"})
    with pytest.raises(ValidationError, match="before opened_at"):
        ComplaintRow.model_validate({**row, "resolved": True, "resolved_at": "2026-07-30"})


def test_a_config_with_bad_tiers_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "churn.toml"
    path.write_text("version = 1\n[tiers]\nhigh = 0.1\nmedium = 0.2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="tiers"):
        load_config(path)


def test_reasons_are_what_raised_the_risk(scored: World) -> None:
    world = scored
    day = world.day
    with psycopg.connect(world.url, autocommit=True) as conn:
        car = _car_owner(conn, "hand-2", day - timedelta(days=760))
        # a steady driver (three trips a week) who reads the pushes, whose car has not been serviced for two
        # years
        _trips(conn, car, [day - timedelta(days=k) for k in range(0, 84, 2)])
        pushes = (("delivered", 10), ("opened", 10), ("delivered", 31), ("delivered", 52), ("opened", 52))
        for k, (action, back) in enumerate(pushes):
            conn.execute(
                "INSERT INTO push_feedback (vehicle_id, seq, push_id, action, at)"
                " VALUES (%s, %s, %s, %s, %s)",
                (car, 100 + k, f"hand-2-{back}", action, day_end(day - timedelta(days=back))),
            )
        conn.execute(
            "INSERT INTO service_visits (visit_id, vehicle_id, visited_at, kind)"
            " VALUES ('hand-2-v', %s, %s, 'x')",
            (car, day - timedelta(days=730)),
        )
        stored = latest_model(conn)
        assert stored is not None
        matrix = compute_features(conn, day, CONFIG, ["hand-2"])
        everyone = consenting_features(conn, day, CONFIG)
    contributions = stored.model.contributions(everyone.values)
    # the reasons' method: per row the contributions and the expected log-odds add up to the log-odds
    np.testing.assert_allclose(
        contributions.sum(axis=1) + stored.model.expected_log_odds(),
        stored.model.log_odds(everyone.values),
        atol=1e-6,
    )
    (mine,) = score(stored, matrix, CONFIG).reasons
    assert "days_since_service" in [r["feature"] for r in mine], mine
    assert all(float(r["contribution"]) > 0 for r in mine)
    assert [r["contribution"] for r in mine] == sorted((r["contribution"] for r in mine), reverse=True)


def test_withdrawn_and_erased_customers_are_not_scored(world: World) -> None:
    day = world.day + timedelta(days=1)
    withdrawn, erased = (str(c) for c in world.sim.customers[world.sim.marketing][:2])
    with psycopg.connect(world.url, autocommit=True) as conn:
        consent.record(conn, withdrawn, "marketing", False, "app")
        request = erasure.request_erasure(conn, erased, key_id=None)
        erasure.confirm_erasure(conn, request.request_id, request.token, key_id=None, ledger_key=KEY)
    report = run_churn(world.url, CONFIG, day)
    assert report.scored > 1000
    with psycopg.connect(world.url) as conn:
        scored = {
            str(r[0]) for r in conn.execute("SELECT customer_id FROM churn_scores WHERE day = %s", (day,))
        }
        refused = {str(c) for c in world.sim.customers[~world.sim.marketing]}
        assert withdrawn not in scored and erased not in scored and not scored & refused
        # the withdrawn customer's earlier scores are not shown either
        assert customer_churn(conn, withdrawn) is None
        assert conn.execute(
            "SELECT count(*) FROM churn_scores WHERE customer_id = %s", (erased,)
        ).fetchone() == (0,)
    with psycopg.connect(world.url, autocommit=True) as conn:
        consent.record(conn, withdrawn, "marketing", True, "app")


def test_history_shows_a_trend_over_two_runs(world: World) -> None:
    first, second = world.day - timedelta(days=14), world.day
    run_churn(world.url, CONFIG, second)
    # an earlier day scored later: never by the model that learnt from days after it (its future)
    earlier = run_churn(world.url, CONFIG, first)
    assert earlier.trained and earlier.why_trained
    with psycopg.connect(world.url) as conn:
        used = latest_model(conn, first - timedelta(days=CONFIG.horizon_days))
    assert used is not None and used.version == earlier.model_version
    assert max(used.as_of) <= first - timedelta(days=CONFIG.horizon_days)
    again = run_churn(world.url, CONFIG, second)
    assert not again.trained and again.model_version == earlier.model_version
    with psycopg.connect(world.url) as conn:
        moved = conn.execute(
            "SELECT a.customer_id, b.probability - a.probability FROM churn_scores a"
            " JOIN churn_scores b ON b.customer_id = a.customer_id AND b.day = %s"
            " WHERE a.day = %s ORDER BY abs(b.probability - a.probability) DESC LIMIT 1",
            (second, first),
        ).fetchone()
        assert moved is not None and abs(moved[1]) > 0.05
        found = customer_churn(conn, str(moved[0]))
    assert found is not None
    days = [d for d, _p, _t in found.history]
    assert first in days and second in days and days == sorted(days)
    assert found.latest.day == max(days)
    assert found.trend == pytest.approx(found.history[-1][1] - found.history[0][1], abs=1e-6)


def test_the_api_lists_the_high_tier_with_reasons(scored: World) -> None:
    world = scored  # scored on its day; scored again two days later: a history of two days at least
    report = run_churn(world.url, CONFIG, world.day + timedelta(days=2))
    high = report.thresholds["high"]
    with psycopg.connect(world.url, autocommit=True) as conn:
        key = create_key(conn, name="retention", scopes=["marketing:read"])
        fleet = create_key(conn, name="fleet", scopes=["fleet:read"])
        refuser = str(world.sim.customers[~world.sim.marketing][0])
        expected = [s.customer_id for s in list_tier(conn, "high", limit=100_000)]
    headers = {"Authorization": f"Bearer {key.key}"}
    with TestClient(create_app(world.url)) as api:
        seen: list[str] = []
        cursor = ""
        while True:
            page = api.get(
                "/v1/churn", params={"tier": "high", "limit": 40, "cursor": cursor}, headers=headers
            )
            assert page.status_code == 200, page.text
            body = page.json()
            for item in body["items"]:
                # probabilities are stored as float4: equal to the threshold within its precision
                assert item["tier"] == "high" and high * (1 - 1e-6) <= item["probability"] < 1
                assert 1 <= len(item["reasons"]) <= 3
                assert {"feature", "value", "contribution"} <= set(item["reasons"][0])
            seen += [i["customer_id"] for i in body["items"]]
            if body["next_cursor"] is None:
                break
            cursor = body["next_cursor"]
        assert seen == expected and len(seen) > 40  # every high-risk customer once, riskiest first
        one = api.get(f"/v1/customers/{seen[0]}/churn", headers=headers)
        assert one.status_code == 200, one.text
        assert one.json()["tier"] == "high" and len(one.json()["history"]) >= 2
        assert one.json()["trend"] is not None
        assert api.get(f"/v1/customers/{refuser}/churn", headers=headers).status_code == 404
        assert api.get("/v1/customers/nobody/churn", headers=headers).status_code == 404
        assert api.get("/v1/churn", headers={"Authorization": f"Bearer {fleet.key}"}).status_code == 403
        assert api.get("/v1/churn", params={"tier": "extreme"}, headers=headers).status_code == 422
    with psycopg.connect(world.url) as conn:
        audited = conn.execute(
            "SELECT action, subject, outcome FROM audit_log WHERE key_id = %s ORDER BY id", (key.id,)
        ).fetchall()
    assert [a for a in audited if a[0] == "churn.read"] == [
        ("churn.read", personal_subject("customer", seen[0]), "ok"),
        ("churn.read", personal_subject("customer", refuser), "not_found"),
        ("churn.read", personal_subject("customer", "nobody"), "not_found"),
    ]
    assert sum(1 for a in audited if a[0] == "churn.list") >= 2


def test_a_stale_model_is_replaced_and_the_history_is_bounded(scored: World) -> None:
    world = scored
    day = world.day + timedelta(days=3)
    with psycopg.connect(world.url, autocommit=True) as conn:
        newest = latest_model(conn)
        assert newest is not None
        # a score day older than keep_days, and a model no kept score refers to
        old = world.day - timedelta(days=CONFIG.keep_days + 10)
        conn.execute(
            "INSERT INTO churn_scores (customer_id, day, probability, tier, reasons, model_version)"
            " SELECT customer_id, %s, probability, tier, reasons, model_version FROM churn_scores"
            " WHERE day = %s LIMIT 5",
            (old, world.day),
        )
        orphan = conn.execute(
            "INSERT INTO churn_models (as_of, horizon_days, features, metrics, model)"
            " SELECT as_of, horizon_days, features, metrics, model FROM churn_models WHERE version = %s"
            " RETURNING version",
            (newest.version,),
        ).fetchone()
        assert orphan is not None
        # the orphan is the newest model now: kept; one more makes it old and unreferenced
        conn.execute(
            "INSERT INTO churn_models (as_of, horizon_days, features, metrics, model)"
            " SELECT as_of, horizon_days, features, metrics, model FROM churn_models WHERE version = %s",
            (newest.version,),
        )
    stale = CONFIG.model_copy(update={"retrain_after_days": 1})
    report = run_churn(world.url, stale, day)
    assert report.trained and "retrain_after_days" in report.why_trained
    assert report.pruned["score_rows"] == 5 and report.pruned["models"] >= 2
    with psycopg.connect(world.url) as conn:
        assert conn.execute("SELECT count(*) FROM churn_scores WHERE day = %s", (old,)).fetchone() == (0,)
        kept = {r[0] for r in conn.execute("SELECT version FROM churn_models")}
        used = {r[0] for r in conn.execute("SELECT DISTINCT model_version FROM churn_scores")}
    assert orphan[0] not in kept and used <= kept and report.model_version in kept
    # within retrain_after_days the stored model is used
    assert not run_churn(world.url, CONFIG, day).trained


def test_a_backtest_on_the_simulated_world_beats_chance_and_the_baseline(world: World) -> None:
    test_day = world.day - timedelta(days=CONFIG.horizon_days)
    train = training_days(test_day, CONFIG)
    with psycopg.connect(world.url, autocommit=True) as conn:
        result = backtest(conn, CONFIG, train, test_day)
    # a small world (1500 customers, 10-30 leavers on the test day; seeds 1-4 gave AUC 0.62-0.79, lift
    # 3.1-5.6): bars that a model learning nothing (AUC 0.5, lift 1) fails, not the 100,000-customer figures
    assert result.test_rows > 800 and 0.003 < result.base_rate < 0.1
    assert result.auc > 0.6 and result.auc_ci[1] > result.auc > result.auc_ci[0]
    assert result.top_decile_lift > 2
    assert result.brier < 1.05 * result.brier_base_rate
    assert sum(b["rows"] for b in result.reliability) == result.test_rows
