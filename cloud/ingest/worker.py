"""The ingest worker: subscribes to every vehicle's uplink, stores batches, acknowledges after commit.

paho runs with ``manual_ack``: a QoS 1 message is acknowledged to the broker only after the transaction that
stored it (or its dead letter) committed, and the session is persistent (``clean_session=False``), so a
worker that dies mid-batch gets the unacknowledged messages again when it comes back; the ledger drops
what had been stored already. The hand-over queue between paho's network thread and the writer thread is
bounded: when the database falls behind, paho's thread blocks, TCP pushes back on the broker, and memory
stays flat. Several workers split the load through an MQTT shared subscription.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from cloud.db.migrate import database_dialect
from cloud.db.partitions import ensure_day
from edge_agent.protocol import BrokerAddress, Message, ProtocolError, decode, uplink_filter

from .store import Rejected, StoreResult, store_batch, store_dead_letters

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestMetrics:
    """Counters since start; ``lag_s`` is receive time minus ``sent_at`` of the newest stored message."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    batches: int = 0
    db_retries: int = 0
    lag_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, result: StoreResult, lag_s: float) -> None:
        """Fold in one committed batch."""
        with self._lock:
            self.stored += result.stored
            self.duplicates += result.duplicates
            self.dead_letters += result.dead_letters
            self.batches += 1
            self.lag_s = lag_s

    def prometheus(self, *, queue_depth: int = 0) -> str:
        """The counters in Prometheus text exposition format."""
        lines = [
            "# TYPE drivesight_ingest_queue_depth gauge",
            f"drivesight_ingest_queue_depth {queue_depth}",
        ]
        for name, kind in (
            ("received", "counter"),
            ("stored", "counter"),
            ("duplicates", "counter"),
            ("dead_letters", "counter"),
            ("batches", "counter"),
            ("db_retries", "counter"),
            ("lag_s", "gauge"),
        ):
            metric = f"drivesight_ingest_{name}" + ("_total" if kind == "counter" else "")
            lines += [f"# TYPE {metric} {kind}", f"{metric} {getattr(self, name)}"]
        return "\n".join(lines) + "\n"


class _Partitions:
    """Creates the day partitions a batch's telemetry needs (plain PostgreSQL), once per day per worker.

    A day is remembered once its partition was created in a batch; if that batch then rolled back, the day's
    rows land in the default partition until ``drivesight cloud db maintain`` moves them: stored either way.
    """

    def __init__(self) -> None:
        self.enabled: bool | None = None
        self.known: set[date] = set()

    def __call__(self, conn: psycopg.Connection[tuple[object, ...]], days: set[date]) -> None:
        if self.enabled is None:
            partitioned = conn.execute("SELECT to_regclass('telemetry_default')").fetchone() != (None,)
            self.enabled = partitioned and database_dialect(conn) == "postgres"
        if not self.enabled:
            return
        for day in sorted(days - self.known):
            ensure_day(conn, day)
            self.known.add(day)


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
        persistent: bool = True,
    ) -> None:
        self.database_url = database_url
        self.broker = broker
        self.group = group
        self.batch_size = batch_size
        self.linger_s = linger_s
        self.metrics = IngestMetrics()
        self._queue: queue.Queue[_Incoming] = queue.Queue(maxsize=queue_size)
        self._stop = threading.Event()
        self._subscribed = threading.Event()
        self._conn: psycopg.Connection[tuple[object, ...]] | None = None
        self._partitions = _Partitions()
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
            client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
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
            return
        client.subscribe(uplink_filter(self.group), qos=1)

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, codes: object, props: object
    ) -> None:
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
        while not (self._stop.is_set() and self._queue.empty()):
            batch = self._next_batch()
            if batch:
                self._handle(batch)

    def _handle(self, batch: list[_Incoming]) -> None:
        self.metrics.received += len(batch)
        messages: list[Message] = []
        rejected: list[Rejected] = []
        raw: dict[tuple[str, int], bytes] = {}
        for item in batch:
            try:
                message = decode(item.topic, item.payload)
                messages.append(message)
                raw[(message.vehicle_id, message.seq)] = item.payload
            except ProtocolError as exc:
                rejected.append(Rejected(item.topic, exc.reason.value, str(exc), item.payload))
        delay = 0.5
        while True:
            try:
                result = self._store(messages, rejected, raw)
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

    def _store(
        self, messages: list[Message], rejected: list[Rejected], raw: dict[tuple[str, int], bytes]
    ) -> StoreResult:
        conn = self._connection()
        try:
            return store_batch(conn, messages, rejected, before_telemetry=self._partitions)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            # A message the database refuses must not block the others: store one by one and dead-letter
            # the ones that fail alone.
            log.error("batch rejected by the database (%s); storing messages one by one", exc)
            stored = duplicates = 0
            dead = list(rejected)
            for m in messages:
                try:
                    one = store_batch(conn, [m], before_telemetry=self._partitions)
                    stored, duplicates = stored + one.stored, duplicates + one.duplicates
                except psycopg.OperationalError:
                    raise
                except psycopg.Error as one_exc:
                    payload = raw.get((m.vehicle_id, m.seq), b"")
                    dead.append(Rejected(str(m.topic), "db_rejected", str(one_exc), payload))
            with conn.transaction(), conn.cursor() as cur:
                store_dead_letters(cur, dead)
            return StoreResult(stored, duplicates, len(dead))

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
            raise TimeoutError(f"could not subscribe at {self.broker.url()} within {wait_subscribed_s} s")

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
