"""``drivesight demo``: the whole pipeline on one machine, with nothing configured.

Starts (or uses, when ``DRIVESIGHT_DATABASE_URL`` / ``DRIVESIGHT_MQTT_URL`` are set) PostgreSQL and an MQTT
broker, migrates, runs the ingest worker and the HTTP API, drives a simulated fleet through real edge agents,
waits until the cloud stored every acknowledged message, reads trips back through the API, and summarizes
what was stored against the simulator's ground truth.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import psycopg
import uvicorn

from cloud.access.keys import create_key, revoke_key
from cloud.api.app import create_app
from cloud.config import CloudSettings
from cloud.db.migrate import migrate
from cloud.db.rollups import refresh as refresh_rollups
from cloud.embedded import EmbeddedBroker, EmbeddedPostgres, free_port, wait_for_port
from cloud.ingest.worker import IngestWorker
from edge_agent.agent import TelemetrySettings
from edge_agent.protocol import HARSH_KINDS, BrokerAddress

from .fleet import build_fleet, drive_fleet, injected_counts, simulate_fleet
from .personas import PersonaName
from .progress import Progress


@dataclass
class DemoSummary:
    """What the demo measured."""

    database: str
    broker: str
    vehicles: int
    samples: int
    messages_acknowledged: int
    messages_stored: int
    trips_stored: int
    trips_simulated: int
    harsh_events_stored: int
    harsh_events_injected: int
    telemetry_rows: int
    #: hourly rollup rows of the demo's vehicles, refreshed at the end (both dialects)
    rollup_hours: int
    dead_letters: int
    api_trips_checked: int
    seconds: float
    events_by_kind: dict[str, int] = field(default_factory=dict)
    by_persona: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for --json."""
        return self.__dict__.copy()


@contextlib.contextmanager
def _services(settings: CloudSettings, progress: Progress) -> Iterator[tuple[str, str, bool]]:
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url
        if not database_url:
            progress.note("starting embedded PostgreSQL (pgserver)")
            pg = EmbeddedPostgres()
            database_url = pg.start()
            stack.callback(pg.stop)
        mqtt_url = settings.mqtt_url
        shared = True
        if not mqtt_url:
            broker = EmbeddedBroker()
            mqtt_url = broker.start()
            shared = broker.supports_shared_subscriptions
            progress.note(f"started embedded MQTT broker ({broker.kind}) at {mqtt_url}")
            stack.callback(broker.stop)
        yield database_url, mqtt_url, shared


class _ApiServer:
    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            create_app(database_url), host="127.0.0.1", port=self.port, log_level="warning"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        wait_for_port("127.0.0.1", self.port, timeout=30)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def _wait_stored(
    database_url: str, prefix: str, expected: int, timeout_s: float, advance: Callable[[float], None]
) -> int:
    deadline = time.monotonic() + timeout_s
    stored = 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM ingested_messages WHERE vehicle_id LIKE %s", (prefix + "%",)
            ).fetchone()
            now_stored = int(row[0]) if row else 0
            advance(now_stored - stored)
            stored = now_stored
            if stored >= expected or time.monotonic() > deadline:
                return stored
            time.sleep(0.1)


def run_demo(
    *,
    vehicles: int = 20,
    days: int = 1,
    seed: int = 7,
    first_day: date = date(2026, 11, 2),
    telemetry: bool = True,
    consent_rate: float = 0.8,
    settings: CloudSettings | None = None,
    progress: Progress | None = None,
) -> DemoSummary:
    """Run the pipeline end to end and return what it measured."""
    settings = settings or CloudSettings()
    progress = progress or Progress()
    started = time.monotonic()
    run_id = uuid.uuid4().hex[:6]
    prefix = f"demo-{run_id}-"
    with (
        _services(settings, progress) as (database_url, mqtt_url, shared),
        tempfile.TemporaryDirectory() as tmp,
    ):
        applied = migrate(database_url)
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT now()").fetchone()
            assert row is not None
            since = row[0]
        progress.note(f"migrated database ({len(applied)} migrations applied)")
        broker = BrokerAddress.parse(mqtt_url)
        worker = IngestWorker(
            database_url,
            broker,
            group=f"demo-{run_id}" if shared else None,
            client_id=f"drivesight-demo-ingest-{run_id}",
            persistent=False,
        )
        worker.start()
        try:
            with _ApiServer(database_url) as api_url:
                progress.note(f"ingest subscribed; API at {api_url}")
                specs = build_fleet(vehicles, seed, prefix=prefix, consent_rate=consent_rate)
                advance = progress.phase("simulating vehicles", total=len(specs))
                trips = simulate_fleet(specs, first_day, days, seed, on_vehicle=lambda: advance(1))
                total_samples = sum(len(t.block) for ts in trips.values() for t in ts)
                advance = progress.phase("edge agents -> MQTT (samples)", total=total_samples)
                fleet = drive_fleet(
                    specs,
                    trips,
                    broker,
                    Path(tmp) / "outboxes",
                    telemetry=TelemetrySettings() if telemetry else None,
                    on_samples=advance,
                )
                advance = progress.phase("ingest -> PostgreSQL (messages)", total=fleet.messages_acknowledged)
                stored = _wait_stored(database_url, prefix, fleet.messages_acknowledged, 120, advance)
                refresh_rollups(database_url)  # what `cloud db maintain` does hourly: the demo shows rollups
                api_checked = _check_api(api_url, database_url, specs[: min(5, len(specs))])
                summary = _summarize(database_url, prefix, since, specs, trips)
        finally:
            worker.stop()
        return DemoSummary(
            database=_redact(database_url),
            broker=broker.url(),
            vehicles=len(specs),
            samples=fleet.samples,
            messages_acknowledged=fleet.messages_acknowledged,
            messages_stored=stored,
            api_trips_checked=api_checked,
            seconds=round(time.monotonic() - started, 1),
            **summary,
        )


def _redact(url: str) -> str:
    head, sep, tail = url.partition("@")
    if sep and ":" in head.split("//", 1)[-1]:
        scheme, _, creds = head.partition("//")
        return f"{scheme}//{creds.split(':', 1)[0]}:***@{tail}"
    return url


def _check_api(api_url: str, database_url: str, specs: list[Any]) -> int:
    """Read trips back through the HTTP API with a fleet key of the demo's own (revoked after); return how
    many came back."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        key = create_key(conn, name="drivesight demo", scopes=["fleet:read"], expires_days=1)
    total = 0
    try:
        headers = {"Authorization": f"Bearer {key.key}"}
        with httpx.Client(base_url=api_url, timeout=10, headers=headers) as client:
            client.get("/healthz").raise_for_status()
            for spec in specs:
                cursor = None
                while True:
                    params = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
                    response = client.get(f"/v1/vehicles/{spec.vehicle_id}/trips", params=params)
                    response.raise_for_status()
                    page = response.json()
                    total += len(page["items"])
                    cursor = page["next_cursor"]
                    if cursor is None:
                        break
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            revoke_key(conn, key.id)
    return total


def _summarize(
    database_url: str, prefix: str, since: Any, specs: list[Any], trips: dict[str, list[Any]]
) -> dict[str, Any]:
    like = prefix + "%"
    harsh = sorted(k.value for k in HARSH_KINDS)
    with psycopg.connect(database_url, autocommit=True) as conn:

        def scalar(sql: str) -> int:
            row = conn.execute(sql, (like,)).fetchone()
            return int(row[0]) if row and row[0] is not None else 0

        per_vehicle = {
            str(v): (float(km), int(n_events))
            for v, km, n_events in conn.execute(
                "SELECT t.vehicle_id, sum(t.distance_km),"
                " (SELECT count(*) FROM driving_events e WHERE e.vehicle_id = t.vehicle_id"
                "  AND e.kind = ANY(%s))"
                " FROM trips t WHERE t.vehicle_id LIKE %s GROUP BY t.vehicle_id",
                (harsh, like),
            )
        }
        events_by_kind = {
            str(kind): int(n)
            for kind, n in conn.execute(
                "SELECT kind, count(*) FROM driving_events WHERE vehicle_id LIKE %s"
                " GROUP BY kind ORDER BY kind",
                (like,),
            )
        }
        styles: dict[str, list[str]] = {}
        for vehicle_id, style in conn.execute(
            "SELECT vehicle_id, driving_style FROM trips"
            " WHERE vehicle_id LIKE %s AND driving_style IS NOT NULL",
            (like,),
        ):
            styles.setdefault(str(vehicle_id), []).append(str(style))
        trips_stored = scalar("SELECT count(*) FROM trips WHERE vehicle_id LIKE %s")
        telemetry_rows = scalar("SELECT count(*) FROM telemetry WHERE vehicle_id LIKE %s")
        rollup_hours = scalar("SELECT count(*) FROM telemetry_hourly WHERE vehicle_id LIKE %s")
        row = conn.execute("SELECT count(*) FROM dead_letters WHERE received_at >= %s", (since,)).fetchone()
        dead_letters = int(row[0]) if row else 0
    by_persona: dict[str, dict[str, float]] = {}
    for persona in PersonaName:
        ids = [s.vehicle_id for s in specs if s.persona is persona]
        km = sum(per_vehicle.get(i, (0.0, 0))[0] for i in ids)
        stored = sum(per_vehicle.get(i, (0.0, 0))[1] for i in ids)
        injected = sum(sum(injected_counts(trips[i]).values()) for i in ids)
        verdicts = [style for i in ids for style in styles.get(i, [])]
        by_persona[persona.value] = {
            "styled_trips": len(verdicts),
            "style_accuracy": round(sum(v == persona.value for v in verdicts) / len(verdicts), 3)
            if verdicts
            else 0.0,
            "vehicles": len(ids),
            "km": round(km, 1),
            "harsh_events": stored,
            "harsh_per_100km": round(stored / km * 100, 2) if km else 0.0,
            "injected": injected,
        }
    return {
        "trips_stored": trips_stored,
        "trips_simulated": sum(len(t) for t in trips.values()),
        "harsh_events_stored": sum(events_by_kind.get(k, 0) for k in harsh),
        "harsh_events_injected": sum(sum(injected_counts(t).values()) for t in trips.values()),
        "events_by_kind": events_by_kind,
        "telemetry_rows": telemetry_rows,
        "rollup_hours": rollup_hours,
        "dead_letters": dead_letters,
        "by_persona": by_persona,
    }
