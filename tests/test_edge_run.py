"""``drivesight-edge run`` as a process: a source in, messages stored in the cloud, consent reported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg

from cloud.ingest.worker import IngestWorker
from edge_agent.protocol import BrokerAddress
from tests.helpers import count, wait_until
from tests.test_can_logs import T0
from tests.test_can_logs import _setup as can_log

MAPPING = """
[time]
column = "t"
[signals."Vehicle.Speed"]
column = "v"
[signals."Vehicle.Acceleration.Longitudinal"]
column = "ax"
"""


def test_edge_run_replays_a_file_into_the_cloud(
    tmp_path: Path,
    database_url: str,
    db: psycopg.Connection,
    broker: BrokerAddress,
    ingest_group: str | None,
    vehicle_prefix: str,
) -> None:
    rows = ["t,v,ax"] + [
        f"{1793577600 + i / 10:.1f},60,{-5.0 if 300 <= i < 315 else 0.0}" for i in range(1200)
    ]
    (tmp_path / "rec.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "map.toml").write_text(MAPPING)
    vehicle = vehicle_prefix + "run"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DRIVESIGHT_")},
        "DRIVESIGHT_EDGE_PERSISTENT_SESSION": "false",
        "DRIVESIGHT_EDGE_CONSENT_TELEMETRY": "true",
    }
    worker = IngestWorker(
        database_url, broker, group=ingest_group, client_id=f"run-{vehicle}", persistent=False
    )
    worker.start()
    try:
        cmd = [sys.executable, "-m", "edge_agent.cli", "run", "--vehicle-id", vehicle]
        cmd += ["--mqtt-url", broker.url(), "--state-dir", str(tmp_path / "state"), "--source", "replay"]
        cmd += ["--file", str(tmp_path / "rec.csv"), "--mapping", str(tmp_path / "map.toml")]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert wait_until(lambda: count(db, "SELECT count(*) FROM trips WHERE vehicle_id = %s", vehicle) == 1)
        assert wait_until(
            lambda: count(db, "SELECT count(*) FROM telemetry WHERE vehicle_id = %s", vehicle) > 0
        )
        kinds = db.execute("SELECT kind FROM driving_events WHERE vehicle_id = %s", (vehicle,)).fetchall()
        assert ("harsh_brake",) in kinds
        consent = db.execute("SELECT consent FROM vehicles WHERE vehicle_id = %s", (vehicle,)).fetchone()
        assert consent is not None and consent[0]["telemetry"] is True and consent[0]["profiling"] is False
        assert (tmp_path / "state" / f"{vehicle}.outbox.db").exists()
        wrong = [*cmd[:-2], "--mapping", str(tmp_path / "nope.toml")]
        bad = subprocess.run(wrong, capture_output=True, text=True, timeout=60, env=env)
        assert bad.returncode == 2 and "cannot read mapping" in bad.stderr
    finally:
        worker.stop()


def test_edge_run_reads_a_recorded_can_log(
    tmp_path: Path,
    database_url: str,
    db: psycopg.Connection,
    broker: BrokerAddress,
    ingest_group: str | None,
    vehicle_prefix: str,
) -> None:
    """``run --source can --file``: a BLF log through two DBCs, at the recorded times, into the cloud."""
    log, mapping = can_log(tmp_path, "blf")
    vehicle = vehicle_prefix + "canlog"
    worker = IngestWorker(database_url, broker, group=ingest_group, client_id="i" + vehicle, persistent=False)
    worker.start()
    try:
        state = ["--state-dir", str(tmp_path / "state"), "--mqtt-url", broker.url()]
        cmd = [sys.executable, "-m", "edge_agent.cli", "run", "--vehicle-id", vehicle, *state]
        cmd += ["--source", "can", "--file", str(log), "--mapping", str(mapping)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVESIGHT_")}
        env["DRIVESIGHT_EDGE_PERSISTENT_SESSION"] = "false"
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        assert wait_until(lambda: count(db, "SELECT count(*) FROM trips WHERE vehicle_id = %s", vehicle) == 1)
        row = db.execute(
            "SELECT extract(epoch FROM started_at) FROM driving_events"
            " WHERE vehicle_id = %s AND kind = 'harsh_brake'",
            (vehicle,),
        ).fetchone()
        assert row is not None and abs(float(row[0]) - (T0 + 20.0)) < 0.2  # the recording's time, not now
    finally:
        worker.stop()
