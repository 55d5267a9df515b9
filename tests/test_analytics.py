"""Analytics: identification, features and tags, preferences, clusters, segments, incremental runs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from cloud.analytics.clusters import describe
from cloud.analytics.config import ConfigError, load_config
from cloud.analytics.identify import link_accounts, undo_merge
from cloud.analytics.imports import import_file
from cloud.analytics.run import run_analytics
from cloud.analytics.segments import SegmentError, age_band, compile_expression
from simulators.population import simulate_population
from simulators.population_files import IMPORT_ORDER, load_trips, write_population_files
from tests.helpers import scratch_database


def _csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


def _crm(conn: psycopg.Connection, tmp: Path) -> None:
    """Three customers (two share name and birth year), their cars, five accounts, two items."""
    import_file(
        conn,
        "customers",
        _csv(
            tmp / "customers.csv",
            """
customer_id,name,phone,email,birth_year,city,income_band,education
C1,wang wei,13800000001,wei@example.com,1980,x,high,master
C2,Wang Wei,13800000002,,1980,x,low,secondary
C3,li na,13800000003,na@example.com,1990,z,middle,bachelor
""",
        ),
    )
    import_file(
        conn,
        "vehicles",
        _csv(
            tmp / "vehicles.csv",
            """
vehicle_id,customer_id,model,model_year,powertrain,purchased_at
V1,C1,DS-SUV,2024,ice,2024-03-01
V2,C2,DS-EV5,2025,ev,2025-01-10
V3,C3,DS-Compact,2023,ice,2023-06-30
""",
        ),
    )
    import_file(
        conn,
        "accounts",
        _csv(
            tmp / "accounts.csv",
            """
account_id,channel,name,phone,email,birth_year,city
A1,site,W. Wei,+86 138-0000-0001,,,
A2,app,,,WEI@EXAMPLE.COM,,
A3,app,Li  NA,,,1990,z
A4,site,WANG WEI,,,1980,x
A5,site,nobody,15900000000,,1970,q
""",
        ),
    )
    import_file(
        conn,
        "items",
        _csv(
            tmp / "items.csv",
            """
item_id,kind,categories
I1,article,suv:1.0;family:0.5
I2,video,electric:0.8
""",
        ),
    )


def test_identification_by_rule_with_ambiguity_and_undo(fresh_database: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _crm(conn, tmp_path)
        results = {r.rule: (r.linked, r.ambiguous) for r in link_accounts(conn)}
        # A1 by phone (formatted), A2 by email (case), A3 by name+birth+city (spaces, case);
        # A4 matches C1 and C2 on name, birth year and city: ambiguous, not guessed; A5 matches nobody
        assert results == {"phone": (1, 0), "email": (1, 0), "name_birth_city": (1, 1)}
        merges = conn.execute("SELECT rule, customer_id, links FROM identity_merges ORDER BY 1").fetchall()
        assert merges == [("email", "C1", 1), ("name_birth_city", "C3", 1), ("phone", "C1", 1)]
        links = dict(
            conn.execute("SELECT account_id, rule || ':' || customer_id FROM identity_links").fetchall()
        )
        assert links == {"A1": "phone:C1", "A2": "email:C1", "A3": "name_birth_city:C3"}
        fuzzy = conn.execute("SELECT merge_id FROM identity_merges WHERE rule = 'name_birth_city'").fetchone()
        assert fuzzy is not None
        assert undo_merge(conn, int(fuzzy[0])) == 1
        with pytest.raises(ValueError, match="already undone"):
            undo_merge(conn, int(fuzzy[0]))
        # the undone pair is not linked again; history is kept
        assert {r.rule: r.linked for r in link_accounts(conn)} == {
            "phone": 0,
            "email": 0,
            "name_birth_city": 0,
        }
        rows = conn.execute(
            "SELECT account_id, undone_at IS NOT NULL FROM identity_links ORDER BY 1"
        ).fetchall()
        assert rows == [("A1", False), ("A2", False), ("A3", True)]


def _trip(
    conn: psycopg.Connection,
    vehicle: str,
    n: int,
    start: datetime,
    km: float,
    hours: float,
    night: float,
    harsh: int,
    usage: dict[str, object] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO trips (vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s,"
        " moving_s, idle_s, max_speed_kmh, avg_speed_kmh, night_share, samples, event_counts, eco_score,"
        " feature_usage)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, 0, 100, 50, %s, 0, %s, 80, %s)",
        (
            vehicle,
            f"{vehicle}-{n}",
            n,
            start,
            start + timedelta(hours=hours),
            km,
            hours * 3600,
            hours * 3600,
            night,
            json.dumps({"harsh_brake": harsh}),
            json.dumps(usage or {}),
        ),
    )


def _crm_and_c1_trips(conn: psycopg.Connection, tmp: Path, t0: datetime) -> None:
    """The CRM fixture and C1's two trips: trip 1 is 1 h at night share 1.0, trip 2 is 2 h at 0.25 -> night
    share (1 + 0.5) / 3 h = 0.5; 30 harsh events over 200 km -> 15 per 100 km."""
    _crm(conn, tmp)
    _trip(conn, "V1", 1, t0, km=50, hours=1, night=1.0, harsh=3)
    _trip(conn, "V1", 2, t0 + timedelta(days=1), km=150, hours=2, night=0.25, harsh=27)


CONFIG = """
version = 7

[features.trips]
sql = "count(*)"
default = 0

[features.night_share]
sql = "sum(night_share * duration_s) / nullif(sum(duration_s), 0)"

[features.harsh_per_100km]
sql = "100.0 * sum((event_counts->>'harsh_brake')::int) / nullif(sum(distance_km), 0)"

[tags.night_driver]
min_trips = 2
conditions = [{ feature = "night_share", op = ">=", threshold = 0.3, full = 0.7 }]

[tags.aggressive]
min_trips = 2
conditions = [{ feature = "harsh_per_100km", op = ">=", threshold = 10.0, full = 20.0 }]

[clustering]
features = ["night_share", "harsh_per_100km"]
k_range = [2, 2]

[segments.night_or_rough]
where = { or = [{ tag = "night_driver" }, { tag = "aggressive", min_score = 0.9 }] }

[segments.night_not_ev]
where = { and = [{ tag = "night_driver" }, { not = { attr = "powertrain", op = "=", value = "ev" } }] }
"""


def test_features_tags_preferences_and_segments_on_a_small_fixture(
    fresh_database: str, tmp_path: Path
) -> None:
    t0 = datetime(2026, 9, 1, 8, tzinfo=UTC)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _crm_and_c1_trips(conn, tmp_path, t0)
        # C2: 2 calm day trips; C3: one trip (too few for any tag)
        _trip(conn, "V2", 1, t0, km=100, hours=2, night=0.0, harsh=1)
        _trip(conn, "V2", 2, t0 + timedelta(days=1), km=100, hours=2, night=0.0, harsh=0)
        _trip(conn, "V3", 1, t0, km=10, hours=1, night=1.0, harsh=5)
        import_file(
            conn,
            "interactions",
            _csv(
                tmp_path / "interactions.csv",
                """
account_id,item_id,kind,at
A1,I1,view,2026-09-01T10:00:00Z
A2,I2,collect,2026-09-01T11:00:00Z
A1,I1,comment,2026-09-02T10:00:00Z
A3,I2,view,2026-09-02T10:00:00Z
""",
            ),
        )
    config = load_config(_csv(tmp_path / "portrait.toml", CONFIG))
    report = run_analytics(fresh_database, config, full=True)
    assert report["mode"] == "full" and report["customers"] == 3
    with psycopg.connect(fresh_database) as conn:
        features = dict(conn.execute("SELECT customer_id, features FROM customer_features").fetchall())
        assert features["C1"] == {"trips": 2, "night_share": 0.5, "harsh_per_100km": 15.0}
        assert features["C2"] == {"trips": 2, "night_share": 0.0, "harsh_per_100km": 0.5}
        tags = conn.execute(
            "SELECT customer_id, tag, score, evidence, config_version FROM customer_tags ORDER BY 1, 2"
        ).fetchall()
        # scores: 0.5 at the threshold rising to 1 at full: night 0.5 -> 0.5 + 0.5 * (0.2 / 0.4) = 0.75;
        # harsh 15 -> 0.5 + 0.5 * (5 / 10) = 0.75. C3 has one trip: no tag despite its night driving.
        assert tags == [
            ("C1", "aggressive", 0.75, {"trips": 2.0, "harsh_per_100km": 15.0}, 7),
            ("C1", "night_driver", 0.75, {"trips": 2.0, "night_share": 0.5}, 7),
        ]
        # P(u, j) = sum_i r(u, i) m_j(i) / sum_i r(u, i): C1 has A1 (view + comment of I1: r = 3) and A2
        # (collect of I2: r = 3): suv 3 * 1.0 / 6, family 3 * 0.5 / 6, electric 3 * 0.8 / 6.
        # C3's account A3 was linked by name, birth year and city: one view of I2.
        prefs = conn.execute(
            "SELECT customer_id, category, round(score::numeric, 4) FROM customer_preferences ORDER BY 1, 2"
        ).fetchall()
        assert [(c, k, float(s)) for c, k, s in prefs] == [
            ("C1", "electric", 0.4),
            ("C1", "family", 0.25),
            ("C1", "suv", 0.5),
            ("C3", "electric", 0.8),
        ]
        segments = dict(conn.execute("SELECT name, size FROM segments").fetchall())
        assert segments == {
            "night_or_rough": 1,
            "night_not_ev": 1,
        }  # C1 is a night driver; aggressive 0.75 < 0.9
        clusters = dict(conn.execute("SELECT customer_id, cluster FROM customer_clusters").fetchall())
        # standardized, C3 (night share 1.0, 50 harsh per 100 km) stands apart from C1 and C2
        assert set(clusters) == {"C1", "C2", "C3"} and clusters["C1"] == clusters["C2"] != clusters["C3"]
    from fastapi.testclient import TestClient

    from cloud.access.keys import create_key
    from cloud.api.app import create_app
    from cloud.privacy import consent

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        key = create_key(conn, name="analytics test", scopes=["marketing:read", "rd:read"]).key
        consent.record(conn, "C1", "marketing", True, "app")  # portraits are shown with marketing consent
    with TestClient(create_app(fresh_database), headers={"Authorization": f"Bearer {key}"}) as api:
        p = api.get("/v1/customers/C1/portrait").json()
        assert [t["tag"] for t in p["tags"]] == ["aggressive", "night_driver"]
        assert p["preferences"] == pytest.approx({"suv": 0.5, "electric": 0.4, "family": 0.25})
        assert p["segments"] == ["night_not_ev", "night_or_rough"] and p["features"]["trips"] == 2
        assert p["cluster"] == clusters["C1"] and p["cluster_description"]
        assert api.get("/v1/customers/nobody/portrait").status_code == 404
        assert {s["name"]: s["size"] for s in api.get("/v1/segments").json()["items"]} == segments
        window = {"since": "2026-08-01T00:00:00Z", "until": "2026-10-01T00:00:00Z", "min_vehicles": 1}
        groups = api.get("/v1/insights", params={"by": "model", **window}).json()
        # three models of one or two cars each: each group is under the minimum size, so R&D sees none
        assert groups["items"] == [] and groups["suppressed_groups"] == 3
        assert api.get("/v1/insights", params={"by": "colour", **window}).status_code == 422


def test_a_tag_added_by_configuration_appears_without_code(fresh_database: str, tmp_path: Path) -> None:
    extra = (
        CONFIG.replace("version = 7", "version = 8")
        + """
[features.long_trip_share]
sql = "avg((distance_km >= 100)::int)"

[tags.road_tripper]
description = "half the trips or more are 100 km or longer"
min_trips = 2
conditions = [{ feature = "long_trip_share", op = ">=", threshold = 0.5, full = 1.0 }]
"""
    )
    t0 = datetime(2026, 9, 1, 8, tzinfo=UTC)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _crm(conn, tmp_path)
        _trip(conn, "V2", 1, t0, km=120, hours=2, night=0.0, harsh=0)
        _trip(conn, "V2", 2, t0 + timedelta(days=1), km=30, hours=1, night=0.0, harsh=0)
    run_analytics(fresh_database, load_config(_csv(tmp_path / "portrait.toml", extra)), full=True)
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute(
            "SELECT customer_id, tag, score, config_version FROM customer_tags"
        ).fetchall() == [("C2", "road_tripper", 0.5, 8)]


def test_bad_configurations_are_refused_by_name(fresh_database: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tag 'x' uses unknown feature"):
        load_config(
            _csv(
                tmp_path / "a.toml",
                CONFIG
                + '\n[tags.x]\nconditions = [{ feature = "nope", op = ">=", threshold = 1, full = 2 }]',
            )
        )
    with pytest.raises(ConfigError, match=r"full .* must lie beyond the threshold"):
        load_config(
            _csv(
                tmp_path / "b.toml",
                CONFIG.replace("threshold = 10.0, full = 20.0", "threshold = 10.0, full = 5.0"),
            )
        )
    broken = load_config(_csv(tmp_path / "c.toml", CONFIG.replace("sum(night_share", "sum(night_shar")))
    with pytest.raises(ConfigError, match="feature 'night_share': column \"night_shar\" does not exist"):
        run_analytics(fresh_database, broken, full=True)
    assert load_config().version >= 1  # the shipped configuration is valid


def test_segment_expressions_compile_with_parameters_or_say_where_they_are_wrong() -> None:
    params: list[object] = []
    sql = compile_expression(
        {"and": [{"tag": "eco"}, {"attr": "income_band", "op": "in", "value": ["high"]}]}, params
    )
    assert "(c.income_band = ANY (%s))" in sql and params == ["eco", 0.0, ["high"]]
    for expr, message in [
        ({"tag": "eco", "score": 1}, r"where: unknown key\(s\) \['score'\]"),
        ({"and": [{"attr": "shoe_size", "value": 1}]}, r"where.and\[0\]: unknown attribute 'shoe_size'"),
        ({"or": []}, "where.or: expected a non-empty list"),
        ({"attr": "region", "op": "~", "value": "x"}, "unknown operator '~'"),
        ({"xor": []}, r"unknown condition \['xor'\]"),
    ]:
        with pytest.raises(SegmentError, match=message):
            compile_expression(expr, [])
    assert [age_band(y, 2026) for y in (2000, 1996, 1990, 1966, 1950)] == [
        "18-29",
        "30-39",
        "30-39",
        "60+",
        "60+",
    ]


def test_cluster_words_name_the_strongest_features() -> None:
    words = describe(
        np.array([1.5, -0.2, -0.8]),
        np.array([0.6, 3.0, 20.0]),
        np.array([0.2, 3.1, 40.0]),
        ["night_share", "harsh_per_100km", "avg_trip_km"],
    )
    assert words == "high night share (0.6; all 0.2), low avg trip km (20; all 40)"
    assert (
        describe(np.zeros(2), np.ones(2), np.ones(2), ["a", "b"]) == "close to the average on every feature"
    )


SNAPSHOT = {
    "customer_features": "SELECT customer_id, features FROM customer_features ORDER BY 1",
    "customer_tags": "SELECT customer_id, tag, score, evidence FROM customer_tags ORDER BY 1, 2",
    "customer_preferences": "SELECT customer_id, category, score FROM customer_preferences ORDER BY 1, 2",
    "customer_clusters": "SELECT customer_id, cluster, model_version FROM customer_clusters ORDER BY 1",
    "segment_members": "SELECT segment, customer_id FROM segment_members ORDER BY 1, 2",
}


def _close(a: object, b: object) -> bool:
    """Equal, floats within 1e-9 relative, through tuples, lists and dicts."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    if isinstance(a, tuple | list) and isinstance(b, tuple | list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return a == b


def _snapshot(url: str) -> dict[str, list[tuple[object, ...]]]:
    with psycopg.connect(url) as conn:
        return {name: conn.execute(query).fetchall() for name, query in SNAPSHOT.items()}  # type: ignore[arg-type]


def test_an_incremental_run_equals_a_full_recompute(fresh_database: str, tmp_path: Path) -> None:
    pop = simulate_population(120, seed=4, days=14)
    files = write_population_files(pop, tmp_path / "files")
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        for kind in IMPORT_ORDER:
            import_file(conn, kind, files[kind])
        load_trips(conn, pop)
    config = load_config()
    first = run_analytics(fresh_database, config, full=True)
    assert first["customers"] == 120
    before = _snapshot(fresh_database)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        # new data of every kind: trips for three cars, interactions, a changed customer, an undone merge
        conn.execute(
            "INSERT INTO trips (vehicle_id, trip_id, seq, started_at, ended_at, distance_km, duration_s,"
            " moving_s, idle_s, max_speed_kmh, avg_speed_kmh, night_share, samples, event_counts, eco_score)"
            " SELECT vehicle_id, trip_id || 'x', seq, started_at + INTERVAL '30 days',"
            " ended_at + INTERVAL '30 days',"
            " distance_km * 3, duration_s, moving_s, idle_s, max_speed_kmh, avg_speed_kmh, 1.0, 0,"
            " '{\"harsh_brake\": 9}', 40 FROM trips WHERE vehicle_id IN (SELECT vehicle_id FROM vehicles"
            " ORDER BY vehicle_id LIMIT 3)"
        )
        accounts = conn.execute(
            "SELECT account_id FROM identity_links WHERE undone_at IS NULL ORDER BY 1 OFFSET 50 LIMIT 2"
        ).fetchall()
        import_file(
            conn,
            "interactions",
            _csv(
                tmp_path / "more.csv",
                "account_id,item_id,kind,at\n"
                + "\n".join(
                    f"{a},I00003,collect,2026-10-0{i + 1}T10:00:00Z" for i, (a,) in enumerate(accounts)
                ),
            ),
        )
        import_file(
            conn,
            "customers",
            _csv(tmp_path / "changed.csv", "customer_id,birth_year,income_band\nC0000005,1999,high"),
        )
        merge = conn.execute(
            "SELECT merge_id FROM identity_links WHERE undone_at IS NULL ORDER BY account_id DESC LIMIT 1"
        ).fetchone()
        assert merge is not None
        undo_merge(conn, int(merge[0]))
    # everything here was written within seconds: without the default overlap the run sees only the news
    incremental = run_analytics(fresh_database, config, overlap=timedelta(0))
    assert incremental["mode"] == "incremental" and 5 <= incremental["customers"] < 120
    after_incremental = _snapshot(fresh_database)
    changed = [t for t in SNAPSHOT if after_incremental[t] != before[t]]
    assert {"customer_features", "customer_tags", "customer_preferences"} <= set(changed)  # the news arrived
    run_analytics(fresh_database, config, full=True)
    after_full = _snapshot(fresh_database)
    for table in SNAPSHOT:  # float aggregates summed in another order agree to ~1e-12 (portraits.py)
        assert len(after_full[table]) == len(after_incremental[table]), table
        for a, b in zip(after_full[table], after_incremental[table], strict=True):
            assert _close(a, b), (table, a, b)


def test_insights_by_model_with_intervals(fresh_database: str, tmp_path: Path) -> None:
    from cloud.analytics.insights import insights, poisson_interval, wilson

    t0 = datetime(2026, 9, 1, 8, tzinfo=UTC)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _crm(conn, tmp_path)
        usage = {"Vehicle.ADAS.CruiseControl.IsActive": {"activations": 1, "active_s": 60}}
        _trip(conn, "V1", 1, t0, km=50, hours=1, night=0, harsh=3, usage=usage)
        _trip(conn, "V1", 2, t0 + timedelta(days=1), km=150, hours=2, night=0, harsh=1)
        _trip(conn, "V3", 1, t0, km=100, hours=2, night=0, harsh=0, usage=usage)
        _trip(conn, "V3", 2, t0 - timedelta(days=40), km=100, hours=2, night=0, harsh=9)  # outside the window
        conn.execute("UPDATE trips SET fuel_used_l = distance_km * 0.07 WHERE vehicle_id = 'V1'")
        conn.execute(
            "INSERT INTO dtc_reports (vehicle_id, seq, idx, code, first_seen)"
            " VALUES ('V1', 9, 0, 'P0420', %s)",
            (t0,),
        )
        result = insights(
            conn, ("powertrain",), t0 - timedelta(days=1), t0 + timedelta(days=7), min_vehicles=2
        )
    assert [g["powertrain"] for g in result] == ["ice"]  # V2 (the EV) did not drive
    g = result[0]
    assert (g["vehicles"], g["trips"], g["distance_km"], g["small_sample"]) == (2, 3, 300.0, False)
    assert g["harsh_per_100km"]["rate"] == pytest.approx(4 / 300 * 100, abs=1e-4)
    lo, hi = poisson_interval(4)
    assert g["harsh_per_100km"]["ci95"] == [round(100 * lo / 300, 4), round(100 * hi / 300, 4)]
    assert g["feature_usage"]["Vehicle.ADAS.CruiseControl.IsActive"]["share"] == pytest.approx(
        2 / 3, abs=1e-4
    )
    assert g["dtc_vehicles_per_1000"]["rate"] == 500.0 and g["top_codes"] == [
        {"code": "P0420", "vehicles": 1}
    ]
    assert (
        g["efficiency"]["unit"] == "L/100km"
        and g["efficiency"]["p50"] == 7.0
        and g["efficiency"]["trips"] == 2
    )
    # the owner of V3 withdraws R&D use: V3's trips leave every insight
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        owner = conn.execute("SELECT customer_id FROM vehicles WHERE vehicle_id = 'V3'").fetchone()
        conn.execute(
            "INSERT INTO consent_events (customer_id, scope, granted, at, source)"
            " VALUES (%s, 'rd', false, now(), 'app')",
            owner,
        )
        after = insights(
            conn, ("powertrain",), t0 - timedelta(days=1), t0 + timedelta(days=7), min_vehicles=2
        )
    assert (after[0]["vehicles"], after[0]["trips"], after[0]["distance_km"]) == (1, 2, 200.0)
    assert wilson(0, 0) == (0.0, 1.0) and wilson(5, 10)[0] < 0.5 < wilson(5, 10)[1]
    assert poisson_interval(0)[0] == 0.0 and poisson_interval(0)[1] == pytest.approx(3.689, abs=1e-3)
    with pytest.raises(ValueError, match="group by one or more of"):
        insights(conn, ("colour",), t0, t0)


def test_cli_from_simulated_files_to_portraits_and_insights(admin_database_url: str, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    def drivesight(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "simulators.cli", *args],
            capture_output=True, text=True, timeout=300, env={**os.environ, "DRIVESIGHT_DATABASE_URL": url},
        )  # fmt: skip

    def only_json(result: subprocess.CompletedProcess[str]) -> Any:
        """--json: exit 0 and exactly one JSON document on stdout (progress and logs go to stderr)."""
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout)

    def refused(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
        """An error: non-zero exit, the reason on stderr, nothing on stdout."""
        assert (result.returncode, result.stdout) == (code, ""), result.stdout + result.stderr[-2000:]
        assert message in result.stderr

    with scratch_database(admin_database_url, "drivesight_ac") as url:
        assert only_json(drivesight("cloud", "db", "migrate", "--json"))["applied"]
        made = drivesight(
            "sim", "population", "--customers", "80", "--days", "14", "--out", str(tmp_path), "--load"
        )
        assert made.returncode == 0, made.stderr[-2000:]
        assert "customers: 80 rows imported" in made.stdout and (tmp_path / "ground_truth.csv").exists()
        bad = _csv(
            tmp_path / "bad.csv",
            "complaint_id,customer_id,opened_at,category,resolved\nQ1,C9999999,2026-08-01,x,no",
        )
        for extra in ((), ("--json",)):
            refused(
                drivesight("cloud", "analytics", "import", "complaints", str(bad), *extra),
                2,
                "line 2: customer_id 'C9999999' is not in customers",
            )
        good = _csv(tmp_path / "good.csv", "complaint_id,customer_id,opened_at,category,resolved")
        imported = only_json(drivesight("cloud", "analytics", "import", "complaints", str(good), "--json"))
        assert imported == {
            "kind": "complaints",
            "rows_imported": {str(good): 0},
            "erased_lines_skipped": {str(good): []},
        }
        run = drivesight("cloud", "analytics", "run")
        assert run.returncode == 0, run.stderr[-2000:]
        assert "full run: 80 customers" in run.stdout and "cluster 0:" in run.stdout
        report = only_json(drivesight("cloud", "analytics", "run", "--json"))
        assert report["mode"] == "incremental" and report["clusters"]["k"] >= 2
        cloud = ("cloud", "analytics")
        refused(drivesight(*cloud, "run", "--json", "--config", str(bad)), 2, "configuration refused")
        window = ("--since", "2026-08-01", "--until", "2026-09-01", "--min-vehicles", "1")
        ins = drivesight("cloud", "analytics", "insights", "--by", "powertrain", *window)
        groups = [json.loads(line) for line in ins.stdout.splitlines()]
        assert sorted(g["powertrain"] for g in groups) == ["ev", "ice"]
        # every car but those whose owner withdrew R&D use (the population's consent: about 1 in 10)
        with psycopg.connect(url) as conn:
            withdrawn = conn.execute(
                "SELECT count(*) FROM vehicles v JOIN consent_current c ON c.customer_id = v.customer_id"
                " WHERE c.scope = 'rd' AND NOT c.granted"
            ).fetchone()
        assert withdrawn is not None and 0 < withdrawn[0] < 20
        assert sum(g["vehicles"] for g in groups) == 80 - withdrawn[0]
        as_one = only_json(drivesight(*cloud, "insights", "--by", "powertrain", *window, "--json"))
        assert as_one["groups"] == groups
        refused(drivesight(*cloud, "insights", "--by", "colour", *window, "--json"), 2, "colour")
        refused(drivesight("cloud", "analytics", "undo-merge", "999999", "--json"), 2, "999999")
        maintained = only_json(drivesight("cloud", "db", "maintain", "--json"))
        assert set(maintained) == {"partitions_created", "retention", "rollup_days_recomputed"}
        refused(drivesight("cloud", "db", "maintain", "--json", "--retention", str(bad)), 2, "policy refused")


def test_a_new_configuration_version_recomputes_everyone_and_runs_do_not_overlap(
    fresh_database: str, tmp_path: Path
) -> None:
    from cloud.analytics.run import RunInProgress

    t0 = datetime(2026, 9, 1, 8, tzinfo=UTC)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _crm_and_c1_trips(conn, tmp_path, t0)
    v7 = load_config(_csv(tmp_path / "v7.toml", CONFIG))
    assert run_analytics(fresh_database, v7)["mode"] == "full"  # the first run
    assert run_analytics(fresh_database, v7, overlap=timedelta(0))["customers"] == 0  # nothing new
    v8 = load_config(_csv(tmp_path / "v8.toml", CONFIG.replace("version = 7", "version = 8")))
    report = run_analytics(fresh_database, v8, overlap=timedelta(0))
    assert report["mode"] == "full" and report["customers"] == 3
    with psycopg.connect(fresh_database) as conn:
        assert conn.execute("SELECT DISTINCT config_version FROM customer_tags").fetchall() == [(8,)]
    with psycopg.connect(fresh_database, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(hashtext('drivesight-analytics'))")
        with pytest.raises(RunInProgress, match="another analytics run"):
            run_analytics(fresh_database, v8)
