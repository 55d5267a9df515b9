"""deploy/ stays consistent with the code: variable names, commands and broker limits."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from cloud import cli as cloud_cli
from cloud.config import CloudSettings
from edge_agent import cli as edge_cli
from edge_agent.config import EdgeSettings

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def check_compose_services(compose: dict[str, Any]) -> None:
    """Every DRIVESIGHT_* variable of a compose file is a cloud setting, and every service built from
    deploy/Dockerfile runs a command its entry point (``drivesight-cloud``) knows."""
    entrypoint = re.search(r"^ENTRYPOINT (.+)$", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert entrypoint is not None and json.loads(entrypoint.group(1)) == ["drivesight-cloud"]
    fields = {f"DRIVESIGHT_{name.upper()}" for name in CloudSettings.model_fields}
    parser = cloud_cli.build_parser()
    built = 0
    for name, service in compose["services"].items():
        for var in service.get("environment", {}):
            if var.startswith("DRIVESIGHT_"):
                assert var in fields, f"{name}: {var} is not a CloudSettings field"
        if "command" in service and "build" in service:
            parser.parse_args(service["command"])  # raises SystemExit on an unknown command
            built += 1
    assert built >= 3  # migrate, ingest, api


def test_compose_uses_real_settings_and_commands() -> None:
    check_compose_services(yaml.safe_load((DEPLOY / "docker-compose.yml").read_text()))


def test_broker_config_does_not_drop_queued_messages() -> None:
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text()
    settings = dict(re.findall(r"^(\w+)\s+(\S+)", conf, flags=re.MULTILINE))
    assert settings["max_queued_messages"] == "0"  # unlimited by count, bounded by bytes
    assert int(settings["max_queued_bytes"]) >= 256 * 1024 * 1024
    assert int(settings["max_inflight_messages"]) >= 1000
    assert settings["allow_anonymous"] == "false"


def _setting_names() -> set[str]:
    """Every environment name a settings class reads."""
    cloud = {f"DRIVESIGHT_{name.upper()}" for name in CloudSettings.model_fields}
    edge = {f"DRIVESIGHT_EDGE_{name.upper()}" for name in EdgeSettings.model_fields}
    return cloud | edge


# an assignment: `NAME=value` (env files, systemd Environment=), `NAME: value` (compose), `- NAME=value`
_ASSIGNED = re.compile(r"(?:^|[\s=\-])(DRIVESIGHT_[A-Z0-9_]+)\s*[=:]", re.MULTILINE)


def test_every_environment_name_in_deploy_is_read_by_a_settings_class() -> None:
    known = _setting_names()
    checked = 0
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        for name in _ASSIGNED.findall(text):
            checked += 1
            assert name in known, f"{path.relative_to(DEPLOY)}: {name} is read by no settings class"
    assert checked >= 10  # the pattern still finds the assignments


def test_the_systemd_unit_starts_a_car_with_its_configured_source(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "drivesight-edge.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+)(.*)$", unit, flags=re.MULTILINE)
    assert exec_start is not None and exec_start.group(1).endswith("/drivesight-edge")
    args = edge_cli.build_parser().parse_args(exec_start.group(2).split())
    assert args.handler is edge_cli.run_agent
    # with the example configuration the settings name a real source, and nothing falls back to a simulator
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "systemd" / "edge.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    settings = EdgeSettings(**{k.removeprefix("DRIVESIGHT_EDGE_").lower(): v for k, v in example.items()})
    assert settings.source in ("can", "obd", "replay") and settings.mapping_file is not None
    assert settings.mqtt_url.startswith("mqtts://")
    # the car reads only its own settings: a cloud name here (DRIVESIGHT_MQTT_URL) would be silently ignored
    edge = {f"DRIVESIGHT_EDGE_{name.upper()}" for name in EdgeSettings.model_fields}
    for path in (DEPLOY / "systemd").iterdir():
        assert set(_ASSIGNED.findall(path.read_text())) <= edge, path.name
    for name in ("CA_FILE", "CERT_FILE", "KEY_FILE"):
        assert f"Environment=DRIVESIGHT_EDGE_{name}=%d/" in unit  # the car's identity from its credentials
