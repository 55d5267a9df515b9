"""The API keeps its OpenAPI contract: schemathesis against the real server, as production runs it.

A scratch database with a little of everything (two customers with marketing consent, two cars of one
model with a trip, an event and telemetry, a segment), an admin key made by ``cloud.access.keys``, the API
started as ``drivesight-cloud api`` in a process of its own, then ``schemathesis run`` with every check, a
fixed seed and a small size (``schemathesis.toml`` at the repository root supplies the seeded ids and the
cursor hook). The run must report no server error and no answer outside the document: undocumented status
codes, bodies or headers that do not match, valid input refused, invalid input accepted.

Forged cursors (decoding to values no stored key holds) are sent here directly, because generated base64url
text almost never decodes to them and one made the server answer 500.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.access.keys import create_key
from cloud.analytics.imports import import_file
from cloud.db.migrate import migrate
from cloud.embedded import free_port, wait_for_port
from cloud.ingest.store import store_batch
from cloud.privacy.erasure import request_erasure
from edge_agent.protocol import (
    DrivingEvent,
    EventKind,
    EventsV1,
    GeoPoint,
    StatusV1,
    TelemetryV1,
    TripSummaryV1,
    decode,
    encode,
    uplink_topic,
)
from tests.helpers import scratch_database

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
#: fixed, so that a red run can be replayed exactly (`st replay` or the same command with this seed)
SEED = 20261102
#: test cases per operation and phase: about 1,000 requests in about 15 s on two cores
MAX_EXAMPLES = 20
#: the ids schemathesis.toml gives schemathesis (its dictionaries): keep the two in step
VEHICLES = ("contract-car-1", "contract-car-2")
CUSTOMERS = ("contract-cust-1", "contract-cust-2")
TRIP = "T1"
T0 = datetime(2026, 11, 2, 8, tzinfo=UTC)


@dataclass(frozen=True)
class Api:
    """The API under test: its base URL and an admin key."""

    url: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header with the admin key."""
        return {"Authorization": f"Bearer {self.key}"}


def _seed(url: str, directory: Path) -> None:
    # through the real import and ingest paths, as privacy_world.py does, but with fixed ids (the toml's)
    people = list(enumerate(zip(CUSTOMERS, VEHICLES, strict=True)))
    files = {
        "dealers": "dealer_id,name,region\nD1,contract dealer,north\n",
        "customers": "customer_id,name,phone,email,birth_year,city,income_band\n"
        + "".join(f"{c},name {c},1380000000{i},{c}@mail.example,1980,city,high\n" for i, (c, _) in people),
        "consent": "customer_id,scope,granted,at,source\n"
        + "".join(f"{c},marketing,true,2026-08-01T10:00:00Z,dealer\n" for c in CUSTOMERS),
        "vehicles": "vehicle_id,customer_id,dealer_id,model,model_year,powertrain,purchased_at,price\n"
        + "".join(f"{v},{c},D1,DS-SUV,2024,ice,2025-01-02,200000\n" for _, (c, v) in people),
    }  # fmt: skip
    trip = TripSummaryV1(
        trip_id=TRIP, started_at=T0, ended_at=T0 + timedelta(minutes=10), distance_km=5.0, duration_s=600,
        moving_s=550, idle_s=50, max_speed_kmh=80, avg_speed_kmh=30, night_share=0, samples=6000,
        start_location=GeoPoint(lat=52.520008, lon=13.404954),
    )  # fmt: skip
    event = DrivingEvent(
        kind=EventKind.HARSH_BRAKE, trip_id=TRIP, start=T0 + timedelta(minutes=2),
        end=T0 + timedelta(minutes=2, seconds=1), peak=-5.0, peak_unit="m/s^2",
    )  # fmt: skip
    telemetry = TelemetryV1(
        t0=T0 + timedelta(minutes=1),
        t_ms=[i * 1000 for i in range(10)],
        signals={
            "Vehicle.Speed": [30.0 + i for i in range(10)],
            "Vehicle.CurrentLocation.Latitude": [52.52] * 10,
            "Vehicle.CurrentLocation.Longitude": [13.40] * 10,
        },
    )
    bodies = [StatusV1(state="online", agent_version="1"), trip, EventsV1(events=[event]), telemetry]
    with psycopg.connect(url, autocommit=True) as conn:
        for kind, text in files.items():
            path = directory / f"{kind}.csv"
            path.write_text(text, encoding="utf-8")
            import_file(conn, kind, path)
        for vehicle in VEHICLES:
            store_batch(
                conn,
                [
                    decode(uplink_topic(vehicle, b.KIND), encode(vehicle, seq, b, sent_at=T0))
                    for seq, b in enumerate(bodies, start=1)
                ],
            )
        conn.execute(
            "INSERT INTO segments (name, expression, size, computed_at)"
            """ VALUES ('contract', '{"all": []}', 2, now())"""
        )
        conn.cursor().executemany(
            "INSERT INTO segment_members (segment, customer_id) VALUES ('contract', %s)",
            [(c,) for c in CUSTOMERS],
        )
        # churn scores of both customers on two days (both consent to marketing): a list, a trend
        conn.execute(
            "INSERT INTO churn_models (as_of, horizon_days, features, metrics, model)"
            " VALUES ('{2026-10-01}', 30, '{}', '{}', '')"
        )
        conn.cursor().executemany(
            "INSERT INTO churn_scores (customer_id, day, probability, tier, reasons, model_version)"
            """ VALUES (%s, %s, %s, 'high', '[{"feature": "days_since_service", "value": 700,"""
            """ "contribution": 1.5}]', 1)""",
            [(c, d, p) for c in CUSTOMERS for d, p in (("2026-11-01", 0.3), ("2026-11-02", 0.4))],
        )
        # upgrade scores of both customers on two days: a list, a trend
        conn.execute(
            "INSERT INTO upgrade_models (as_of, horizon_days, features, metrics, model)"
            " VALUES ('{2026-10-01}', 90, '{}', '{}', '')"
        )
        conn.cursor().executemany(
            "INSERT INTO upgrade_scores (customer_id, day, probability, reasons, model_version)"
            """ VALUES (%s, %s, %s, '[{"feature": "vehicle_age_years", "value": 8.1,"""
            """ "contribution": 0.9}]', 1)""",
            [(c, d, p) for c in CUSTOMERS for d, p in (("2026-11-01", 0.5), ("2026-11-02", 0.6))],
        )
        # request 1, so that confirming it reaches the token check (a 403: the run never knows the token)
        request_erasure(conn, CUSTOMERS[1], key_id=None)


@pytest.fixture(scope="module")
def api(admin_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The real API (``drivesight-cloud api``) on a seeded scratch database, with an admin key."""
    directory = tmp_path_factory.mktemp("contract")
    with scratch_database(admin_database_url, "drivesight_contract") as url:
        migrate(url)
        _seed(url, directory)
        with psycopg.connect(url, autocommit=True) as conn:
            key = create_key(conn, name="contract test", scopes=["admin"]).key
        port = free_port()
        env = {
            **os.environ,
            "DRIVESIGHT_DATABASE_URL": url,
            # schemathesis sends about a hundred requests a second with one key: no 429 in the way
            "DRIVESIGHT_API_RATE_PER_S": "100000",
            "DRIVESIGHT_API_RATE_BURST": "100000",
            # two cars of one model: an insights group that is shown
            "DRIVESIGHT_API_MIN_GROUP_SIZE": "2",
            # so that the erasure routes run (else every confirmation is a 503)
            "DRIVESIGHT_PRIVACY_LEDGER_KEY": "contract-test-ledger-key-0123456789",
            "DRIVESIGHT_PRIVACY_LEDGER_FILE": str(directory / "ledger.jsonl"),
        }
        log = (directory / "api.log").open("wb")
        server = subprocess.Popen(
            [str(BIN / "drivesight-cloud"), "api", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port("127.0.0.1", port, 30)
            yield Api(f"http://127.0.0.1:{port}", key)
        finally:
            server.terminate()
            server.wait(10)
            log.close()
            # the server's own log (tracebacks of a 500) is where a red run is explained
            print((directory / "api.log").read_text(errors="replace")[-5000:])


def _schemathesis(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    # the key goes through the environment (the toml would read it with ${...}), not the command line
    return subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{api.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {api.key}",
            "--checks",
            "all",
            "--max-examples",
            str(MAX_EXAMPLES),
            "--seed",
            str(SEED),
            # one worker: with two threads, CPython 3.11 at times fails inside schemathesis as it compiles
            # filters ("SystemError: AST constructor recursion depth mismatch"): an error not of the API
            "--workers",
            "1",
            "--no-color",
            "--output-sanitize",
            "true",
            *args,
        ],
        cwd=ROOT,  # where schemathesis.toml is, and the hooks file it names
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=240,
    )


def _summary(output: str) -> str:
    # from the first of schemathesis' closing sections: each failure with its curl line, then the totals
    found = [
        i
        for title in ("ERRORS", "FAILURES", "WARNINGS", "SUMMARY")
        if (i := output.find(f"= {title} =")) >= 0
    ]
    return output[min(found, default=0) :][-20000:]


def test_schemathesis_finds_no_contract_break(api: Api) -> None:
    """Every check on every operation, positive and negative data: no 5xx, nothing outside the document."""
    started = time.monotonic()
    run = _schemathesis(api)
    output = run.stdout + run.stderr
    print(f"schemathesis took {time.monotonic() - started:.1f} s")
    print(_summary(output))
    assert run.returncode == 0, f"schemathesis exit code {run.returncode}:\n{_summary(output)}"
    totals = re.search(r"Test cases:\s*\n\s*(\d+) generated, (\d+) passed", output)
    assert totals is not None, output[-3000:]
    generated, passed = map(int, totals.groups())
    # a run that tests (almost) nothing is no gate: 14 operations at this size give about a thousand cases
    assert generated >= 500 and passed == generated, output[-3000:]
    assert "Failures:" not in output and "Errors:" not in output, _summary(output)
    selected = re.search(r"Selected: (\d+)/(\d+)", output)
    tested = re.search(r"Tested: (\d+)", output)
    assert selected and tested, _summary(output)
    assert int(tested.group(1)) == int(selected.group(2)) >= 20, "fewer operations tested than the API has"


def _cursor(value: Any) -> str:
    raw = json.dumps(value, ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_LISTS = {
    "vehicles": "/v1/vehicles",
    "segments": "/v1/segments",
    "trips": f"/v1/vehicles/{VEHICLES[0]}/trips",
    "events": f"/v1/vehicles/{VEHICLES[0]}/trips/{TRIP}/events",
    "insights": "/v1/insights?since=2026-01-01T00:00:00Z&until=2027-01-01T00:00:00Z",
    "churn": "/v1/churn",
    "reminders": "/v1/service/reminders",
    "upgrade": "/v1/upgrade",
    "leads": "/v1/leads",
}
# what JSON can spell and no stored key holds: lone surrogates, NUL, integers past 64 bits, odd times
_TEXT = st.one_of(
    st.sampled_from(
        ["\ud800", "a\udfffb", "\x00", "x\x00y", "", "2026-11-02T08:00:00", "9999-12-31T23:59:59+14:00"]
    ),
    st.text(max_size=20),
)
_INT = st.one_of(st.sampled_from([-(2**63) - 1, 2**63, 2**64, -1, 0]), st.integers(-(2**70), 2**70))
#: the sort key's shape per list (as pagination.encode_cursor makes it), filled with odd values
_SHAPES = {
    "vehicles": st.tuples(_TEXT),
    "segments": st.tuples(_TEXT),
    "trips": st.tuples(_TEXT, _TEXT),
    "events": st.tuples(_TEXT, _INT, _INT),
    "insights": st.tuples(_INT),
    "churn": st.tuples(st.floats(), _TEXT),
    "reminders": st.tuples(_INT),
    "upgrade": st.tuples(st.floats(), _TEXT),
    "leads": st.tuples(_INT),
}
_ANY_KEY = st.lists(st.one_of(_TEXT, _INT, st.floats(), st.booleans(), st.none()), max_size=4)


@st.composite
def _forged(draw: st.DrawFn) -> tuple[str, list[Any]]:
    kind = draw(st.sampled_from(sorted(_LISTS)))
    # mostly the right shape (so the values reach the query), sometimes any JSON list
    key = list(draw(st.one_of(_SHAPES[kind], _SHAPES[kind], _SHAPES[kind], _ANY_KEY)))
    return kind, key


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(forged=_forged())
def test_forged_cursors_are_refused_never_a_server_error(api: Api, forged: tuple[str, list[Any]]) -> None:
    """A cursor that decodes but was not made by this server is a 200 (a key that could exist) or a 422 in the
    error shape; never a 5xx (a lone surrogate in a cursor was a 500)."""
    kind, key = forged
    path = _LISTS[kind]
    with httpx.Client(base_url=api.url, headers=api.headers, timeout=10) as client:
        response = client.get(path, params={"cursor": _cursor([kind, *key])})
    assert response.status_code in (200, 422), (response.status_code, response.text)
    if response.status_code == 422:
        body = response.json()
        assert set(body) == {"detail", "code", "errors"}, body
        assert body["code"] in ("invalid_cursor", "invalid_request"), body
