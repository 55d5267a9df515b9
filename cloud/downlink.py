"""Publishing to cars: pushes, configuration (and later models) on ``ds/v1/{vehicle_id}/down/{kind}``.

Each message gets a per-vehicle ``seq`` that only grows — the current time in microseconds, or one more than
the last one this publisher used for the vehicle — so a car can drop QoS 1 redeliveries by ``seq``. Several
publishers on different machines stay ordered as far as their clocks agree.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt

from edge_agent.protocol import Body, DownlinkKind, downlink_topic, encode


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
