"""Cloud settings, read once at start from ``DRIVESIGHT_*`` environment variables."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from edge_agent.protocol import BrokerAddress


class CloudSettings(BaseSettings):
    """Where the cloud services find PostgreSQL and the broker, and how the ingest batches.

    ``DRIVESIGHT_DATABASE_URL`` and ``DRIVESIGHT_MQTT_URL`` unset mean "start embedded services" for
    ``drivesight demo``; the long-running services refuse to start without them.
    """

    model_config = SettingsConfigDict(env_prefix="DRIVESIGHT_", extra="ignore")

    database_url: str | None = None
    mqtt_url: str | None = None
    mqtt_ca_file: str | None = None
    #: a client certificate and its key, where the broker knows this service by certificate (mqtts:// only)
    mqtt_cert_file: str | None = None
    mqtt_key_file: str | None = None
    #: the broker password of this service's user, read from a file (a compose or systemd secret) so that it
    #: stays out of DRIVESIGHT_MQTT_URL, the environment and `ps`
    mqtt_password_file: Path | None = None
    ingest_group: str = "ingest"
    #: must differ per worker (it names the persistent MQTT session); the host name does in containers
    ingest_client_id: str = Field(default_factory=lambda: f"drivesight-ingest-{socket.gethostname()}")
    ingest_batch_size: int = Field(default=1000, ge=1, le=100_000)
    ingest_linger_s: float = Field(default=0.02, ge=0, le=5)
    ingest_queue_size: int = Field(default=20_000, ge=1)
    #: each ingest worker serves Prometheus metrics and /healthz on this address and port (0: no endpoint)
    ingest_metrics_host: str = "127.0.0.1"
    ingest_metrics_port: int = Field(default=9108, ge=0, le=65535)
    #: how far ahead of this machine's clock a car's timestamps may be before its message is refused
    ingest_max_clock_skew_s: float = Field(default=3600, ge=0, le=7 * 86400)
    #: a worker that stores nothing for this long while messages wait exits non-zero (to be restarted)
    ingest_stall_timeout_s: float = Field(default=300, gt=0)
    #: a TOML retention policy per stream (cloud/db/retention.py); unset: the built-in defaults
    retention_file: Path | None = None
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    #: API worker processes (``drivesight-cloud api --workers``); each has its own connection pools, key
    #: cache and rate buckets
    api_workers: int = Field(default=1, ge=1, le=64)
    #: one log line per request on stderr (uvicorn's access log). Off by default: without it a worker's CPU
    #: per portrait read went from 3.3 to 2.4 ms at 300/s (one noisy measurement); personal reads and all
    #: writes are in the audit log anyway
    api_access_log: bool = False
    #: how long the API keeps a fitted recommender before refitting it on new interactions (seconds)
    recommend_cache_s: float = Field(default=600.0, gt=0, le=86400)
    #: the share of customers no campaign reaches, the baseline of all campaigns together
    #: (cloud/push/assign.py); changing it once campaigns ran moves customers in or out of the group
    push_global_control_share: float = Field(default=0.05, ge=0, le=0.5)
    #: the webhook channel's signing secret (cloud/push/webhooks.py), or a file holding it
    push_webhook_secret: SecretStr | None = None
    push_webhook_secret_file: Path | None = None
    #: answer each authenticated request with ``Server-Timing: auth;dur=<ms>;desc="cached"|"lookup"`` (the
    #: key check's own time in the server; the API benchmark reads it). Off by default: clients need not know
    api_server_timing: bool = False
    #: requests a second per API key (a token bucket per key and API process: with N worker processes a key
    #: gets up to N times this), and how many may come at once
    api_rate_per_s: float = Field(default=50.0, gt=0, le=1_000_000)
    api_rate_burst: int = Field(default=100, ge=1, le=10_000_000)
    #: how long an API process trusts a key it verified: a revoked key stops working within this time
    api_key_cache_s: float = Field(default=2.0, ge=0, le=5)
    #: R&D insight groups with fewer vehicles than this are left out of API answers (not only flagged)
    api_min_group_size: int = Field(default=5, ge=2, le=10_000)
    #: the erasure ledger's HMAC-SHA256 key (cloud/privacy/ledger.py), or a file holding it: erased ids are
    #: kept only as keyed hashes, so a restore must run with the key the ledger was written under
    privacy_ledger_key: SecretStr | None = None
    privacy_ledger_key_file: Path | None = None
    #: the ledger's copy outside the database (JSON lines, appended before an erasure commits): what a restore
    #: of a backup older than an erasure re-applies
    privacy_ledger_file: Path | None = None

    def require_database_url(self) -> str:
        """The database URL, or a clear error naming the variable to set."""
        if not self.database_url:
            raise SystemExit(
                "DRIVESIGHT_DATABASE_URL is not set (e.g. postgresql://user@host:5432/drivesight)"
            )
        return self.database_url

    def ledger_key(self) -> bytes:
        """The erasure ledger's key, or a clear error naming the variables to set (at least 16 bytes)."""
        if self.privacy_ledger_key is not None and self.privacy_ledger_key_file is not None:
            raise SystemExit("set DRIVESIGHT_PRIVACY_LEDGER_KEY or _LEDGER_KEY_FILE, not both")
        if self.privacy_ledger_key_file is not None:
            try:
                key = self.privacy_ledger_key_file.read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                raise SystemExit(f"cannot read DRIVESIGHT_PRIVACY_LEDGER_KEY_FILE: {exc}") from exc
        elif self.privacy_ledger_key is not None:
            key = self.privacy_ledger_key.get_secret_value().encode()
        else:
            raise SystemExit(
                "erasure needs the ledger key: set DRIVESIGHT_PRIVACY_LEDGER_KEY_FILE (or _KEY), e.g. from"
                " `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        if len(key) < 16:
            raise SystemExit("the erasure ledger key must be at least 16 bytes")
        return key

    def webhook_secret(self) -> bytes | None:
        """The webhook channel's signing secret, or None when none is configured (at least 16 bytes)."""
        if self.push_webhook_secret is not None and self.push_webhook_secret_file is not None:
            raise SystemExit("set DRIVESIGHT_PUSH_WEBHOOK_SECRET or _SECRET_FILE, not both")
        if self.push_webhook_secret_file is not None:
            try:
                secret = self.push_webhook_secret_file.read_bytes().rstrip(b"\r\n")
            except OSError as exc:
                raise SystemExit(f"cannot read DRIVESIGHT_PUSH_WEBHOOK_SECRET_FILE: {exc}") from exc
        elif self.push_webhook_secret is not None:
            secret = self.push_webhook_secret.get_secret_value().encode()
        else:
            return None
        if len(secret) < 16:
            raise SystemExit("the webhook secret must be at least 16 bytes")
        return secret

    def ledger_key_if_set(self) -> bytes | None:
        """The erasure ledger's key when one is configured (checked as :meth:`ledger_key` does), else None:
        the ingest and imports match erased ids with it and say what they cannot do without it."""
        if self.privacy_ledger_key is None and self.privacy_ledger_key_file is None:
            return None
        return self.ledger_key()

    def require_mqtt_url(self) -> str:
        """The broker URL, or a clear error naming the variable to set."""
        if not self.mqtt_url:
            raise SystemExit("DRIVESIGHT_MQTT_URL is not set (e.g. mqtt://127.0.0.1:1883)")
        return self.mqtt_url

    def broker_address(self) -> BrokerAddress:
        """The broker to connect to, with the password from ``DRIVESIGHT_MQTT_PASSWORD_FILE`` if set."""
        try:
            broker = BrokerAddress.parse(self.require_mqtt_url())
        except ValueError as exc:
            raise SystemExit(f"DRIVESIGHT_MQTT_URL: {exc}") from exc
        if self.mqtt_password_file is None:
            return broker
        if broker.password is not None:
            raise SystemExit(
                "give the MQTT password in DRIVESIGHT_MQTT_URL or DRIVESIGHT_MQTT_PASSWORD_FILE, not both"
            )
        if broker.username is None:
            raise SystemExit("DRIVESIGHT_MQTT_PASSWORD_FILE is set but DRIVESIGHT_MQTT_URL names no user")
        try:
            password = self.mqtt_password_file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SystemExit(f"cannot read DRIVESIGHT_MQTT_PASSWORD_FILE: {exc}") from exc
        return dataclasses.replace(broker, password=password)
