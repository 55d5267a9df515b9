"""Embedded services for a machine with nothing configured (DESIGN.md section 7).

- PostgreSQL: the ``pgserver`` package (a PostgreSQL build shipped as a wheel), in a data directory of ours.
- MQTT broker: the ``mosquitto`` binary when it is on PATH, started on a free loopback port with a config
  that does not drop QoS 1 messages for a slow subscriber; otherwise an in-process ``amqtt`` broker, which
  has no shared subscriptions (the ingest then subscribes without a group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence false
# Never drop QoS 1 messages queued for a slow or briefly absent subscriber (the default is 1000).
max_queued_messages 0
max_inflight_messages 1000
message_size_limit 262144
"""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


class EmbeddedPostgres:
    """A private PostgreSQL server in ``data_dir`` (a temporary one by default)."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="drivesight-pg-")
        self.data_dir = Path(data_dir or self._tmp.name)  # type: ignore[union-attr]
        self._server: Any = None

    def start(self) -> str:
        """Start the server; return its database URL."""
        import pgserver

        self._server = pgserver.get_server(self.data_dir, cleanup_mode="stop")
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server and remove a temporary data directory."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None
        if self._tmp is not None:
            self._tmp.cleanup()


@dataclass
class EmbeddedBroker:
    """A local MQTT broker on a free loopback port."""

    port: int = 0
    kind: str = ""
    _process: subprocess.Popen[bytes] | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """The broker's URL."""
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def supports_shared_subscriptions(self) -> bool:
        """Whether ``$share/...`` filters work on this broker."""
        return self.kind == "mosquitto"

    def start(self) -> str:
        """Start mosquitto if it is installed, else amqtt in this process; return the URL."""
        self.port = free_port()
        binary = shutil.which("mosquitto") or next(
            (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).exists()), None
        )
        if binary:
            self._start_mosquitto(binary)
        else:
            self._start_amqtt()
        wait_for_port("127.0.0.1", self.port, timeout=15)
        return self.url

    def _start_mosquitto(self, binary: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="drivesight-mqtt-")
        conf = Path(self._tmp.name) / "mosquitto.conf"
        conf.write_text(MOSQUITTO_CONF.format(port=self.port))
        self._process = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.kind = "mosquitto"

    def _start_amqtt(self) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "sys_interval": 0,
            "auth": {"allow-anonymous": True},
            "topic-check": {"enabled": False},
        }
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            broker = Broker(config, loop=loop)
            loop.run_until_complete(broker.start())
            started.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="amqtt", daemon=True)
        self._thread.start()
        started.wait(15)
        self.kind = "amqtt"

    def stop(self) -> None:
        """Stop the broker."""
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop = None
        if self._tmp is not None:
            self._tmp.cleanup()
