"""``drivesight cloud deadletters list|show|replay`` on a real database: set aside, fixed, replayed once."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import psycopg

from cloud.ingest.writer import BatchWriter
from edge_agent.protocol import TripSummaryV1, encode, uplink_topic
from tests.helpers import count


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DRIVESIGHT_DATABASE_URL": database_url}
    return subprocess.run(
        [sys.executable, "-m", "simulators.cli", "cloud", "deadletters", *args],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _trip_payload(vehicle: str, seq: int, trip_id: str) -> tuple[str, bytes]:
    t = datetime.now(UTC) - timedelta(hours=1)
    body = TripSummaryV1(
        trip_id=trip_id, started_at=t, ended_at=t + timedelta(minutes=5), distance_km=2.0, duration_s=300,
        moving_s=280, idle_s=20, max_speed_kmh=50, avg_speed_kmh=24, night_share=0, samples=3000,
    )  # fmt: skip
    return uplink_topic(vehicle, "trip"), encode(vehicle, seq, body)


def test_list_show_and_replay_after_a_fix_store_exactly_once(fresh_database: str) -> None:
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(  # a temporary refusal: say, a constraint the release before the fix got wrong
            "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.trip_id LIKE 'POISON%' THEN RAISE EXCEPTION 'refused %', NEW.trip_id; END IF;"
            " RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER poison BEFORE INSERT ON trips FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )
        poison = _trip_payload("car1", 1, "POISON-1")
        items = [poison, _trip_payload("car1", 2, "T2"), ("ds/v1/car1/trip", b"{broken")]
        result, _messages = BatchWriter().write(conn, items)
        assert (result.stored, result.dead_letters) == (1, 2)

    listed = _cli(fresh_database, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    doc = json.loads(listed.stdout)  # --json: only JSON on stdout
    assert doc["not_stored_by_reason"] == {"malformed": 1, "store_failed": 1}
    by_reason = {d["reason"]: d for d in doc["dead_letters"]}
    failed_id = by_reason["store_failed"]["id"]
    assert "refused POISON-1" in by_reason["store_failed"]["detail"]

    shown = _cli(fresh_database, "show", str(failed_id), "--json")
    one = json.loads(shown.stdout)
    assert base64.b64decode(one["payload"]) == poison[1]
    assert one["sha256"] == hashlib.sha256(poison[1]).hexdigest() and one["size_bytes"] == len(poison[1])
    assert _cli(fresh_database, "show", "999999").returncode == 2

    still = _cli(fresh_database, "replay", str(failed_id), "--json")  # not fixed yet: refused again, kept
    assert json.loads(still.stdout)[0]["outcome"] == "refused"
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute("DROP TRIGGER poison ON trips")  # the fix
    fixed = _cli(fresh_database, "replay", "--reason", "store_failed", "--json")
    assert [o["outcome"] for o in json.loads(fixed.stdout)] == ["stored"]
    assert "stored 1" in fixed.stderr
    again = _cli(fresh_database, "replay", str(failed_id), "--json")  # a replay of a replay changes nothing
    assert json.loads(again.stdout)[0]["outcome"] == "not_replayable"
    broken = json.loads(_cli(fresh_database, "replay", "--reason", "malformed", "--json").stdout)
    assert broken[0]["outcome"] == "refused" and "malformed" in broken[0]["detail"]
    with psycopg.connect(fresh_database) as conn:
        assert count(conn, "SELECT count(*) FROM trips") == 2
        assert count(conn, "SELECT count(*) FROM ingested_messages") == 2
        assert count(conn, "SELECT count(*) FROM dead_letters WHERE replay_result = 'stored'") == 1
    text = _cli(fresh_database, "list")
    assert "not yet stored, by reason: malformed 1" in text.stdout
    assert _cli(fresh_database, "replay").returncode == 2
