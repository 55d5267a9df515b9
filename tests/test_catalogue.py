"""The catalogue and conversions imports: offers with targets, validity, cost and value, validated per line;
an update of prices keeps the categories; conversions are events stored once."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from cloud.analytics.imports import RowErrors, import_file
from cloud.push.content import load_items

HEADER = (
    "item_id,kind,title,body,url,category,tags,target_models,target_regions,valid_from,valid_until,"
    "cost_per_send,value_per_conversion,categories\n"
)


def test_catalogue_lines_are_validated_and_stored(fresh_database: str, tmp_path: Path) -> None:
    good = tmp_path / "catalogue.csv"
    good.write_text(
        HEADER
        + "TYRES,accessory,Winter tyres,15 % off,https://x.example/t,accessory,winter;safety,,north;east,"
        "2026-11-01T00:00:00Z,2027-03-01T00:00:00Z,0.05,120,suv:0.9;family:0.4\n"
        + "OTA-HUD,ota_feature,Head-up display,unlock now,,feature,tech,DS-EV,,,,0.02,300,tech:1\n"
    )
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        assert import_file(conn, "catalogue", good).imported == 2
        items = load_items(conn)
        tyres = items["TYRES"]
        assert tyres.tags == ("winter", "safety") and tyres.target_regions == ("north", "east")
        assert tyres.target_models == () and tyres.cost_per_send == pytest.approx(0.05)
        assert tyres.valid_at(datetime(2026, 12, 1, tzinfo=UTC))
        assert not tyres.valid_at(datetime(2027, 3, 1, tzinfo=UTC))
        assert items["OTA-HUD"].targets("DS-EV", "south") and not items["OTA-HUD"].targets("DS-SUV", "south")
        # a price update without categories keeps the item's categories
        prices = tmp_path / "prices.json"
        prices.write_text(
            json.dumps(
                [
                    {
                        "item_id": "TYRES",
                        "kind": "accessory",
                        "title": "Winter tyres",
                        "value_per_conversion": 99,
                    }
                ]
            )
        )
        assert import_file(conn, "catalogue", prices).imported == 1
        assert load_items(conn)["TYRES"].value_per_conversion == 99
        cats = conn.execute(
            "SELECT category FROM item_categories WHERE item_id = 'TYRES' ORDER BY 1"
        ).fetchall()
        assert cats == [("family",), ("suv",)]

        bad = tmp_path / "bad.csv"
        bad.write_text(
            HEADER
            + "A,coupon,Title,,,,,,,,,0,0,\n"  # unknown kind
            + "B,offer,Title,,ftp://x,,,,,,,0,0,\n"  # not a web link
            + "C,offer,Title,,,,,,,2026-12-01T00:00:00Z,2026-11-01T00:00:00Z,0,0,\n"  # window backwards
            + "D,offer,Title,,,,,,,2026-12-01T00:00:00,,0,0,\n"  # no UTC offset
            + "E,offer,Title,,,,,,,,,-1,0,\n"  # negative cost
            + "F,offer,Title,,,,,,,,,0,0,x:2\n"  # degree out of range
            + "G,offer,Fine,,,,,,,,,0,0,\n"
        )
        with pytest.raises(RowErrors) as info:
            import_file(conn, "catalogue", bad)
        assert [line for line, _ in info.value.errors] == [2, 3, 4, 5, 6, 7]
        assert "valid_until must be after valid_from" in str(info.value)
        assert conn.execute("SELECT count(*) FROM content_items WHERE item_id = 'G'").fetchone() == (0,)


def test_conversions_are_events_stored_once(fresh_database: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("INSERT INTO customers (customer_id) VALUES ('C1')")
        conn.execute("INSERT INTO content_items (item_id, kind, title) VALUES ('TYRES', 'accessory', 'T')")
        f = tmp_path / "conversions.csv"
        f.write_text(
            "customer_id,item_id,at,value\nC1,TYRES,2026-12-03T10:00:00Z,120\nC1,TYRES,2026-12-03T10:00:00Z,120\n"
        )
        assert import_file(conn, "conversions", f).imported == 2
        assert import_file(conn, "conversions", f).imported == 2
        assert conn.execute("SELECT count(*) FROM conversions").fetchone() == (1,)
        unknown = tmp_path / "unknown.csv"
        unknown.write_text("customer_id,item_id,at\nC2,TYRES,2026-12-03T10:00:00Z\n")
        with pytest.raises(RowErrors, match="customer_id 'C2' is not in customers"):
            import_file(conn, "conversions", unknown)


def test_vehicles_carry_their_time_zone(fresh_database: str, tmp_path: Path) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("INSERT INTO customers (customer_id) VALUES ('C1')")
        header = "vehicle_id,customer_id,model,model_year,powertrain,purchased_at,time_zone\n"
        good = tmp_path / "vehicles.csv"
        good.write_text(
            header + "V1,C1,DS-EV,2025,ev,2025-01-02,Asia/Shanghai\nV2,C1,DS-EV,2025,ev,2025-01-02,\n"
        )
        assert import_file(conn, "vehicles", good).imported == 2
        # a file without the column keeps what is known
        again = tmp_path / "again.csv"
        again.write_text(
            "vehicle_id,customer_id,model,model_year,powertrain,purchased_at\nV1,C1,DS-EV,2025,ev,2025-01-02\n"
        )
        import_file(conn, "vehicles", again)
        zones = dict(conn.execute("SELECT vehicle_id, time_zone FROM vehicles ORDER BY 1").fetchall())
        assert zones == {"V1": "Asia/Shanghai", "V2": None}
        bad = tmp_path / "bad.csv"
        bad.write_text(header + "V3,C1,DS-EV,2025,ev,2025-01-02,Mars/Olympus\n")
        with pytest.raises(RowErrors, match=r"line 2: .*unknown time zone 'Mars/Olympus'"):
            import_file(conn, "vehicles", bad)


def test_the_catalogue_route_stores_like_the_import(fresh_database: str) -> None:
    from fastapi.testclient import TestClient

    from cloud.access.keys import create_key
    from cloud.api.app import create_app

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        key = create_key(conn, name="m", scopes=["marketing:write"]).key
    item = {
        "item_id": "T1",
        "kind": "accessory",
        "title": "Tyres",
        "tags": ["winter"],
        "categories": {"suv": 0.9},
    }
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(fresh_database)) as api:
        assert api.post("/v1/catalogue", json=[item], headers=headers).json() == {"imported": 1}
        # a price update without categories keeps them
        update = {"item_id": "T1", "kind": "accessory", "title": "Tyres", "value_per_conversion": 99}
        assert api.post("/v1/catalogue", json=[update], headers=headers).status_code == 200
        twice = api.post("/v1/catalogue", json=[item, {**item, "title": "again"}], headers=headers)
        assert twice.status_code == 422 and "appears more than once" in twice.json()["errors"][0]["msg"]
        assert twice.json()["errors"][0]["loc"] == ["body", 0]  # the first of the two
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        items = load_items(conn)
        assert items["T1"].value_per_conversion == 99 and items["T1"].title == "Tyres"
        cats = conn.execute("SELECT category FROM item_categories WHERE item_id = 'T1'").fetchall()
        assert cats == [("suv",)]
