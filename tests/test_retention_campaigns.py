"""Retention campaigns (issue 16, part 4) on a real database: the churn job's high tier is the audience of a
campaign with a holdout run by the real engine; the simulated customers (simulators/retention_world.py) leave
less after seeing the offer only as much as their hidden effect says; the results carry a retention block
whose reduction of churn has an interval that covers 0 without an effect and excludes it with a strong one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from cloud.churn.config import Tiers, load_config
from cloud.churn.run import run_churn
from cloud.db.migrate import migrate
from cloud.push.results import campaign_results
from cloud.push.spec import SpecError, parse_spec
from simulators.churn_world import ChurnWorld, load_churn_world, simulate_churn_world
from simulators.retention_world import (
    OfferModel,
    RetentionRun,
    clear_follow_up,
    import_offer,
    retention_campaign,
    run_retention_campaign,
)
from tests.helpers import scratch_database

#: a world where customers leave three times as often as the default one, so that a few thousand of them
#: show an effect; the high tier is the riskiest 30 % of the active customers (the shipped tenth: too few)
CONFIG = load_config().model_copy(update={"tiers": Tiers(basis="share", high=0.3, medium=0.2)})
CUSTOMERS = 4000
SEED = 5
CAPS = {"per_day": 50, "per_week": 200}  # two campaigns reach the same customers on the same day
#: 60 days, churned when silent for the last 30 (as the churn label: few light drivers taken for leavers)
MEASURE = {"days": 60, "silent_days": 30, "cost_per_offer": 5.0, "value_per_retained": 800.0}
#: a strong effect: every customer who sees the offer leaves at about a twentieth of their hazard
STRONG = OfferModel(strength=1.0, base=3.0, noise_sd=0.2)


@dataclass
class Experiments:
    """The world, its database, the assignment time, and the two campaigns' runs."""

    url: str
    world: ChurnWorld
    at: datetime
    null: RetentionRun
    strong: RetentionRun


@pytest.fixture(scope="module")
def experiments(admin_database_url: str) -> Iterator[Experiments]:
    world = simulate_churn_world(CUSTOMERS, SEED, days=150, hazard_scale=2.5)
    with scratch_database(admin_database_url, "drivesight_retention") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            load_churn_world(conn, world)
        run_churn(url, CONFIG, world.day(world.days - 1))
        # noon in Shanghai (the cars' zone) the day after the scores: outside the quiet hours
        at = datetime.combine(world.day(world.days), datetime.min.time(), tzinfo=UTC) + timedelta(hours=4)
        with psycopg.connect(url, autocommit=True) as conn:
            import_offer(conn, at)
            null = run_retention_campaign(
                conn, world, retention_campaign("null", at, caps=CAPS, retention=MEASURE), now=at,
                model=OfferModel(strength=0.0), seed=SEED,
            )  # fmt: skip
            clear_follow_up(conn, world)
            strong = run_retention_campaign(
                conn, world, retention_campaign("strong", at, caps=CAPS, retention=MEASURE), now=at,
                model=STRONG, seed=SEED,
            )  # fmt: skip
        yield Experiments(url, world, at, null, strong)


def _counts(run: RetentionRun) -> list[tuple[str, int, int, int]]:
    """(arm, assigned, active, churned) per group: what a failing assertion shows."""
    return [(a["arm"], a["assigned"], a["active"], a["churned"]) for a in run.results["retention"]["arms"]]


def _arm(run: RetentionRun, name: str) -> dict[str, Any]:
    return next(a for a in run.results["retention"]["arms"] if a["arm"] == name)


def test_the_audience_is_exactly_the_high_tier(experiments: Experiments) -> None:
    with psycopg.connect(experiments.url) as conn:
        high = {
            str(r[0])
            for r in conn.execute(
                "SELECT DISTINCT ON (customer_id) customer_id, tier FROM churn_scores"
                " ORDER BY customer_id, day DESC"
            )
            if r[1] == "high"
        }
        decided = {
            str(r[0])
            for r in conn.execute("SELECT customer_id FROM campaign_decisions WHERE campaign_id = 'strong'")
        }
        tiers = dict(conn.execute("SELECT tier, count(*) FROM churn_scores GROUP BY tier").fetchall())
    assert len(high) > 300 and tiers["low"] > 0 and tiers["lapsed"] > 0  # the others are left out
    assert decided == high


def test_holdout_customers_get_no_push(experiments: Experiments) -> None:
    with psycopg.connect(experiments.url) as conn:
        rows = conn.execute(
            "SELECT d.arm, count(*), count(d.push_id), count(f.push_id) FROM campaign_decisions d"
            " LEFT JOIN push_feedback f ON f.push_id = d.push_id WHERE d.campaign_id = 'strong'"
            " GROUP BY d.arm"
        ).fetchall()
        # and no push of the campaign's reached a holdout customer's car by any other push id either
        reached = conn.execute(
            "SELECT count(*) FROM push_feedback f JOIN vehicles v USING (vehicle_id)"
            " JOIN campaign_decisions d ON d.customer_id = v.customer_id AND d.campaign_id = f.campaign_id"
            " WHERE f.campaign_id = 'strong' AND d.arm = 'holdout'"
        ).fetchone()
    by_arm = {r[0]: r[1:] for r in rows}
    assert by_arm["holdout"][0] > 100 and by_arm["holdout"][1:] == (0, 0)
    assert by_arm["offer"][1] == by_arm["offer"][0] and by_arm["offer"][2] > 0
    assert reached == (0,)
    # only customers who saw a push can have any effect: the holdout's seen flags are all off
    holdout = _arm(experiments.strong, "holdout")
    assert holdout["sent"] == 0 and experiments.strong.seen.sum() > 0


def test_without_an_effect_the_interval_covers_zero(experiments: Experiments) -> None:
    """An A/A-style check: the offer changes nothing (strength 0), so the measured reduction is noise."""
    offer = _arm(experiments.null, "offer")
    holdout = _arm(experiments.null, "holdout")
    assert offer["active"] > 100 and holdout["active"] > 100 and holdout["churned"] > 10
    r = offer["reduction_pp"]
    assert r["ci_low"] < 0 < r["ci_high"], (r, _counts(experiments.null))
    assert not r["significant"]


def test_with_a_strong_effect_the_interval_excludes_zero(experiments: Experiments) -> None:
    offer = _arm(experiments.strong, "offer")
    r = offer["reduction_pp"]
    assert r["ci_low"] > 0, (r, _counts(experiments.strong))
    assert r["significant"]


def test_results_carry_the_retention_block(experiments: Experiments) -> None:
    block = experiments.strong.results["retention"]
    assert block["complete"] is True and block["days"] == 60
    offer = _arm(experiments.strong, "offer")
    assert offer["retained_per_1000"]["value"] == pytest.approx(
        offer["reduction_pp"]["difference"] * 10, abs=0.1
    )
    money = offer["money"]
    assert money["cost"] == pytest.approx(offer["sent"] * 5.0)
    assert money["roi"] == pytest.approx((money["incremental_revenue"] - money["cost"]) / money["cost"])
    with psycopg.connect(experiments.url) as conn:
        # before the window ends the block says so
        early = campaign_results(conn, "strong", now=experiments.at + timedelta(days=3))
    assert early["retention"]["complete"] is False


def test_a_conversion_campaign_has_no_retention_block_and_settings_need_the_objective(
    experiments: Experiments,
) -> None:
    doc = retention_campaign("plain", experiments.at)
    doc.pop("retention")
    doc["objective"] = "conversion"
    assert parse_spec(doc).retention_settings() is None
    with pytest.raises(SpecError, match="objective"):
        parse_spec(retention_campaign("x", experiments.at, objective="conversion"))
    with pytest.raises(SpecError, match="silent_days"):
        parse_spec(retention_campaign("y", experiments.at, retention={"days": 10, "silent_days": 14}))
    assert (
        parse_spec(retention_campaign("z", experiments.at, retention=None)).retention_settings() is not None
    )
