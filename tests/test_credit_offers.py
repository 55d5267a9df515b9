"""Credit scores in the product (issue 18, part 4) on a real database: scores imported (a customer's newest
counts), a financing offer that needs a minimum score reaches only customers at or above it, an audience can
filter on the score, and a bad score file is refused by line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from cloud.analytics.imports import RowErrors, import_file
from cloud.analytics.segments import SegmentError, compile_expression
from cloud.db.migrate import migrate
from cloud.push.content import Target, eligible_items, load_items
from cloud.push.engine import credit_scores
from tests.helpers import scratch_database

CUSTOMERS = "customer_id,name\nC1,Ann\nC2,Bo\nC3,Cy\n"
SCORES = (
    "customer_id,scored_at,score,reasons,model\n"
    "C1,2026-10-01T00:00:00Z,580,debt_to_income;past_delinquencies,credit_score v1\n"
    "C1,2026-11-01T00:00:00Z,702,,credit_score v2\n"  # the newest: C1 qualifies now
    "C2,2026-11-01T00:00:00Z,640,down_payment,credit_score v2\n"
)
CATALOGUE = (
    "item_id,kind,title,min_credit_score\nF1,offer,0.9% financing on the SUV,650\nA1,accessory,Roof box,\n"
)


@pytest.fixture()
def db(admin_database_url: str, tmp_path: Path) -> Iterator[psycopg.Connection]:
    with scratch_database(admin_database_url, "drivesight_credit_offers") as url:
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            for kind, text in (("customers", CUSTOMERS), ("credit_scores", SCORES), ("catalogue", CATALOGUE)):
                path = tmp_path / f"{kind}.csv"
                path.write_text(text, encoding="utf-8")
                import_file(conn, kind, path)
            yield conn


def test_a_financing_offer_reaches_only_customers_with_the_minimum_score(db: psycopg.Connection) -> None:
    scores = credit_scores(db, ["C1", "C2", "C3"])
    assert scores == {"C1": 702.0, "C2": 640.0}  # C1's newest; C3 has none
    items = load_items(db)
    assert items["F1"].min_credit_score == 650 and items["A1"].min_credit_score is None
    targets = [Target(c, None, None, credit_score=scores.get(c)) for c in ("C1", "C2", "C3")]
    chosen = eligible_items(targets, {k: items[k] for k in ("F1", "A1")}, datetime(2026, 12, 1, tzinfo=UTC))
    offered = {c: {i.item_id for i in found} for c, found in chosen.items()}
    # C2 is below the minimum, C3 was never scored: neither gets the financing offer; everyone the roof box
    assert offered == {"C1": {"F1", "A1"}, "C2": {"A1"}, "C3": {"A1"}}


def test_an_audience_filters_on_the_newest_credit_score(db: psycopg.Connection) -> None:
    params: list[object] = []
    where = compile_expression({"credit_score": {"min": 650}}, params)
    members = {str(r[0]) for r in db.execute(f"SELECT c.customer_id FROM customers c WHERE {where}", params)}
    assert members == {"C1"}
    params = []
    where = compile_expression({"not": {"credit_score": {"min": 650}}}, params)
    assert {
        str(r[0]) for r in db.execute(f"SELECT c.customer_id FROM customers c WHERE {where}", params)
    } == {
        "C2",
        "C3",
    }
    for bad, message in (
        ({"credit_score": 650}, "credit_score: expected"),
        ({"credit_score": {"min": 1200}}, "credit_score.min: expected a score"),
        ({"credit_score": {"min": 700, "max": 600}}, "must be below max"),
    ):
        with pytest.raises(SegmentError, match=message):
            compile_expression(bad, [])


def test_a_bad_score_file_is_refused_by_line(db: psycopg.Connection, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "customer_id,scored_at,score,reasons,model\n"
        "C1,2026-11-02T00:00:00Z,700,,m\n"
        "C1,2026-11-03T00:00:00,700,,m\n"  # no UTC offset
        "C1,2026-11-04T00:00:00Z,1200,,m\n",  # out of range
        encoding="utf-8",
    )
    with pytest.raises(RowErrors) as refused:
        import_file(db, "credit_scores", path)
    assert [line for line, _why in refused.value.errors] == [3, 4]
    path.write_text("customer_id,scored_at,score,reasons,model\nC9,2026-11-01T00:00:00Z,700,,m\n")
    with pytest.raises(RowErrors, match="not in customers"):  # no such customer
        import_file(db, "credit_scores", path)
    assert db.execute("SELECT count(*) FROM credit_scores").fetchone() == (3,)  # nothing written
