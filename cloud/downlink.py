"""Publishing to cars: pushes, configuration (and later models) on ``ds/v1/{vehicle_id}/down/{kind}``.

Each message gets a per-vehicle ``seq`` that only grows — the current time in microseconds, or one more than
the last one this publisher used for the vehicle — so a car can drop QoS 1 redeliveries by ``seq``. Several
publishers on different machines stay ordered as far as their clocks agree.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.protocol import Body, BrokerAddress, DownlinkKind, downlink_topic, encode

if TYPE_CHECKING:
    from cloud.config import CloudSettings


class BrokerRefused(ConnectionError):
    """The broker refused this publisher's connection (wrong password, unknown user, ...)."""


def connect(
    broker: BrokerAddress,
    *,
    client_id: str | None = None,
    ca_file: str | None = None,
    cert_file: str | None = None,
    key_file: str | None = None,
    timeout_s: float = 10.0,
) -> mqtt.Client:
    """A paho client connected with this service's identity, its network loop running.

    Raises :class:`BrokerRefused` with the broker's reason when it refuses the login, and TimeoutError when
    it does not answer, instead of letting the first publish time out.
    """
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        # distinct per process: the broker disconnects an older client that uses the same id
        client_id=client_id or f"drivesight-downlink-{socket.gethostname()}-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv311,
    )
    if broker.username:
        client.username_pw_set(broker.username, broker.password)
    if broker.tls:
        client.tls_set(ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED)
    answered = threading.Event()
    refusal: list[str] = []

    def on_connect(c: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        if getattr(reason, "is_failure", False):
            refusal.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port)
    client.loop_start()
    if not answered.wait(timeout_s) or refusal:
        client.disconnect()
        client.loop_stop()
        if refusal:
            raise BrokerRefused(f"{broker.url()} refused the connection: {refusal[0]}")
        raise TimeoutError(f"{broker.url()} did not answer within {timeout_s} s")
    client.on_connect = None
    return client


def connect_service(settings: CloudSettings, *, timeout_s: float = 10.0) -> mqtt.Client:
    """:func:`connect` with the cloud service's broker identity from ``settings`` (address, TLS files)."""
    return connect(
        settings.broker_address(),
        ca_file=settings.mqtt_ca_file,
        cert_file=settings.mqtt_cert_file,
        key_file=settings.mqtt_key_file,
        timeout_s=timeout_s,
    )


class DownlinkPublisher:
    """Encodes and publishes downlink messages with QoS 1 through a connected paho client."""

    def __init__(self, client: mqtt.Client, *, clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.clock = clock
        self._last: dict[str, int] = {}
        self._lock = threading.Lock()

    def next_seq(self, vehicle_id: str) -> int:
        """A ``seq`` above every earlier one for this vehicle."""
        with self._lock:
            seq = max(int(self.clock() * 1e6), self._last.get(vehicle_id, -1) + 1)
            self._last[vehicle_id] = seq
            return seq

    def send_many(self, messages: Sequence[tuple[str, Body]], *, timeout_s: float = 30.0) -> list[bool]:
        """Publish many messages at once (QoS 1) and wait for the broker's PUBACKs; per message, whether it
        was acknowledged within ``timeout_s`` in all. One round trip per message would cap a campaign at a
        few thousand cars a second; paho keeps the ones beyond its in-flight window queued in order."""
        infos = []
        for vehicle_id, body in messages:
            if not isinstance(body.KIND, DownlinkKind):
                raise ValueError(f"{body.SCHEMA} is not a downlink message")
            payload = encode(vehicle_id, self.next_seq(vehicle_id), body)
            infos.append(self.client.publish(downlink_topic(vehicle_id, body.KIND), payload, qos=1))
        deadline = time.monotonic() + timeout_s
        for info in infos:
            if not info.is_published():
                # not queued (disconnected, queue full): not acknowledged, and said so by is_published()
                with contextlib.suppress(RuntimeError, ValueError):
                    info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        return [info.is_published() for info in infos]

    def send(self, vehicle_id: str, body: Body, *, timeout_s: float = 10.0) -> int:
        """Publish ``body`` to one vehicle and wait for the broker's PUBACK; return its ``seq``."""
        if not isinstance(body.KIND, DownlinkKind):
            raise ValueError(f"{body.SCHEMA} is not a downlink message")
        seq = self.next_seq(vehicle_id)
        info = self.client.publish(
            downlink_topic(vehicle_id, body.KIND), encode(vehicle_id, seq, body), qos=1
        )
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise TimeoutError(
                f"broker did not acknowledge {body.SCHEMA} for {vehicle_id} within {timeout_s} s"
            )
        return seq
