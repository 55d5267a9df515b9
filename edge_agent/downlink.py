"""Messages from the cloud to the car: pushes for the in-car display, configuration, model updates.

A model update (``model.v1`` chunks) goes to the agent's model store, which installs it or keeps the old
model (see edge_agent.model_store). The MQTT client's thread only queues what arrives; :meth:`Downlink.poll`
handles it on the agent's own thread, between blocks, so a config change never races the detectors. A
downlink message carries the cloud's ``seq`` for this vehicle; one not newer than the last handled (a QoS 1
redelivery) is ignored, and the last handled ``seq`` is kept in the outbox's store, so a restart does not
show a push twice.

A push goes to a pluggable :class:`DisplayHook` — the head unit, a test, a simulated driver — which reports
what the driver did through the ``respond`` callback it is given; every answer goes up as feedback.v1.
Expired pushes are answered ``expired``; marketing pushes without profiling consent ``suppressed``.

A push is shown once per push id: the cloud re-publishes a push whose broker acknowledgement it never saw
(a crash between publishing and recording it) under the same push id but a new ``seq``, which the ``seq``
check lets through. The ids shown are kept in the outbox's store (one small row per push shown, a few a
week per car), so a restart does not show it again either; a repeat is counted and answered with nothing.
"""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from .agent import EdgeAgent
from .model_store import UpdateResult
from .protocol import ConfigV1, FeedbackV1, ModelChunkV1, ProtocolError, PushAction, PushV1, decode

log = logging.getLogger(__name__)

SEQ_KEY = "downlink_seq"
#: the outbox meta key prefix recording a push id as shown (value: when, epoch seconds)
SHOWN_KEY = "push_shown:"


class DisplayHook(Protocol):
    """Shows a push to the driver and calls ``respond`` with what the driver does (opened, clicked, ...)."""

    def show(self, push: PushV1, respond: Callable[[PushAction], None]) -> None: ...


class Downlink:
    """Handles one vehicle's downlink messages on the agent's thread."""

    def __init__(
        self,
        agent: EdgeAgent,
        display: DisplayHook,
        *,
        on_config: Callable[[ConfigV1], None] | None = None,
        on_model: Callable[[UpdateResult], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.agent = agent
        self.display = display
        self.on_config = on_config  # e.g. report the new consent in a status message
        self.on_model = on_model  # e.g. report the active model versions
        self.clock = clock
        self.incoming: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=1000)
        self.rejected = 0
        self.duplicates = 0
        self.repeated_pushes = 0

    def receive(self, topic: str, payload: bytes) -> None:
        """Called by the MQTT client's thread: queue for :meth:`poll` (drops, counted, when far behind)."""
        try:
            self.incoming.put_nowait((topic, payload))
        except queue.Full:
            self.rejected += 1
            log.error("downlink queue full; dropping a message on %s", topic)

    def poll(self) -> int:
        """Handle everything queued; return how many messages were handled."""
        handled = 0
        while True:
            try:
                topic, payload = self.incoming.get_nowait()
            except queue.Empty:
                return handled
            self.handle(topic, payload)
            handled += 1

    def handle(self, topic: str, payload: bytes) -> None:
        """Validate and act on one downlink message."""
        try:
            message = decode(topic, payload)
        except ProtocolError as exc:
            self.rejected += 1
            log.warning("rejected downlink on %s: %s", topic, exc)
            return
        if message.vehicle_id != self.agent.outbox.vehicle_id:
            self.rejected += 1
            log.warning("downlink for %s arrived at %s", message.vehicle_id, self.agent.outbox.vehicle_id)
            return
        last = self.agent.outbox.get_meta(SEQ_KEY)
        if last is not None and message.seq <= last:
            self.duplicates += 1
            return
        self.agent.outbox.set_meta(SEQ_KEY, message.seq)
        body = message.body
        if isinstance(body, PushV1):
            self._push(body)
        elif isinstance(body, ConfigV1):
            self.agent.apply_config(body)
            if self.on_config is not None:
                self.on_config(body)
        elif isinstance(body, ModelChunkV1):
            if self.agent.models is None:
                self.rejected += 1
                log.warning("a model update arrived, but this agent runs no models")
                return
            result = self.agent.models.receive(body)
            if result is not None and self.on_model is not None:
                self.on_model(result)
        else:
            self.rejected += 1
            log.warning("unexpected %s on the downlink", message.schema)

    def _respond(self, push: PushV1, action: PushAction) -> None:
        self.agent.send(
            FeedbackV1(push_id=push.push_id, campaign_id=push.campaign_id, action=action, at=self.clock())
        )

    def _push(self, push: PushV1) -> None:
        key = SHOWN_KEY + push.push_id
        if self.agent.outbox.get_meta(key) is not None:
            self.repeated_pushes += 1
            log.info("push %s was handled before (re-published by the cloud); not shown again", push.push_id)
            return
        self.agent.outbox.set_meta(key, int(self.clock().timestamp()))
        if push.expires_at is not None and push.expires_at <= self.clock():
            self._respond(push, PushAction.EXPIRED)
        elif self.agent.gate is not None and not self.agent.gate.allows_push(push):
            self._respond(push, PushAction.SUPPRESSED)
        else:
            self._respond(push, PushAction.DELIVERED)
            self.display.show(push, lambda action: self._respond(push, action))
