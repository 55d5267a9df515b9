"""Sales forecasting: MASE by hand, intervals and skill on a simulated world, bottom-up sums, bad files, the
command on a file and on a database, the API route."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from cloud.access.keys import create_key
from cloud.api.app import create_app
from cloud.db.migrate import migrate
from cloud.forecast import DataError
from cloud.forecast.evaluate import Backtest, backtest, mase, mase_scale
from cloud.forecast.methods import Method, mean_fallback, seasonal_naive
from cloud.forecast.run import forecast_sales
from cloud.forecast.series import Freq, build_series, parse_by, read_csv
from simulators.sales_world import SalesWorld, load_sales_world, simulate_sales_world, write_sales_csv
from tests.helpers import scratch_database

ROOT = Path(__file__).resolve().parent.parent


def test_mase_is_the_error_over_the_in_sample_seasonal_naive_error() -> None:
    train = np.array([1.0, 2, 3, 4, 5, 7])
    # season 2: |3-1|, |4-2|, |5-3|, |7-4| -> mean 9/4
    assert mase_scale(train, 2) == pytest.approx(2.25)
    # errors 1 and 2 -> mean 1.5 -> MASE 1.5 / 2.25
    assert mase(np.array([8.0, 9]), np.array([7.0, 11]), 2.25) == pytest.approx(1.5 / 2.25)
    # shorter than a season and a period: the one-step naive error
    assert mase_scale(np.array([1.0, 4, 2]), 12) == pytest.approx(2.5)
    assert mase_scale(np.array([5.0, 5, 5]), 2) is None  # no scale: no MASE, not a division by zero


def test_seasonal_naive_repeats_the_last_season_and_the_fallback_is_flagged() -> None:
    y = np.arange(1.0, 25.0)
    f = seasonal_naive(y, 14, 12)
    assert f is not None and list(f.point) == [*range(13, 25), 13, 14]
    assert f.upper is not None and f.upper[12] - f.point[12] > f.upper[0] - f.point[0]  # wider a season on
    assert seasonal_naive(y[:5], 3, 12) is None
    short = mean_fallback(np.array([4.0]), 3)
    assert short.method is Method.MEAN and list(short.point) == [4.0] * 3 and short.lower is None
    assert any("fallback" in flag for flag in short.flags) and any("no interval" in f for f in short.flags)


@pytest.fixture(scope="module")
def world() -> SalesWorld:
    return simulate_sales_world(3, models=2, regions=5, months=60)


@pytest.fixture(scope="module")
def tested(world: SalesWorld, tmp_path_factory: pytest.TempPathFactory) -> Backtest:
    path = tmp_path_factory.mktemp("sales") / "sales.csv"
    write_sales_csv(world, path)
    sales, problems = read_csv(path, Freq.MONTH)
    assert problems == []
    series, _ = build_series(sales, ("model", "region"))
    return backtest(series, 12, Freq.MONTH.season_index, 6, origins=6)


def test_intervals_cover_about_80_percent_on_a_simulated_world(tested: Backtest) -> None:
    # 10 series x 6 origins x 6 months = 360 points per method: loose bounds around 0.8
    for method in ("ets", "seasonal_naive", "gbm"):
        coverage = tested.coverage_80[method]
        assert coverage is not None and 0.6 <= coverage <= 0.95, (method, coverage)


def test_the_models_beat_seasonal_naive_on_a_simulated_world(tested: Backtest) -> None:
    assert tested.compared_series == 10
    ets, gbm, base = tested.mase["ets"], tested.mase["gbm"], tested.mase["seasonal_naive"]
    assert ets is not None and gbm is not None and base is not None
    # both models beat the baseline out of sample; on this world (seed 3) also its in-sample error. A world
    # of ten series can be hard for every method (seed 4: seasonal-naive 1.41, the models 1.15): the relative
    # claim is the one that holds for any seed tried (0..7)
    assert ets < base and gbm < base, tested.mase
    assert min(ets, gbm) < 1, tested.mase
    assert tested.best_overall in (Method.ETS, Method.GBM)
    # every series says which method won and whether any model beat the baseline
    assert all(s.winner is not None and s.beats_seasonal_naive is not None for s in tested.series)


def test_the_coarser_levels_are_bottom_up_sums_with_their_own_intervals(
    world: SalesWorld, tmp_path: Path
) -> None:
    path = tmp_path / "sales.csv"
    write_sales_csv(world, path)
    sales, _ = read_csv(path, Freq.MONTH)
    report = forecast_sales(sales, Freq.MONTH, ("model", "region"), 4)
    doc = report.as_dict()
    assert len(doc["series"]) == 10 and doc["periods"] == ["2026-01", "2026-02", "2026-03", "2026-04"]
    levels = {(a["level"], tuple(a["key"].values())): a for a in doc["aggregates"]}
    assert len(levels) == 2 + 5 + 1
    for k in range(4):
        for model in world.models:
            members = [s["forecast"][k]["point"] for s in doc["series"] if s["key"]["model"] == model]
            assert levels[("model", (model,))]["forecast"][k]["bottom_up"] == pytest.approx(
                sum(members), abs=0.1
            )
        total = levels[("total", ())]["forecast"][k]
        assert total["bottom_up"] == pytest.approx(
            sum(s["forecast"][k]["point"] for s in doc["series"]), abs=0.1
        )
        # the total's interval is its own series' (not the sum of the bounds), around its own point
        assert total["lower"] < total["own_point"] < total["upper"]
        assert total["upper"] < sum(s["forecast"][k]["upper"] for s in doc["series"])
    assert doc["backtest"] is None


def test_bad_lines_are_refused_with_their_numbers_and_the_rest_used(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    rows = ["date,model,region,units"]
    rows += [f"2025-{m:02d}-01,DS-01,north,{10 + m}" for m in range(1, 13) if m != 5]  # May missing: a gap
    rows += [
        "2025-03-01,DS-01,north,7",  # duplicate of line 4
        "2025-13-01,DS-01,north,3",  # no such month
        "yesterday,DS-01,north,3",
        "2025-06-01,DS-02,north,-4",
        "2025-06-01,DS-02,north,many",
        "2025-06-01,DS-02",
        "2025-12-01,DS-09,south,5",  # a new model with one month of history
    ]
    path.write_text("\n".join(rows) + "\n")
    sales, problems = read_csv(path, Freq.MONTH)
    reasons = {p.line: p.reason for p in problems}
    assert sorted(reasons) == [13, 14, 15, 16, 17, 18]
    assert "duplicate of line 4" in reasons[13]
    assert "unparseable date" in reasons[14] and "unparseable date" in reasons[15]
    assert "negative units" in reasons[16] and "not a number" in reasons[17] and "fields" in reasons[18]
    report = forecast_sales(sales, Freq.MONTH, ("model", "region"), 3, problems=problems).as_dict()
    by_model = {s["key"]["model"]: s for s in report["series"]}
    assert set(by_model) == {"DS-01", "DS-09"}
    assert by_model["DS-01"]["filled_periods"] == 1 and any(
        "filled with 0" in f for f in by_model["DS-01"]["flags"]
    )
    one = by_model["DS-09"]
    assert one["method"] == "mean" and any("fallback" in f for f in one["flags"])
    assert one["forecast"][0]["point"] == 5.0 and one["forecast"][0]["lower"] is None
    assert [p["line"] for p in report["problems"]] == [13, 14, 15, 16, 17, 18]


def test_a_file_without_a_usable_line_or_a_bad_grouping_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "none.csv"
    path.write_text("date,model,region,units\n2025-01-01,A,north,-1\n")
    sales, problems = read_csv(path, Freq.MONTH)
    assert len(problems) == 1
    with pytest.raises(DataError):
        build_series(sales, ("model",))
    path.write_text("day,units\n")
    with pytest.raises(DataError, match="header"):
        read_csv(path, Freq.MONTH)
    with pytest.raises(DataError):
        parse_by("model,colour")
    assert parse_by("region,model") == ("model", "region") and parse_by("total") == ()


def _cli(*args: str, url: str = "postgresql://nobody@127.0.0.1:9/none") -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIVESIGHT_")}
    return subprocess.run(
        [sys.executable, "-m", "simulators.cli", "cloud", "forecast", *args],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**clean, "DRIVESIGHT_DATABASE_URL": url},
    )  # fmt: skip


def test_the_command_on_a_file_prints_one_json_document(tmp_path: Path) -> None:
    world = simulate_sales_world(5, models=2, regions=2, months=36)
    path = tmp_path / "sales.csv"
    write_sales_csv(world, path)
    with path.open("a") as f:
        f.write("2026-01-01,DS-01,north,-3\n")
    result = _cli("--data", str(path), "--by", "model", "--horizon", "3", "--backtest", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert [s["key"] for s in doc["series"]] == [{"model": "DS-01"}, {"model": "DS-02"}]
    assert doc["backtest"]["origins"] == 6 and doc["problems"][0]["reason"].startswith("negative units")
    assert "negative units" in result.stderr  # the refused line is said on stderr too
    assert all(s["backtest"]["winner"] in ("ets", "gbm", "seasonal_naive") for s in doc["series"])
    refused = _cli("--data", str(path), "--by", "colour", "--json")
    assert (refused.returncode, refused.stdout) == (2, "") and "--by" in refused.stderr
    missing = _cli("--data", str(tmp_path / "nope.csv"), "--json")
    assert (missing.returncode, missing.stdout) == (2, "")


@pytest.fixture(scope="module")
def sales_db(admin_database_url: str) -> Iterator[tuple[str, SalesWorld]]:
    world = simulate_sales_world(7, models=2, regions=2, months=30, first_month=date(2023, 7, 1))
    with scratch_database(admin_database_url, "drivesight_forecast") as url:
        migrate(url)
        with psycopg.connect(url) as conn:
            load_sales_world(conn, world)
            # a car sold today: the current month is still selling and is left out
            conn.execute("INSERT INTO customers (customer_id) VALUES ('today')")
            conn.execute(
                "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, customer_id, model, region)"
                " VALUES ('today', now(), now(), 'today', 'DS-01', 'north')"
            )
            conn.execute(
                "INSERT INTO purchases (vehicle_id, customer_id, purchased_at) VALUES ('today', 'today', %s)",
                (datetime.now(UTC).date(),),
            )
        yield url, world


def test_the_command_reads_the_purchases_of_a_database(sales_db: tuple[str, SalesWorld]) -> None:
    url, world = sales_db
    result = _cli("--by", "region", "--horizon", "2", "--json", url=url)
    assert result.returncode == 0, result.stderr[-2000:]
    doc = json.loads(result.stdout)
    assert [s["key"]["region"] for s in doc["series"]] == sorted(world.regions)
    assert doc["last_period"] == "2025-12" and doc["periods"] == ["2026-01", "2026-02"]
    # half the cars have no region of their own: the dealer's counts, so every unit is in its region
    assert sum(s["history_periods"] for s in doc["series"]) == 2 * 30
    weekly = _cli("--by", "total", "--freq", "W", "--horizon", "4", "--json", url=url)
    assert weekly.returncode == 0, weekly.stderr[-2000:]
    assert len(json.loads(weekly.stdout)["series"][0]["forecast"]) == 4


def test_the_api_serves_forecasts_to_rd_read(sales_db: tuple[str, SalesWorld]) -> None:
    url, world = sales_db
    with psycopg.connect(url, autocommit=True) as conn:
        rd = create_key(conn, name="planning", scopes=["rd:read"])
        fleet = create_key(conn, name="fleet", scopes=["fleet:read"])
    with TestClient(create_app(url)) as api:
        ok = api.get("/v1/forecast?by=model&horizon=3", headers={"Authorization": f"Bearer {rd.key}"})
        assert ok.status_code == 200, ok.text
        assert [s["key"]["model"] for s in ok.json()["series"]] == list(world.models)
        assert ok.json()["aggregates"][0]["level"] == "total"
        denied = api.get("/v1/forecast", headers={"Authorization": f"Bearer {fleet.key}"})
        assert denied.status_code == 403
        assert ok.json()["suppressed_series"] == 0
        bad = api.get("/v1/forecast?by=colour", headers={"Authorization": f"Bearer {rd.key}"})
        assert bad.status_code == 422
    # a series of fewer purchases than the minimum group size is left out (its buyers' months would show)
    from cloud.api.forecast_routes import _large_enough
    from cloud.config import CloudSettings
    from cloud.forecast.series import Sale

    sales = [
        Sale(0, "A", "north", 3),
        Sale(1, "A", "north", 4),
        Sale(0, "B", "north", 2),
        Sale(0, "A", "south", 1),
    ]
    kept, left_out = _large_enough(sales, ("model",), 5)
    assert kept == [*sales[:2], sales[3]] and left_out == 1  # A: 8 units, B: 2
    assert _large_enough(sales, ("model", "region"), 5) == (sales[:2], 2)
    strict = CloudSettings(api_min_group_size=10_000)  # more than any simulated model sold
    with TestClient(create_app(url, settings=strict)) as api:
        none = api.get("/v1/forecast?by=model", headers={"Authorization": f"Bearer {rd.key}"}).json()
        assert none["series"] == [] and none["suppressed_series"] == len(world.models)
