"""Edge settings, read once at start from ``DRIVESIGHT_EDGE_*`` environment variables (CLI flags override).

Privacy by default: no consent scope is granted until the owner grants it (in the head unit, or from the app
through a config downlink); the last choice is kept in the state directory and wins over these defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .detectors import VehicleClass
from .outbox_budget import DEFAULT_PAGE_SIZE, DiskBudget
from .profiles import SensorProfile
from .protocol import MAX_PAYLOAD_BYTES, ConsentState


class EdgeSettings(BaseSettings):
    """Everything the in-car process needs to know."""

    model_config = SettingsConfigDict(env_prefix="DRIVESIGHT_EDGE_", extra="ignore")

    vehicle_id: str | None = None
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    #: the broker ties a car's client id to its certificate (one identity per car): the vehicle id by default
    mqtt_client_id: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    #: keep the MQTT session across reconnects, so the broker holds pushes and config while the car is away
    persistent_session: bool = True
    state_dir: Path = Path(".drivesight/edge")
    #: the outbox's bound on disk: database file, write-ahead log and WAL index together
    outbox_max_mb: float = Field(default=64.0, gt=0)
    #: no message larger than this is sent (larger batches are split; an indivisible one is dropped and
    #: counted): the contract's limit, which is below the broker's (deploy/mosquitto: 256 KiB); at least
    #: 4 KiB, so that a status or a trip summary always fits
    max_message_bytes: int = Field(default=MAX_PAYLOAD_BYTES, ge=4096, le=MAX_PAYLOAD_BYTES)
    #: acknowledged messages are kept and sent again after a reconnect for this long, in case the broker
    #: dies before its next autosave (deploy/mosquitto: at most 10 s); 0 forgets them at the PUBACK
    resend_window_s: float = Field(default=60.0, ge=0)
    vehicle_class: VehicleClass = VehicleClass.CAR
    #: the kind of sensor the accelerations come from (edge_agent.profiles): its harsh-event thresholds
    sensor_profile: SensorProfile = SensorProfile.VEHICLE_BUS
    #: adjust the harsh thresholds to this vehicle's own peaks over its first hours, within bounds
    #: (edge_agent.calibration); the state is kept in the state directory
    self_calibrate: bool = True
    speed_limit_kmh: float | None = Field(default=120.0, gt=0)
    timezone: str = "UTC"
    #: the detection grid every source is put on, after the rate-independent anti-alias box (unset: the
    #: source's own sample times, box-averaged)
    resample_hz: float | None = Field(default=10.0, gt=0)
    telemetry_period_s: float = Field(default=1.0, ge=0, description="0 turns telemetry off")
    telemetry_batch_s: float = Field(default=60.0, gt=0)
    consent_telemetry: bool = False
    consent_location: bool = False
    consent_profiling: bool = False
    location_mode: Literal["coarse", "drop"] = "coarse"
    #: Ed25519 public key (PEM): when set, only models signed with its private key are installed
    model_public_key_file: Path | None = None
    #: where signals come from: a recorded file (replay), the CAN bus with a DBC mapping, or an OBD-II adapter
    source: Literal["replay", "can", "obd"] | None = None
    source_file: Path | None = None
    mapping_file: Path | None = None
    #: can: DBC files that replace the mapping's own ``dbc`` (JSON list in the environment)
    dbc_files: list[Path] = Field(default_factory=list)
    can_interface: str = "socketcan"
    can_channel: str = "can0"
    obd_port: str | None = None

    @model_validator(mode="after")
    def _outbox_bound_holds_its_messages(self) -> EdgeSettings:
        # refused here, with the settings' other errors, rather than when the outbox opens
        DiskBudget.plan(int(self.outbox_max_mb * 2**20), DEFAULT_PAGE_SIZE, self.max_message_bytes)
        return self

    def default_consent(self) -> ConsentState:
        """The consent configured here, used until the owner's own choice is stored."""
        return ConsentState(
            telemetry=self.consent_telemetry,
            location=self.consent_location,
            profiling=self.consent_profiling,
            location_mode=self.location_mode,
        )
