"""deploy/ stays consistent with the code: variable names, commands and broker limits."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from cloud.config import CloudSettings
from simulators.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_compose_uses_real_settings_and_commands() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    fields = {f"DRIVESIGHT_{name.upper()}" for name in CloudSettings.model_fields}
    parser = build_parser()
    for name, service in compose["services"].items():
        for var in service.get("environment", {}):
            if var.startswith("DRIVESIGHT_"):
                assert var in fields, f"{name}: {var} is not a CloudSettings field"
        if "command" in service and "build" in service:
            parser.parse_args(service["command"])  # raises SystemExit on an unknown command


def test_broker_config_does_not_drop_queued_messages() -> None:
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    settings = dict(re.findall(r"^(\w+)\s+(\S+)", conf, flags=re.MULTILINE))
    assert settings["max_queued_messages"] == "0"  # unlimited by count, bounded by bytes
    assert int(settings["max_queued_bytes"]) >= 256 * 1024 * 1024
    assert int(settings["max_inflight_messages"]) >= 1000
    assert settings["allow_anonymous"] == "false"
