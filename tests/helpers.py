"""Small helpers shared by the integration tests."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
from psycopg import sql

from cloud.embedded import free_port, wait_for_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
DEPLOY_MOSQUITTO_CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "mosquitto.conf"


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def count(conn: psycopg.Connection[tuple[object, ...]], sql: str, *params: object) -> int:
    """The single integer a counting query returns."""
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return int(row[0])  # type: ignore[call-overload]


def deploy_queue_limits() -> str:
    """The queue, in-flight, packet-size and autosave settings of deploy/mosquitto/mosquitto.conf, as config
    lines."""
    text = DEPLOY_MOSQUITTO_CONF.read_text()
    keys = (
        "max_queued_messages",
        "max_queued_bytes",
        "max_inflight_messages",
        "max_packet_size",
        "autosave_interval",
    )
    return "".join(f"{m.group(0)}\n" for k in keys if (m := re.search(rf"^{k}\s+\S+", text, re.MULTILINE)))


class PrivateBroker:
    """A mosquitto process of a test's own, restartable on the same port and persistence directory."""

    def __init__(self, directory: Path, extra: str = "", *, deploy_limits: bool = False) -> None:
        self.dir = directory
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        # as root, mosquitto drops to its own user, which cannot read a test's private directory
        user = "user root\n" if os.geteuid() == 0 else ""
        limits = deploy_queue_limits() if deploy_limits else "max_queued_messages 0\n"
        self.conf.write_text(
            f"{user}listener {self.port} 127.0.0.1\npersistence true\npersistence_location {directory}/\n"
            f"{limits}{extra or 'allow_anonymous true'}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """mqtt://127.0.0.1:<port>"""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start (or restart) the broker and wait for its port."""
        self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port, 10)

    def stop(self) -> None:
        """Stop the broker (its persistence file keeps sessions and queued messages)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str = "drivesight_tmp") -> Iterator[str]:
    """An empty database of its own on the server ``admin_url`` points to; dropped (forcibly) afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def timescaledb_missing(admin_database_url: str) -> str | None:
    """Why TimescaleDB cannot be used on this server, or None when it can."""
    with psycopg.connect(admin_database_url, autocommit=True) as conn:
        if (
            conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
            is None
        ):
            return "TimescaleDB is not installed on this PostgreSQL server (not in pg_available_extensions)"
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        if preload is None or "timescaledb" not in str(preload[0]):
            return "TimescaleDB is installed but not in shared_preload_libraries, so it cannot be created"
    return None
