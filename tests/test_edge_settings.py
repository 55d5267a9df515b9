"""The edge settings of issue 12: names, defaults and refusals, read from the environment as the car does."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from edge_agent.config import EdgeSettings
from edge_agent.protocol import MAX_PAYLOAD_BYTES


def test_defaults_keep_the_bound_on_disk_the_contracts_limit_and_a_resend_window() -> None:
    settings = EdgeSettings()
    assert settings.outbox_max_mb == 64.0
    assert settings.max_message_bytes == MAX_PAYLOAD_BYTES  # below the broker's 256 KiB packet limit
    assert settings.resend_window_s == 60.0  # well over the broker's autosave interval (10 s)
    assert settings.mqtt_client_id is None  # the vehicle id


def test_names_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVESIGHT_EDGE_OUTBOX_MAX_MB", "8")
    monkeypatch.setenv("DRIVESIGHT_EDGE_MAX_MESSAGE_BYTES", "65536")
    monkeypatch.setenv("DRIVESIGHT_EDGE_RESEND_WINDOW_S", "0")
    monkeypatch.setenv("DRIVESIGHT_EDGE_MQTT_CLIENT_ID", "VIN0001")
    settings = EdgeSettings()
    assert (settings.outbox_max_mb, settings.max_message_bytes) == (8.0, 65536)
    assert (settings.resend_window_s, settings.mqtt_client_id) == (0.0, "VIN0001")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DRIVESIGHT_EDGE_MAX_MESSAGE_BYTES": str(MAX_PAYLOAD_BYTES + 1)}, "less than or equal"),
        ({"DRIVESIGHT_EDGE_RESEND_WINDOW_S": "-1"}, "greater than or equal"),
        ({"DRIVESIGHT_EDGE_OUTBOX_MAX_MB": "0.25"}, "needs at least"),  # cannot hold two 128 KiB messages
    ],
)
def test_refusals(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=message):
        EdgeSettings()


def test_a_small_bound_fits_a_smaller_message_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIVESIGHT_EDGE_OUTBOX_MAX_MB", "0.25")
    monkeypatch.setenv("DRIVESIGHT_EDGE_MAX_MESSAGE_BYTES", "4096")
    assert EdgeSettings().outbox_max_mb == 0.25


def test_sensor_profile_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EdgeSettings().sensor_profile == "vehicle-bus"  # the car's own bus: the thresholds as before
    monkeypatch.setenv("DRIVESIGHT_EDGE_SENSOR_PROFILE", "phone")
    assert EdgeSettings().sensor_profile == "phone"
    monkeypatch.setenv("DRIVESIGHT_EDGE_SENSOR_PROFILE", "smartwatch")
    with pytest.raises(ValidationError, match=r"vehicle-bus.*phone.*aftermarket-imu"):
        EdgeSettings()
