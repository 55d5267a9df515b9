"""MQTT uplink: drains the outbox to the broker with QoS 1; a message is forgotten on the cloud's receipt.

A pump thread keeps up to ``inflight`` messages in flight, in ``seq`` order. When the connection drops, the
in-flight window is forgotten and, once paho has reconnected (with backoff), everything still in the
outbox is published again from the oldest; the cloud drops the duplicates by ``(vehicle_id, seq)``.

A PUBACK means the broker holds the message in memory, not that it reached the cloud: Mosquitto saves its
state every ``autosave_interval`` seconds, so a broker killed in between forgets messages it acknowledged; a
broker that restarts without its state acknowledges messages before the ingest has subscribed again, and
routes them nowhere; a queue for an offline ingest that overflows drops them. So a PUBACK only marks the
message *delivered*, and the message stays until the ingest's receipt (``receipt.v1`` on
``ds/v1/<vehicle>/down/receipt``, sent after the transaction that stored it). A delivered message without a
receipt after ``resend_window_s`` is published again, and again after twice that, and so on up to an hour
(:data:`edge_agent.outbox.MAX_RECEIPT_WAIT_S`); every reconnect republishes every delivered message at once,
whatever CONNACK's ``session_present`` says (that flag speaks of this client's session, not of the messages
a broker restored from an older autosave lacks). ``resend_window_s = 0`` trusts the PUBACK instead (for a
cloud that sends no receipts): the message is deleted on it.

Receipts travel with QoS 0: a lost one costs one more copy of its messages, which the cloud confirms again.

paho calls ``on_publish`` and ``on_message`` while holding its own lock, so the callbacks only record the
acknowledged message id or the receipt and wake the pump; the outbox is touched from the pump thread alone.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .outbox import MessageTooLarge, Outbox, OutboxFull
from .protocol import (
    BrokerAddress,
    DownlinkKind,
    ProtocolError,
    ReceiptV1,
    StatusV1,
    decode,
    downlink_filter,
    downlink_topic,
    encode,
    uplink_topic,
)
from .protocol.conventions import package_version

log = logging.getLogger(__name__)

#: How long the ingest may take to store a message and send its receipt before the car publishes it again
#: (the ingest's lag is well under a second when it keeps up; a minute leaves room for a busy database).
DEFAULT_RESEND_WINDOW_S = 60.0
#: How often the pump looks for delivered messages whose receipt is overdue (a transaction each time).
RECEIPT_CHECK_PERIOD_S = 0.5


class MqttUplink:
    """Publishes a vehicle's outbox to the broker."""

    def __init__(
        self,
        outbox: Outbox,
        broker: BrokerAddress,
        *,
        client_id: str | None = None,
        inflight: int = 64,
        keepalive_s: int = 30,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        persistent_session: bool = False,
        resend_window_s: float = DEFAULT_RESEND_WINDOW_S,
        on_downlink: Callable[[str, bytes], None] | None = None,
        status_fields: Callable[[], dict[str, Any]] = dict,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.outbox = outbox
        self.vehicle_id = outbox.vehicle_id
        self.broker = broker
        self.inflight_limit = inflight
        self.resend_window_s = resend_window_s
        self.boot_id = uuid.uuid4().hex[:16]
        self._clock = clock
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acked_mids: set[int] = set()
        self._receipts: list[list[tuple[int, int]]] = []  # seq ranges confirmed by the cloud, not yet applied
        self._ack_lock = threading.Lock()
        self._inflight: dict[int, int] = {}  # mid -> seq, pump thread only
        # the last seq published in this connection (pump thread only): messages go out in seq order, so
        # the next ones follow it; reading from it skips the delivered messages kept at the outbox's front
        self._cursor = -1
        self._session = 0
        self._next_check = -float("inf")  # on self._clock, pump thread only
        self.published = 0
        self.acknowledged = 0
        #: messages the cloud's receipts confirmed (deleted from the outbox)
        self.confirmed = 0
        #: receipts that could not be read (logged and ignored: the messages are sent again)
        self.bad_receipts = 0
        #: acknowledged messages published again: after reconnects, or for want of a receipt
        self.resent = 0
        #: CONNACK's flag on the latest connection (logged and kept for diagnosis; resending ignores it)
        self.session_present: bool | None = None
        self._on_downlink = on_downlink
        self._receipt_topic = downlink_topic(self.vehicle_id, DownlinkKind.RECEIPT)
        self._status_fields = status_fields  # consent, model versions, ... for each status message
        # A persistent session lets the broker keep downlink messages (pushes, config) while the car is away.
        # The client id is the vehicle id: the broker ties it to the car's certificate (one identity each).
        self.client_id = client_id or self.vehicle_id
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=not persistent_session,
            protocol=mqtt.MQTTv311,
        )
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            # per-vehicle credentials: a client certificate (mutual TLS), or user name and password in the URL
            client.tls_set(
                ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED
            )
        client.max_inflight_messages_set(inflight)
        client.reconnect_delay_set(min_delay=1, max_delay=60)
        will = StatusV1(
            state="offline", agent_version=package_version(), boot_id=self.boot_id, last_will=True
        )
        client.will_set(
            uplink_topic(self.vehicle_id, "status"),
            encode(self.vehicle_id, outbox.reserve_seq(), will, max_bytes=outbox.max_message_bytes),
            qos=1,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        self._subscribed = threading.Event()
        client.on_subscribe = lambda *_args: self._subscribed.set()
        self._client = client
        self._keepalive = keepalive_s
        self._pump_thread = threading.Thread(
            target=self._pump_loop, name=f"uplink-{self.vehicle_id}", daemon=True
        )

    # paho callbacks (network thread) ------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("%s: broker refused connection: %s", self.vehicle_id, reason)
            return
        self.session_present = bool(getattr(flags, "session_present", False))
        with self._ack_lock:
            self._acked_mids.clear()
            self._session += 1
        # receipts come on a downlink topic: the downlink filter covers them, else they get their own
        if self._on_downlink is not None:
            client.subscribe(downlink_filter(self.vehicle_id), qos=1)
        else:
            client.subscribe(self._receipt_topic, qos=0)
        self._connected.set()
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == self._receipt_topic:
            self._on_receipt(bytes(msg.payload))
        elif self._on_downlink is not None:
            self._on_downlink(msg.topic, bytes(msg.payload))

    def _on_receipt(self, payload: bytes) -> None:
        try:
            body = decode(self._receipt_topic, payload).body
        except ProtocolError as exc:
            # only the ingest may publish here (broker ACL); a receipt it got wrong costs a resend, no more
            self.bad_receipts += 1
            log.warning("%s: unreadable receipt ignored: %s", self.vehicle_id, exc)
            return
        assert isinstance(body, ReceiptV1)
        with self._ack_lock:
            self._receipts.append(body.seqs)
        self._wake.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self._connected.clear()
        self._wake.set()
        if not self._stop.is_set():
            log.info("%s: disconnected (%s); will reconnect", self.vehicle_id, reason)

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object
    ) -> None:
        with self._ack_lock:
            self._acked_mids.add(mid)
        self._wake.set()

    # pump thread --------------------------------------------------------------------------------
    def _pump_loop(self) -> None:
        session = -1
        while not self._stop.is_set():
            self._wake.wait(timeout=0.5)
            self._wake.clear()
            if not self._connected.is_set():
                self._inflight.clear()
                continue
            with self._ack_lock:
                new_session = self._session != session
                session = self._session
                mids, self._acked_mids = self._acked_mids, set()
                receipts, self._receipts = self._receipts, []
            if new_session:
                self._inflight.clear()
                self._cursor = -1
                self._resend_delivered()
            # every mid published so far was recorded by the previous _fill_window, so a mid not in the
            # window belongs to an earlier connection and is stale
            acked = [self._inflight.pop(m) for m in mids if m in self._inflight]
            if acked:
                retain = self._clock() if self.resend_window_s > 0 else None
                self.outbox.ack(acked, retain_at=retain)
                self.acknowledged += len(acked)
            if receipts:
                self.confirmed += self.outbox.confirm(r for ranges in receipts for r in ranges)
            if self.resend_window_s > 0 and (now := self._clock()) >= self._next_check:
                self._next_check = now + RECEIPT_CHECK_PERIOD_S
                self._resend_unconfirmed(now)
            self._fill_window()

    def _resend_delivered(self) -> None:
        """Queue again everything the broker acknowledged without a receipt yet: it may have lost it."""
        count = self.outbox.resend_delivered()
        self.resent += count
        if count:
            log.info(
                "%s: reconnected (session present: %s); resending %d acknowledged messages",
                self.vehicle_id, self.session_present, count,
            )  # fmt: skip

    def _resend_unconfirmed(self, now: float) -> None:
        """Queue again what the broker acknowledged and the cloud did not confirm in time."""
        due = self.outbox.resend_unconfirmed(now, self.resend_window_s)
        if due:
            self.resent += len(due)
            # they lie behind the cursor: read from the first of them again (_fill_window skips the in-flight)
            self._cursor = min(self._cursor, due[0] - 1)
            log.info(
                "%s: no receipt for %d acknowledged messages; sending them again", self.vehicle_id, len(due)
            )

    def _fill_window(self) -> None:
        room = self.inflight_limit - len(self._inflight)
        if room <= 0:
            return
        in_flight = set(self._inflight.values())
        for item in self.outbox.pending(after_seq=self._cursor, limit=room + len(in_flight)):
            if item.seq in in_flight:  # published in this connection and not acknowledged yet
                self._cursor = item.seq
                continue
            if len(self._inflight) >= self.inflight_limit:
                break
            if len(item.payload) > self.outbox.max_message_bytes:
                self.outbox.refuse(item.seq)  # the broker would drop it; never sent, counted as dropped
                continue
            info = self._client.publish(item.topic, item.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                break  # connection lost meanwhile; the next session republishes from the outbox
            self._inflight[info.mid] = item.seq
            self._cursor = item.seq
            self.published += 1
        with self._ack_lock:
            if self._acked_mids:  # PUBACKs that came before their mid was recorded: next round
                self._wake.set()

    # public API ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (asynchronously, with backoff) and start publishing."""
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=self._keepalive)
        self._client.loop_start()
        self._pump_thread.start()
        self.send_status("online")

    def send_status(self, state: Literal["online", "offline"]) -> None:
        """Queue a status message with the current consent and what the outbox has had to drop."""
        dropped = {kind: n for kind, (n, _bytes) in self.outbox.dropped().items()}
        status = StatusV1(
            state=state,
            agent_version=package_version(),
            boot_id=self.boot_id,
            outbox_depth=self.outbox.depth(),
            dropped=dropped,
            **self._status_fields(),
        )
        # a status is worth less than the trips and events it would push out: losing one is counted, not fatal
        try:
            self.outbox.enqueue(status)
        except OutboxFull as exc:
            log.warning("%s: status not sent: %s", self.vehicle_id, exc)
        except MessageTooLarge as exc:
            log.error("%s: status not sent: %s", self.vehicle_id, exc)
            self.outbox.record_drop(exc.kind, exc.size)

    def wait_subscribed(self, timeout: float) -> bool:
        """Block until the downlink subscription is in place; False on timeout."""
        return self._subscribed.wait(timeout)

    def notify(self) -> None:
        """Tell the pump that new messages are in the outbox."""
        self._wake.set()

    @property
    def connections(self) -> int:
        """How many times the broker accepted the connection so far."""
        with self._ack_lock:
            return self._session

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected; False on timeout."""
        return self._connected.wait(timeout)

    def flush(self, timeout: float, *, confirmed: bool = False) -> bool:
        """Block until nothing waits to be published (everything acknowledged by the broker) or, with
        ``confirmed``, until the cloud confirmed everything (the outbox is empty); False on timeout."""

        def done() -> bool:
            return self.outbox.depth() == 0 and not (confirmed and self.outbox.delivered())

        deadline = self._clock() + timeout
        while self._clock() < deadline:
            if done():
                return True
            self._wake.set()
            time.sleep(0.02)
        return done()

    def stop(self, *, graceful: bool = True) -> None:
        """Stop publishing; with ``graceful`` the offline status is sent first (no last will then)."""
        if graceful and self._connected.is_set():
            self.send_status("offline")
            self.flush(timeout=5.0)
        self._stop.set()
        self._wake.set()
        if self._pump_thread.is_alive():
            self._pump_thread.join(timeout=5)
        self._client.disconnect()
        self._client.loop_stop()
