"""The campaign commands as a marketer runs them: create from a file, preview, launch to cars through the
real broker, read the results and the decisions, pause; refusals on stderr with their exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from edge_agent.protocol import BrokerAddress
from tests.test_campaigns import CUSTOMERS, _spec, _world


def _quiet_far_from_now() -> dict[str, str]:
    """Quiet hours (Shanghai time) twelve hours away from now, so that the launch is outside them."""
    local = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    start = (local + timedelta(hours=11)).strftime("%H:00")
    end = (local + timedelta(hours=13)).strftime("%H:00")
    return {"from": start, "to": end}


def test_a_campaign_from_the_command_line(
    fresh_database: str, vehicle_prefix: str, broker: BrokerAddress, tmp_path: Path
) -> None:
    _world(fresh_database, vehicle_prefix)
    env = {**os.environ, "DRIVESIGHT_DATABASE_URL": fresh_database, "DRIVESIGHT_MQTT_URL": broker.url()}

    def cloud(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cloud.cli", *args], capture_output=True, text=True, timeout=120, env=env
        )

    def only_json(result: subprocess.CompletedProcess[str]) -> Any:
        assert result.returncode == 0, result.stderr[-2000:]
        return json.loads(result.stdout)

    now = datetime.now(UTC)
    spec = _spec(
        "cli-winter",
        starts_at=(now - timedelta(hours=1)).isoformat(),
        ends_at=(now + timedelta(days=7)).isoformat(),
        quiet_hours=_quiet_far_from_now(),
    )
    path = tmp_path / "campaign.json"
    path.write_text(json.dumps(spec))
    assert only_json(cloud("campaigns", "create", str(path), "--json")) == {
        "campaign_id": "cli-winter",
        "status": "draft",
    }
    again = cloud("campaigns", "create", str(path))
    assert again.returncode == 3 and "exists already" in again.stderr and again.stdout == ""
    preview = only_json(cloud("campaigns", "preview", "cli-winter", "--json"))
    assert preview["audience_open"] == CUSTOMERS and preview["decisions"]["sent"] > 200
    launched = only_json(cloud("campaigns", "launch", "cli-winter", "--json"))
    assert launched["acknowledged"] == launched["decided"]["sent"] == preview["decisions"]["sent"]
    results = only_json(cloud("campaigns", "results", "cli-winter", "--json"))
    arms = {a["arm"]: a for a in results["arms"]}
    assert arms["fixed"]["sent"] + arms["random"]["sent"] == launched["acknowledged"]
    assert "uplift" in arms["fixed"] and arms["holdout"]["sent"] == 0
    table = cloud("campaigns", "results", "cli-winter")
    assert table.returncode == 0 and "holdout" in table.stdout and "uplift [95% CI]" in table.stdout
    held = only_json(cloud("campaigns", "decisions", "cli-winter", "--decision", "held", "--json"))
    assert held and all("time zone" in d["reason"] for d in held)
    assert only_json(cloud("campaigns", "pause", "cli-winter", "--json"))["status"] == "paused"
    listed = only_json(cloud("campaigns", "list", "--json"))
    assert [(c["campaign_id"], c["status"], c["sent"]) for c in listed] == [
        ("cli-winter", "paused", launched["acknowledged"])
    ]
    # refusals: a bad file, an unknown campaign
    path.write_text("{not json")
    bad = cloud("campaigns", "create", str(path))
    assert bad.returncode == 2 and "not a readable JSON file" in bad.stderr and bad.stdout == ""
    unknown = cloud("campaigns", "launch", "nobody")
    assert unknown.returncode == 2 and "unknown campaign 'nobody'" in unknown.stderr
