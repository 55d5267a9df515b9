"""The ingest worker: subscribes to every vehicle's uplink, stores batches, acknowledges after commit.

paho runs with ``manual_ack``: a QoS 1 message is acknowledged to the broker only after the transaction that
stored it (or its dead letter) committed, and the session is persistent (``clean_session=False``), so a
worker that dies mid-batch gets the unacknowledged messages again when it comes back; the ledger drops
what had been stored already. After the commit each car also gets a receipt (``receipt.v1``, QoS 0, on
``ds/v1/<vehicle>/down/receipt``) naming the ``seq`` of its messages the batch stored, found stored already,
dead-lettered or dropped as an erased owner's: only then does the car forget them (edge_agent/uplink.py). The
broker's PUBACK to the car is not enough: a broker that restarts without its state, or whose queue for an
offline worker overflows, acknowledges messages that never reach a worker. A message whose envelope cannot
be read names no ``seq`` and gets no receipt; the car sends it again now and then until its outbox evicts it.

The hand-over queue between paho's network thread and the writer thread is bounded: when the database falls
behind, paho's thread blocks, TCP pushes back on the broker, and memory stays flat. Several workers split
the load through an MQTT shared subscription.

No message can stall it: whatever fails for one message sends that message alone to the dead letters
(``writer.py``); only a lost database connection is retried, with the batch unacknowledged. A writer
that dies, or makes no progress for ``stall_timeout_s`` while messages wait, makes :meth:`IngestWorker.health`
say so; the ``cloud ingest`` command then exits non-zero so that systemd or compose restart it.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.protocol import (
    BrokerAddress,
    DownlinkKind,
    ReceiptV1,
    downlink_topic,
    encode,
    seq_ranges,
    uplink_filter,
)
from edge_agent.protocol.bounds import DEFAULT_MAX_CLOCK_SKEW
from edge_agent.protocol.wire import MAX_RECEIPT_RANGES

from .store import StoreResult
from .writer import BatchWriter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestMetrics:
    """Counters since start; ``lag_s`` is receive time minus ``sent_at`` of the newest stored message."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    #: messages of cars whose owner was erased: acknowledged, not stored
    erased: int = 0
    batches: int = 0
    db_retries: int = 0
    #: batches the database refused whole, split to isolate the messages it refused
    isolations: int = 0
    #: receipts published to cars (one per car and batch, more when a car's seqs make many ranges)
    receipts: int = 0
    lag_s: float = 0.0
    dead_letters_by_reason: dict[str, int] = field(default_factory=dict)
    #: implausible telemetry samples dropped, per VSS signal
    dropped_samples: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, result: StoreResult, lag_s: float) -> None:
        """Fold in one committed batch."""
        with self._lock:
            self.stored += result.stored
            self.duplicates += result.duplicates
            self.dead_letters += result.dead_letters
            self.erased += result.erased
            for reason, n in result.dead_reasons.items():
                self.dead_letters_by_reason[reason] = self.dead_letters_by_reason.get(reason, 0) + n
            for signal, n in result.dropped_samples.items():
                self.dropped_samples[signal] = self.dropped_samples.get(signal, 0) + n
            self.isolations += result.isolations
            self.batches += 1
            self.lag_s = lag_s

    def by_label(self) -> tuple[dict[str, int], dict[str, int]]:
        """Copies of the dead letters by reason and the dropped samples by signal, safe to read while the
        writer adds to them."""
        with self._lock:
            return dict(self.dead_letters_by_reason), dict(self.dropped_samples)


@dataclass(frozen=True, slots=True)
class _Incoming:
    topic: str
    payload: bytes
    mid: int


class IngestWorker:
    """One ingest process's MQTT subscriber and database writer."""

    def __init__(
        self,
        database_url: str,
        broker: BrokerAddress,
        *,
        group: str | None = "ingest",
        client_id: str = "drivesight-ingest-1",
        batch_size: int = 1000,
        linger_s: float = 0.02,
        queue_size: int = 20_000,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        persistent: bool = True,
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
        stall_timeout_s: float = 300.0,
        ledger_key: bytes | None = None,
    ) -> None:
        self.database_url = database_url
        self.broker = broker
        self.group = group
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.max_clock_skew = max_clock_skew
        self.stall_timeout_s = stall_timeout_s
        self.metrics = IngestMetrics()
        self._last_progress = time.monotonic()
        self._fatal: str | None = None
        self._refused: str | None = None  # the broker's last CONNACK refusal, for start()'s error
        self._queue: queue.Queue[_Incoming] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._batch_writer = BatchWriter(max_clock_skew=max_clock_skew, ledger_key=ledger_key)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if broker.username:
            client.username_pw_set(broker.username, broker.password)
        if broker.tls:
            # with cert_file/key_file the broker knows the worker by its certificate (mutual TLS)
            client.tls_set(
                ca_certs=ca_file, certfile=cert_file, keyfile=key_file, cert_reqs=ssl.CERT_REQUIRED
            )
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        self._client = client
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer", daemon=True)

    # paho callbacks ------------------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("broker refused the ingest connection: %s", reason)
            self._refused = str(reason)
            return
        client.subscribe(uplink_filter(self.group), qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, codes: list[ReasonCode], props: object
    ) -> None:
        refused = [code for code in codes if code.is_failure]
        if refused:
            # e.g. the broker's ACL lets only the ingest identity join $share/ingest: without the
            # subscription this worker would sit idle and look healthy, so it says so and exits
            self._fatal = f"broker refused the subscription to {uplink_filter(self.group)}: {refused[0]}"
            log.critical("%s", self._fatal)
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        # Blocks when the queue is full: back-pressure through TCP instead of unbounded memory.
        self._queue.put(_Incoming(msg.topic, bytes(msg.payload), msg.mid))

    # writer thread -------------------------------------------------------------------------------
    def _connection(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url)
        return self._conn

    def _next_batch(self) -> list[_Incoming]:
        try:
            batch = [self._queue.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.linger_s
        while len(batch) < self.batch_size:
            remaining = deadline - time.monotonic()
            try:
                batch.append(
                    self._queue.get(timeout=max(remaining, 0)) if remaining > 0 else self._queue.get_nowait()
                )
            except queue.Empty:
                break
        return batch

    def _write_loop(self) -> None:
        try:
            while not (self._stop.is_set() and self._queue.empty()):
                batch = self._next_batch()
                if batch:
                    self._handle(batch)
                else:
                    self._last_progress = time.monotonic()  # idle is not stalled
        except BaseException as exc:  # a bug past the per-message isolation: say so, the process exits
            self._fatal = f"writer died: {type(exc).__name__}: {exc}"
            log.critical("%s", self._fatal, exc_info=True)

    def _handle(self, batch: list[_Incoming]) -> None:
        self.metrics.received += len(batch)
        items = [(i.topic, i.payload) for i in batch]
        delay = 0.5
        while True:
            try:
                result, messages = self._batch_writer.write(self._connection(), items)
                break
            except psycopg.OperationalError as exc:
                # the database is away: keep the batch unacknowledged and retry; the broker holds the rest
                self.metrics.db_retries += 1
                log.warning("database unavailable (%s); retrying in %.1f s", exc, delay)
                if self._conn is not None:
                    self._conn.close()
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        lag = (datetime.now(UTC) - max(m.sent_at for m in messages)).total_seconds() if messages else 0.0
        self.metrics.add(result, lag)
        for item in batch:
            self._client.ack(item.mid, 1)
        self._send_receipts(result.handled)
        self._last_progress = time.monotonic()

    def _send_receipts(self, handled: dict[str, list[int]]) -> None:
        """Tell each car which of its messages the committed batch took care of."""
        for vehicle, seqs in handled.items():
            ranges = seq_ranges(seqs)
            for start in range(0, len(ranges), MAX_RECEIPT_RANGES):
                body = ReceiptV1(seqs=ranges[start : start + MAX_RECEIPT_RANGES])
                # the envelope's seq only has to grow: a car takes receipts in any order, twice or not at all
                payload = encode(vehicle, time.time_ns() // 1000, body)
                self._client.publish(downlink_topic(vehicle, DownlinkKind.RECEIPT), payload, qos=0)
                self.metrics.receipts += 1

    def health(self) -> tuple[bool, str]:
        """Whether the worker is making progress, and if not, why (the ingest command exits on False)."""
        if self._fatal is not None:
            return False, self._fatal
        if self._writer.ident is not None and not self._writer.is_alive() and not self._stop.is_set():
            return False, "writer thread is not running"
        idle_s = time.monotonic() - self._last_progress
        waiting = self._queue.qsize()
        if waiting and idle_s > self.stall_timeout_s:
            return False, f"no batch stored for {idle_s:.0f} s while {waiting} messages wait"
        return True, "ok"

    def seconds_since_progress(self) -> float:
        """Seconds since the writer last committed a batch or found nothing to do."""
        return time.monotonic() - self._last_progress

    def queue_depth(self) -> int:
        """Messages received from the broker and not yet stored."""
        return self._queue.qsize()

    # lifecycle -----------------------------------------------------------------------------------
    def start(self, *, wait_subscribed_s: float = 10.0) -> None:
        """Connect to the database and the broker; return once subscribed."""
        self._connection()
        self._writer.start()
        self._client.connect_async(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(wait_subscribed_s):
            why = f" (the broker refused the connection: {self._refused})" if self._refused else ""
            raise TimeoutError(
                f"could not subscribe at {self.broker.url()} within {wait_subscribed_s} s{why}"
            )
        if self._fatal is not None:
            raise PermissionError(self._fatal)

    def stop(self) -> None:
        """Stop receiving, store what is queued, acknowledge it, disconnect."""
        self._client.loop_stop()  # no new messages; queued ones are still written and acked below
        self._stop.set()
        self._writer.join(timeout=60)
        self._client.loop_start()
        self._client.disconnect()
        self._client.loop_stop()
        if self._conn is not None:
            self._conn.close()
