"""Data fusion: CRM and online files imported with validation; bad files refused whole, with line errors."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from cloud.analytics.imports import ImportError_, RowErrors, digits, import_file, name_key
from simulators.population import simulate_population
from simulators.population_files import IMPORT_ORDER, load_trips, write_population_files
from tests.helpers import count


def test_normalized_keys() -> None:
    assert digits("+86 138-0013-8000") == digits("138 0013 8000") == "13800138000"
    assert digits("") is None and digits("n/a") is None
    assert name_key("  Wang   WEI ") == "wang wei"


def test_a_simulated_population_imports_completely(fresh_database: str, tmp_path: Path) -> None:
    pop = simulate_population(60, seed=3, days=7)
    files = write_population_files(pop, tmp_path)
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        imported = {kind: import_file(conn, kind, files[kind]).imported for kind in IMPORT_ORDER}
        assert imported["customers"] == 60 and imported["vehicles"] == 60
        assert imported["interactions"] == len(pop.interactions["kind"])
        assert count(conn, "SELECT count(*) FROM purchases") == 60
        assert count(conn, "SELECT count(*) FROM item_categories") == int((pop.items["membership"] > 0).sum())
        assert count(conn, "SELECT count(*) FROM customers WHERE phone !~ '^[0-9]{11}$'") == 0
        # the same files again: updates by key, nothing doubled
        assert import_file(conn, "interactions", files["interactions"]).imported == imported["interactions"]
        assert count(conn, "SELECT count(*) FROM interactions") == imported["interactions"]
        # an event logged twice in one file is stored once; an entity twice is refused (below)
        twice = tmp_path / "twice.csv"
        twice.write_text("account_id,item_id,kind,at\n" + "A00000001,I00001,view,2026-08-02T10:00:00Z\n" * 2)
        assert import_file(conn, "interactions", twice).imported == 2
        assert count(conn, "SELECT count(*) FROM interactions") == imported["interactions"] + 1
        assert load_trips(conn, pop) == len(pop.trips["customer"])


def test_bad_lines_are_reported_by_line_and_nothing_is_written(fresh_database: str, tmp_path: Path) -> None:
    bad = tmp_path / "customers.csv"
    bad.write_text(
        "customer_id,name,phone,email,birth_year\n"
        "C1,wang wei,138 0013 8000,wei@example.com,1980\n"
        "C2,li na,,not-an-email,1985\n"
        ",zhao min,,,1990\n"
        "C4,chen bo,,,eighteen\n"
        "C5,sun li,,,1970,surplus\n"
    )
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        with pytest.raises(RowErrors) as info:
            import_file(conn, "customers", bad)
        lines = [line for line, _message in info.value.errors]
        assert lines == [3, 4, 5, 6]
        text = str(info.value)
        assert "line 3: email" in text and "line 4: customer_id" in text and "line 5: birth_year" in text
        assert "line 6: more values than the header" in text
        assert (
            count(conn, "SELECT count(*) FROM customers") == 0
        )  # C1 was fine, but the file is refused whole

        vehicles = tmp_path / "vehicles.jsonl"
        vehicles.write_text(
            '{"vehicle_id": "V1", "customer_id": "nobody", "model": "DS-SUV", "model_year": 2024,'
            ' "powertrain": "ice", "purchased_at": "2025-01-02"}\n{not json\n'
        )
        with pytest.raises(RowErrors, match="line 2: not valid JSON"):
            import_file(conn, "vehicles", vehicles)
        vehicles.write_text(vehicles.read_text().splitlines()[0] + "\n")
        with pytest.raises(RowErrors, match="line 1: customer_id 'nobody' is not in customers"):
            import_file(conn, "vehicles", vehicles)
        assert count(conn, "SELECT count(*) FROM vehicles WHERE vehicle_id = 'V1'") == 0
        dup = tmp_path / "dealers.json"
        dup.write_text('[{"dealer_id": "D1", "name": "a"}, {"dealer_id": "D1", "name": "b"}]')
        with pytest.raises(RowErrors, match="dealer_id 'D1' appears more than once"):
            import_file(conn, "dealers", dup)
        with pytest.raises(ImportError_, match="unknown kind 'owners'"):
            import_file(conn, "owners", dup)
        with pytest.raises(ImportError_, match=r"use \.csv, \.json or \.jsonl"):
            import_file(conn, "dealers", tmp_path / "dealers.xlsx")
