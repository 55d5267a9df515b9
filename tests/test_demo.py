"""``drivesight demo`` in a small size: on the configured services, and with nothing configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from cloud.config import CloudSettings
from edge_agent.protocol import BrokerAddress
from simulators.demo import run_demo


def _assert_complete(summary: dict) -> None:
    assert summary["messages_stored"] == summary["messages_acknowledged"] > 0
    assert summary["trips_stored"] == summary["trips_simulated"] > 0
    assert summary["harsh_events_stored"] == summary["harsh_events_injected"]
    assert (
        sum(summary["events_by_kind"].get(k, 0) for k in ("harsh_brake", "harsh_accel", "harsh_corner"))
        == (summary["harsh_events_stored"])
    )
    assert summary["telemetry_rows"] > 0
    assert summary["rollup_hours"] > 0  # the demo leaves its rollups filled
    assert summary["dead_letters"] == 0
    assert summary["api_trips_checked"] > 0
    assert set(summary["by_persona"]) == {"calm_commuter", "aggressive", "night_driver", "highway"}


def test_demo_on_configured_services(database_url: str, broker: BrokerAddress) -> None:
    summary = run_demo(vehicles=4, settings=CloudSettings(database_url=database_url, mqtt_url=broker.url()))
    _assert_complete(summary.as_dict())
    assert summary.vehicles == 4


def test_demo_cli_with_nothing_configured(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVESIGHT_")}
    result = subprocess.run(
        [sys.executable, "-m", "simulators.cli", "demo", "--vehicles", "4", "--json"],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout)  # --json: only JSON on stdout
    _assert_complete(summary)
    assert summary["database"].startswith("postgresql://") and "host=/" in summary["database"]  # embedded
    assert "edge agents -> MQTT" in result.stderr  # progress was shown
