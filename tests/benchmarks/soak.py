"""Fault soak: a simulated fleet of real edge stacks drives through a broker, an ingest and a database
that are killed under it; what the cars produced is counted against what the database holds.

Everything runs on loopback, in processes and directories of the soak's own, removed at the end:

- PostgreSQL: a private cluster (``initdb``/``pg_ctl`` of PostgreSQL 15) on a spare port in a temporary
  directory, migrated with the project's migrations; never the shared server on 5432;
- Mosquitto: a private broker on a spare port (``tests.helpers.PrivateBroker``) with the persistence and queue
  directives of deploy/mosquitto/mosquitto.conf, read at start (``BROKER_KEYS``: ``autosave_*``,
  ``max_queued_*``, ``max_inflight_*``, size limits, ...); its listeners, TLS, authentication and plugins are
  replaced by a password-less loopback listener, and it logs connections and subscriptions to a file;
- the ingest: ``--workers`` real ``drivesight-cloud ingest`` processes on one shared subscription, each with
  its own persistent session; one that exits by itself is restarted (as systemd would) and counted;
- the fleet: ``--vehicles`` cars as threads of this process, each running the in-car loop
  (``edge_agent.runner.run_vehicle``: EdgeAgent, SQLite outbox, MqttUplink) on simulated trips, paced at
  ``--pace`` blocks (one minute of 10 Hz driving) per second. Every message a car's outbox stores is recorded
  when it is stored (the outbox class the runner uses is wrapped, nothing else is changed).

Faults, spread over the ``--minutes`` of driving (``SCHEDULE``), each service back ``--down-s`` after its
kill: the broker is killed with SIGKILL four times (once alone, once 1 s into the database's outage, once
1 s after an ingest worker was killed: when it holds the most it acknowledged and did not deliver, and once
with its state file deleted: back without any session, it routes what it acknowledges nowhere); an ingest
worker twice (the two in turn); PostgreSQL is stopped in immediate mode once (a crash: recovery on start).
One car loses its link (a relay in front of the broker drops its connection and refuses new ones) for a
simulated day: it drives 24 h of trips at full speed with its outbox's clock moved on by the day, stays
parked until the link is back, reconnects (paho's backoff) and drains.

After the driving the cars flush (until the ingest's receipts came for everything they sent, publishing
again what the broker acknowledged without a receipt following within ``RESEND_WINDOW_S``) and stop, and the
soak waits (bounded by ``--drain-timeout``) until the database holds every message the cars produced or
nothing has arrived for ``--settle-s``. It prints one JSON line with, per stream (``telemetry`` samples,
``events``, ``trip``, ``dtc``, ``status`` messages), what was produced and what is stored, and in all:

- ``lost``: units (samples, events, ...) the database lacks whose message no car holds any more;
  ``undelivered``: units the database lacks whose message a car still holds (never acknowledged, or
  acknowledged and without a receipt when the car stopped: sent again at its next start);
- ``duplicated``: a telemetry sample, event, DTC or trip stored more than once (under one seq or another);
  ``unexpected``: stored and never produced;
- ``*_by_cause`` and ``*_examples`` for every missing message: its stream, when it was stored and
  acknowledged, and why: acknowledged by a restarted broker before any ingest worker had subscribed again
  (from the broker's log), or the first fault after its last acknowledgement;
- the faults and broker restarts with their times, the offline car's day, PUBACKs (``messages_acked_again``:
  published again after a reconnect or for want of a receipt), dead letters, durations and the settings.

Progress goes to stderr. The exit status is 1 when anything was lost, undelivered, duplicated or unexpected.

    python tests/benchmarks/soak.py --minutes 5 --vehicles 10       # the full soak
    python tests/benchmarks/soak.py --minutes 0.7 --vehicles 4      # CI smoke size (about a minute)

Target (issue 12): ``lost`` 0 and ``duplicated`` 0 under every fault.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.db.migrate import migrate
from cloud.embedded import free_port
from edge_agent import runner
from edge_agent.config import EdgeSettings
from edge_agent.outbox import Outbox
from edge_agent.protocol import Body, DtcV1, EventsV1, TelemetryV1, TripSummaryV1
from edge_agent.signals import SignalBlock, iter_blocks
from simulators.fleet import BLOCK_SAMPLES, build_fleet
from simulators.vehicle import VehicleSpec, initial_state, simulate_day
from tests.helpers import DEPLOY_MOSQUITTO_CONF, PrivateBroker, deploy_queue_limits

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DAY_S = 86_400.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: deploy/'s directives that decide what the broker keeps across a crash and how much it queues; the rest
#: (listeners, TLS, passwords, ACLs, paths) is replaced by a password-less loopback listener
BROKER_KEYS = (
    "autosave_interval", "autosave_on_changes", "persistent_client_expiration", "max_queued_messages",
    "max_queued_bytes", "max_inflight_messages", "max_inflight_bytes", "message_size_limit",
    "max_packet_size", "queue_qos0_messages",
)  # fmt: skip
#: when each fault happens: a share of the driving time plus seconds. The first broker and ingest kills come
#: alone; the other two broker kills come 1 s into another outage, when the broker holds the most that it
#: has acknowledged and not delivered: during the database's (the ingest holds its batches unacknowledged)
#: and during an ingest worker's (the broker queues that worker's share for its persistent session). The last
#: kill also deletes the broker's state file (a replaced broker, a lost disk): it comes back knowing no
#: session, acknowledges what the cars send before any ingest worker has subscribed again and routes it
#: nowhere, so only the ingest's receipts can save those messages.
SCHEDULE = (
    (0.10, 0.0, "link_cut"),
    (0.20, 0.0, "broker_kill"),
    (0.33, 0.0, "ingest_kill"),
    (0.45, 0.0, "db_restart"),
    (0.45, 1.0, "broker_kill"),
    (0.55, 0.0, "link_restore"),
    (0.72, 0.0, "ingest_kill"),
    (0.72, 1.0, "broker_kill"),
    (0.88, 0.0, "broker_wipe"),
)


def log(message: str) -> None:
    """Progress on stderr."""
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def epoch_us(t: datetime) -> int:
    """Microseconds since the epoch, exactly (as PostgreSQL's ``extract(epoch ...) * 1e6``)."""
    return (t - EPOCH) // timedelta(microseconds=1)


# --- what the cars produced ---------------------------------------------------------------------------------
@dataclass(slots=True)
class Produced:
    """One message a car's outbox stored, with the units each stream stores for it."""

    vehicle: str
    seq: int
    kind: str
    stored_at: float  # seconds since the soak started
    units: list[tuple[object, ...]]
    offline: bool = False
    acked_at: float | None = None  # the first PUBACK
    last_acked_at: float | None = None  # the latest (a resent message is acknowledged again)
    acks: int = 0


def units_of(vehicle: str, seq: int, body: Body) -> list[tuple[object, ...]]:
    """The stream's keys for one message: a telemetry sample per time, an event, a trip, a DTC, a status."""
    if isinstance(body, TelemetryV1):
        t0 = epoch_us(body.t0)
        return [(vehicle, t0 + ms * 1000) for ms in body.t_ms]
    if isinstance(body, EventsV1):
        return [(vehicle, e.kind.value, epoch_us(e.start), epoch_us(e.end)) for e in body.events]
    if isinstance(body, TripSummaryV1):
        return [(vehicle, body.trip_id)]
    if isinstance(body, DtcV1):
        return [(vehicle, r.code, epoch_us(r.first_seen)) for r in body.codes]
    return [(vehicle, seq)]  # status, feedback: the message itself


class Recorder:
    """Every message the cars' outboxes stored and acknowledged, and the clock each outbox runs on."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.messages: dict[tuple[str, int], Produced] = {}
        self.wills: set[tuple[str, int]] = set()
        self.clocks: dict[str, Callable[[], float]] = {}
        self.offline: set[str] = set()  # vehicles whose link is down now
        self._early_acks: dict[tuple[str, int], float] = {}  # acknowledged before stored() was called
        self._lock = threading.Lock()

    def now(self) -> float:
        """Seconds since the soak started."""
        return time.monotonic() - self.started

    def stored(self, vehicle: str, seq: int, body: Body) -> None:
        """A car's outbox stored a message."""
        item = Produced(
            vehicle, seq, str(body.KIND), self.now(), units_of(vehicle, seq, body), vehicle in self.offline
        )
        with self._lock:
            item.acked_at = item.last_acked_at = self._early_acks.pop((vehicle, seq), None)
            item.acks = int(item.acked_at is not None)
            self.messages[(vehicle, seq)] = item

    def acknowledged(self, vehicle: str, seqs: list[int]) -> None:
        """The uplink reported the broker's PUBACK for these messages."""
        now = self.now()
        with self._lock:
            for seq in seqs:
                item = self.messages.get((vehicle, seq))
                if item is None:
                    self._early_acks.setdefault((vehicle, seq), now)
                    continue
                if item.acked_at is None:
                    item.acked_at = now
                item.last_acked_at = now
                item.acks += 1

    def will(self, vehicle: str, seq: int) -> None:
        """A seq taken for the MQTT last will (published by the broker, not through the outbox)."""
        with self._lock:
            self.wills.add((vehicle, seq))

    def snapshot(self) -> list[Produced]:
        """The messages recorded so far."""
        with self._lock:
            return list(self.messages.values())


class RecordingOutbox(Outbox):
    """The edge's outbox, unchanged, telling the soak's recorder what it stores and what is acknowledged."""

    recorder: Recorder

    def __init__(self, path: str | Path, vehicle_id: str, **kwargs: Any) -> None:
        clock = self.recorder.clocks.get(vehicle_id)
        if clock is not None:
            kwargs.setdefault("clock", clock)
        super().__init__(path, vehicle_id, **kwargs)

    def enqueue(self, body: Body, **kwargs: Any) -> int:
        """Store as the outbox does; record it once stored."""
        seq = super().enqueue(body, **kwargs)
        self.recorder.stored(self.vehicle_id, seq, body)
        return seq

    def reserve_seq(self) -> int:
        """Take a seq as the outbox does; record it as a last will's."""
        seq = super().reserve_seq()
        self.recorder.will(self.vehicle_id, seq)
        return seq

    def ack(self, seqs: Any, *args: Any, **kwargs: Any) -> Any:
        """Acknowledge as the outbox does; record when."""
        seqs = list(seqs)
        result = super().ack(seqs, *args, **kwargs)
        self.recorder.acknowledged(self.vehicle_id, seqs)
        return result


@contextlib.contextmanager
def recording_outboxes(recorder: Recorder) -> Iterator[None]:
    """``runner.run_vehicle`` builds a :class:`RecordingOutbox` instead of its ``Outbox`` meanwhile."""
    RecordingOutbox.recorder = recorder
    namespace = vars(runner)
    original = namespace["Outbox"]
    namespace["Outbox"] = RecordingOutbox
    try:
        yield
    finally:
        namespace["Outbox"] = original


# --- services -----------------------------------------------------------------------------------------------
def deploy_broker_directives() -> dict[str, str]:
    """deploy/'s persistence and queue directives (first occurrence each, comments ignored)."""
    found: dict[str, str] = {}
    for line in DEPLOY_MOSQUITTO_CONF.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] in BROKER_KEYS and words[0] not in found:
            found[words[0]] = " ".join(words[1:])
    return found


def deploy_persistence() -> str | None:
    """deploy/'s ``persistence`` setting (the soak's broker persists either way: it is what is tested)."""
    m = re.search(r"^persistence\s+(\S+)", DEPLOY_MOSQUITTO_CONF.read_text(), re.MULTILINE)
    return m.group(1) if m else None


#: the broker logs (to a file) connections and subscriptions; with ``--broker-debug-log`` also every PUBLISH
#: it receives (whether a car's message reached a restarted broker before any ingest worker had subscribed
#: again, in the broker's own order), which slows the broker down enough to change the race it observes
BROKER_LOG = """log_dest file {path}
log_type error
log_type warning
log_type notice
log_type information
log_type subscribe
connection_messages true
log_timestamp true
"""


def start_broker(directory: Path, *, debug_log: bool = False) -> PrivateBroker:
    """A private mosquitto with deploy/'s persistence and queue directives on a loopback listener."""
    # PrivateBroker(deploy_limits=True) writes some of them itself (deploy_queue_limits): not twice
    taken = {line.split()[0] for line in deploy_queue_limits().splitlines() if line.strip()}
    extra = "".join(f"{k} {v}\n" for k, v in deploy_broker_directives().items() if k not in taken)
    extra += BROKER_LOG.format(path=directory / "broker.log") + ("log_type debug\n" if debug_log else "")
    broker = PrivateBroker(directory, extra + "allow_anonymous true", deploy_limits=True)
    broker.start()
    return broker


class BrokerLog:
    """Follows the broker's log file as it is written (every 10 ms): on the soak's clock, when an ingest
    worker subscribed and when a car connected; and in the broker's own order, per life of the broker, the
    PUBLISHes it received from each car before the first ingest worker subscribed (with ``log_type debug``:
    messages it acknowledged and had no subscriber to route to, unless it restored the ingest's sessions).
    Mosquitto's timestamps are whole seconds: too coarse to order a PUBLISH against a SUBSCRIBE."""

    STARTED = re.compile(r"^\d+: mosquitto version \S+ starting")
    SUBSCRIBED = re.compile(r"^\d+: soak-ingest-\d+ \d \$share/")
    CONNECTED = re.compile(r"^\d+: New client connected from \S+ as (\S+) ")
    PUBLISHED = re.compile(r"^\d+: Received PUBLISH from \S+ \(d\d, q\d, r\d, m\d+, 'ds/v1/([^/']+)/")

    def __init__(self, path: Path, now: Callable[[], float]) -> None:
        self.path = path
        self.now = now
        self.subscribed: list[float] = []
        self.cars_connected: list[float] = []
        #: per life of the broker (0: the first start), the PUBLISHes per vehicle before a subscriber
        self.unrouted: list[Counter[str]] = []
        self._subscriber = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="broker-log", daemon=True)

    def start(self) -> None:
        """Follow the file from its start (it may not exist yet)."""
        self._thread.start()

    def stop(self) -> None:
        """Read what is left and stop following."""
        self._stop.set()
        self._thread.join(5)

    def _line(self, line: str, now: float) -> None:
        if self.STARTED.match(line):
            self.unrouted.append(Counter())
            self._subscriber = False
        elif self.SUBSCRIBED.match(line):
            self.subscribed.append(now)
            self._subscriber = True
        elif (m := self.PUBLISHED.match(line)) and not self._subscriber and self.unrouted:
            self.unrouted[-1][m.group(1)] += 1
        elif (m := self.CONNECTED.match(line)) and not m.group(1).startswith("soak-ingest-"):
            self.cars_connected.append(now)

    def _follow(self) -> None:
        offset, partial = 0, ""
        while True:
            stopping = self._stop.wait(0.01)
            try:
                with self.path.open("rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            if data:
                offset += len(data)
                now = self.now()
                lines = (partial + data.decode(errors="replace")).split("\n")
                partial = lines.pop()
                for line in lines:
                    self._line(line, now)
            if stopping:
                return


class PrivatePostgres:
    """A PostgreSQL 15 cluster of the soak's own in a temporary directory, on a spare loopback port."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.data = directory / "data"
        self.logfile = directory / "postgres.log"
        self.port = free_port()
        # PostgreSQL refuses to run as root: the cluster belongs to the postgres user then
        self._user: dict[str, Any] = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(a) for a in args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
            check=False,
            **self._user,
        )
        if done.returncode != 0:
            tail = self.logfile.read_text()[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(f"{args[0]} failed: {done.stderr.decode()[-2000:]}\n{tail}")

    def init(self) -> None:
        """initdb with trust authentication, listening on loopback only."""
        self.dir.mkdir(parents=True)
        if self._user:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--no-sync")  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\n"
            )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.logfile), "-w", "-t", "90",
                  "start")  # fmt: skip

    def crash(self) -> None:
        """Stop in immediate mode: no checkpoint, the next start recovers from the WAL."""
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")

    def cleanup(self) -> None:
        """Stop the server if it runs."""
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                self.crash()

    def url(self, dbname: str = "postgres") -> str:
        """The connection URL of one of its databases."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"


class IngestPool:
    """``--workers`` ``drivesight cloud ingest`` processes on one shared subscription, restarted when they
    exit (the soak's stand-in for systemd or compose)."""

    def __init__(self, count: int, database_url: str, broker_url: str, logs: Path) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self.logs = logs
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * count
        self.logfiles: list[Path] = [logs] * count
        self.incarnations = [0] * count
        self.exits: list[dict[str, object]] = []  # exits the soak did not cause

    def start(self, i: int) -> None:
        """Start worker ``i`` (with the client id, hence the persistent session, it had before)."""
        self.incarnations[i] += 1
        self.logfiles[i] = self.logs / f"ingest-{i}-{self.incarnations[i]}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRIVESIGHT_")}
        env.update(
            DRIVESIGHT_DATABASE_URL=self.database_url,
            DRIVESIGHT_MQTT_URL=self.broker_url,
            DRIVESIGHT_INGEST_GROUP="soak",
            DRIVESIGHT_INGEST_CLIENT_ID=f"soak-ingest-{i}",
            DRIVESIGHT_INGEST_METRICS_PORT="0",
        )
        with self.logfiles[i].open("wb") as out:
            self.procs[i] = subprocess.Popen(
                [sys.executable, "-m", "cloud.cli", "ingest"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def subscribed(self, i: int) -> bool:
        """Whether worker ``i``'s current process said it subscribed."""
        return "ingest subscribed" in self.logfiles[i].read_text(errors="replace")

    def kill(self, i: int) -> None:
        """SIGKILL worker ``i`` and reap it."""
        proc = self.procs[i]
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            self.procs[i] = None

    def supervise(self, now: float) -> None:
        """Restart a worker that exited by itself, noting its exit code and last log line."""
        for i, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is not None:
                lines = self.logfiles[i].read_text(errors="replace").strip().splitlines()
                self.exits.append({"at_s": round(now, 1), "worker": i, "code": proc.returncode,
                                   "last_line": lines[-1][-300:] if lines else ""})  # fmt: skip
                log(f"ingest worker {i} exited with {proc.returncode}; restarting it")
                self.start(i)

    def stop(self) -> None:
        """SIGTERM every worker (each stores and acknowledges what it holds), then SIGKILL stragglers."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        for i, proc in enumerate(self.procs):
            if proc is not None:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
                self.procs[i] = None


class LinkCut:
    """A loopback TCP relay between one car and the broker: ``cut`` drops the car's connection and refuses new
    ones (out of coverage), ``restore`` lets it connect again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._server: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    def restore(self) -> None:
        """Listen (again) on the relay's port."""
        if self._server is not None:
            return
        server = socket.create_server(("127.0.0.1", self.port))
        server.settimeout(0.2)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), name="link", daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while self._server is server:
            try:
                car, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                broker = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                car.close()
                continue
            car.settimeout(None)
            broker.settimeout(None)
            with self._lock:
                self._conns |= {car, broker}
            for a, b in ((car, broker), (broker, car)):
                threading.Thread(target=self._pump, args=(a, b), name="link-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self._lock:
                self._conns -= {src, dst}

    def cut(self) -> None:
        """Drop the car's connection and stop listening: its reconnects are refused."""
        server, self._server = self._server, None
        if server is not None:
            # shutdown first: a close alone leaves the socket listening while accept() still waits on it
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        with self._lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


# --- the fleet ----------------------------------------------------------------------------------------------
@dataclass
class OfflineDay:
    """The car that spends a simulated day without a link."""

    vehicle: str
    link: LinkCut
    cut: threading.Event = field(default_factory=threading.Event)
    restored: threading.Event = field(default_factory=threading.Event)
    clock_offset: float = 0.0
    sim_start: float | None = None
    day_driven_at: float | None = None  # seconds since the soak started

    def clock(self) -> float:
        """The car's wall clock: real time plus the simulated day it has driven offline."""
        return time.time() + self.clock_offset


@dataclass
class Car:
    """One vehicle: its spec, its in-car loop in a thread, and how it ended."""

    spec: VehicleSpec
    state_dir: Path
    mqtt_url: str
    flushed: bool | None = None
    error: str | None = None
    thread: threading.Thread | None = None


def simulated_blocks(spec: VehicleSpec, first_day: date, days: int, seed: int) -> Iterator[SignalBlock]:
    """The car's trips day by day (one day in memory at a time), in blocks of one minute at 10 Hz."""
    rng = np.random.default_rng(seed)
    state = initial_state(spec, rng)
    for d in range(days):
        trips, state = simulate_day(spec, first_day + timedelta(days=d), state, rng)
        yield from iter_blocks((t.block for t in trips), BLOCK_SAMPLES)


def paced(
    blocks: Iterator[SignalBlock],
    pace: float,
    phase: float,
    stop: threading.Event,
    offline: OfflineDay | None,
    recorder: Recorder,
) -> Iterator[SignalBlock]:
    """``pace`` blocks per second until ``stop``; an offline car drives its day at full speed, then parks
    until its link is back. Parks too when the simulated days run out."""
    next_at = time.monotonic() + phase / pace
    for block in blocks:
        if offline is not None and offline.cut.is_set() and offline.day_driven_at is None:
            if offline.sim_start is None:
                offline.sim_start = float(block.t[0])
            if float(block.t[-1]) < offline.sim_start + DAY_S:
                offline.clock_offset = float(block.t[-1]) - offline.sim_start
                yield block
                continue
            offline.clock_offset = DAY_S
            offline.day_driven_at = recorder.now()
            log(f"{offline.vehicle} drove a simulated day offline; waiting for its link")
            while not (offline.restored.wait(0.2) or stop.is_set()):
                pass
            next_at = time.monotonic()
        if stop.wait(max(0.0, next_at - time.monotonic())):
            return
        next_at += 1 / pace
        yield block
    stop.wait()


def drive(car: Car, blocks: Iterator[SignalBlock], stop: threading.Event, flush_timeout_s: float) -> None:
    """The in-car loop as ``drivesight-edge`` runs it, with the soak's paced simulated source."""
    settings = EdgeSettings(
        vehicle_id=car.spec.vehicle_id,
        mqtt_url=car.mqtt_url,
        state_dir=car.state_dir,
        timezone=car.spec.timezone,
        consent_telemetry=True,
        consent_location=True,
        consent_profiling=True,
        # a receipt is due within a second or two; a short window resends what a broker lost within the drain
        resend_window_s=RESEND_WINDOW_S,
    )
    try:
        car.flushed = runner.run_vehicle(settings, blocks, stop=stop, flush_timeout_s=flush_timeout_s)
    except Exception as exc:  # reported in the JSON line: a car that crashed is a finding
        car.error = f"{type(exc).__name__}: {exc}"
        log(f"{car.spec.vehicle_id} failed: {car.error}")


def still_in_outbox(car: Car) -> set[int]:
    """The seqs a stopped car's outbox still holds."""
    path = car.state_dir / f"{car.spec.vehicle_id}.outbox.db"
    if not path.exists():
        return set()
    outbox = Outbox(path, car.spec.vehicle_id)
    try:
        return {item.seq for item in outbox.pending(limit=10**9)}
    finally:
        outbox.close()


def edge_dropped(car: Car) -> dict[str, int]:
    """Messages the car's outbox had to evict (full), per kind."""
    path = car.state_dir / f"{car.spec.vehicle_id}.outbox.db"
    if not path.exists():
        return {}
    outbox = Outbox(path, car.spec.vehicle_id)
    try:
        return {kind: n for kind, (n, _b) in outbox.dropped().items()}
    finally:
        outbox.close()


# --- counting -----------------------------------------------------------------------------------------------
STORED_QUERIES = {
    "telemetry": "SELECT vehicle_id, (extract(epoch FROM time) * 1000000)::bigint FROM telemetry",
    "events": "SELECT vehicle_id, kind, (extract(epoch FROM started_at) * 1000000)::bigint,"
    " (extract(epoch FROM ended_at) * 1000000)::bigint FROM driving_events",
    # a trip stored again under another seq becomes a version: one more copy of it
    "trip": "SELECT vehicle_id, trip_id FROM trips UNION ALL SELECT vehicle_id, trip_id FROM trip_versions",
    "dtc": "SELECT vehicle_id, code, (extract(epoch FROM first_seen) * 1000000)::bigint FROM dtc_reports",
}


@dataclass
class Stored:
    """What the database holds: the ledger and each stream's keys with their multiplicity."""

    ledger: dict[tuple[str, int], tuple[str, datetime]]
    units: dict[str, Counter[tuple[object, ...]]]
    dead_letters: dict[str, int]
    dropped_samples: int


def read_stored(url: str, wills: set[tuple[str, int]]) -> Stored:
    """Read everything the soak's database holds (all of it is the soak's)."""
    with psycopg.connect(url, autocommit=True) as conn:
        ledger = {
            (str(v), int(s)): (str(schema), at)
            for v, s, schema, at in conn.execute(
                "SELECT vehicle_id, seq, schema, received_at FROM ingested_messages"
            )
        }
        units: dict[str, Counter[tuple[object, ...]]] = {
            kind: Counter(tuple(row) for row in conn.execute(query)) for kind, query in STORED_QUERIES.items()
        }
        for kind in ("status", "feedback"):
            units[kind] = Counter(
                (v, s)
                for (v, s), (schema, _at) in ledger.items()
                if schema.startswith(kind) and (v, s) not in wills
            )
        dead = {
            str(r): int(n) for r, n in conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY 1")
        }
        row = conn.execute(
            "SELECT coalesce(sum(value::bigint), 0) FROM ingested_messages, jsonb_each_text(dropped)"
        ).fetchone()
    return Stored(ledger, units, dead, int(row[0]) if row else 0)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault."""

    at_s: float
    wall: datetime
    what: str
    detail: str = ""


@dataclass
class Timeline:
    """When the faults happened, when the broker was up again, when an ingest worker subscribed and when a
    car connected (soak seconds; the last two as the broker's log said them, within ~10 ms)."""

    faults: list[Fault]
    broker_up: list[tuple[float, str]]  # (when, after which kill)
    subscribed: list[float]
    cars_connected: list[float] = field(default_factory=list)
    #: per life of the broker, the PUBLISHes per vehicle it received before an ingest worker subscribed
    unrouted: list[Counter[str]] = field(default_factory=list)
    #: (from, to, what): an ingest worker or the database down
    outages: list[tuple[float, float, str]] = field(default_factory=list)

    def unrouted_after(self, restart: int) -> Counter[str]:
        """The PUBLISHes received before a subscriber by the broker after its ``restart``-th restart."""
        return self.unrouted[restart + 1] if restart + 1 < len(self.unrouted) else Counter()

    def resubscribed_after(self, up: float) -> float | None:
        """The first ingest subscription to the broker started at ``up`` (None: none logged)."""
        return min((u for u in self.subscribed if u >= up), default=None)

    def car_connected_after(self, up: float) -> float | None:
        """The first car's connection to the broker started at ``up``."""
        return min((u for u in self.cars_connected if u >= up), default=None)


#: the cars' wait for the ingest's receipt before they publish a message again (the edge's default is 60 s)
RESEND_WINDOW_S = 10.0

#: how closely the soak can order a PUBACK (seen by the car) and a SUBSCRIBE (seen in the broker's log)
ORDER_MARGIN_S = 0.05


def cause_of(item: Produced, timeline: Timeline) -> tuple[str, str]:
    """Why a message never reached the database, as (a label to count by, the detail with its times).

    A message acknowledged by a restarted broker before any ingest worker subscribed again went nowhere (no
    session the broker knew of to queue it for); otherwise the first fault after the acknowledgement (or
    after it was stored, when it was never acknowledged) is named."""
    if item.last_acked_at is not None:
        ack = item.last_acked_at
        ups = [i for i, (at, _kill) in enumerate(timeline.broker_up) if at <= ack]
        if ups:
            up, kill = timeline.broker_up[ups[-1]]
            sub = timeline.resubscribed_after(up)
            early = timeline.unrouted_after(ups[-1])[item.vehicle]
            detail = (
                f"acked {ack - up:.2f} s after the broker's restart; an ingest worker subscribed "
                + ("never" if sub is None else f"{sub - up:.2f} s after it")
                + f"; the broker's log has {early} PUBLISHes from this car before that SUBSCRIBE"
            )
            # the log's order is the broker's; the clocks only tell the PUBACK from the SUBSCRIBE to ~10 ms
            if sub is None or ack < sub or (early and ack < sub + 10 * ORDER_MARGIN_S):
                return (
                    f"acked by the broker restarted after {kill} before any ingest worker subscribed again",
                    detail,
                )
            if ack < sub + ORDER_MARGIN_S:
                return (
                    f"acked by the broker restarted after {kill} as an ingest worker subscribed again",
                    detail,
                )
        since, state = ack, "acked by the broker"
        # an outage in effect at the PUBACK: what the broker then held for longer than usual
        during = [what for start, end, what in timeline.outages if start <= ack < end]
        if during:
            state += " while " + " and ".join(during)
    else:
        since, state = item.stored_at, "never acked"
    relevant = [
        f
        for f in timeline.faults
        if f.what != "link_restore" and (f.what != "link_cut" or f.detail == item.vehicle)
    ]
    after = next((f for f in relevant if f.at_s >= since), None)
    if after is None:
        return f"{state}, no fault after it", f"{state} at {since:.1f} s"
    return (
        f"{state}, then {after.what} {after.detail.split(' ')[0]}",
        f"{state} {after.at_s - since:.1f} s before {after.what} {after.detail}",
    )


def account(
    produced: list[Produced], stored: Stored, in_outbox: set[tuple[str, int]], timeline: Timeline
) -> dict[str, Any]:
    """Per stream: produced and stored units, lost, undelivered, duplicated, unexpected; and the diagnosis."""
    streams: dict[str, dict[str, int]] = {}
    expected: dict[str, Counter[tuple[object, ...]]] = {}
    for item in produced:
        expected.setdefault(item.kind, Counter()).update(item.units)
    for kind in sorted(set(expected) | {k for k, c in stored.units.items() if c}):
        want = expected.get(kind, Counter())
        have = stored.units.get(kind, Counter())
        mine = [p for p in produced if p.kind == kind]
        streams[kind] = {
            "messages": len(mine),
            "messages_stored": sum((p.vehicle, p.seq) in stored.ledger for p in mine),
            "produced": sum(want.values()),
            "stored": sum(min(n, have[k]) for k, n in want.items()),
            "rows": sum(have.values()),
            "lost": 0,
            "undelivered": 0,
            "duplicated": sum(max(0, n - want[k]) for k, n in have.items() if k in want),
            "unexpected": sum(n for k, n in have.items() if k not in want),
        }
    missing: list[tuple[Produced, int]] = []
    for item in produced:
        gone = sum(1 for k in item.units if stored.units.get(item.kind, Counter())[k] == 0)
        if gone or (item.vehicle, item.seq) not in stored.ledger:
            missing.append((item, gone))
            where = "undelivered" if (item.vehicle, item.seq) in in_outbox else "lost"
            streams[item.kind][where] += gone
    held = {(p.vehicle, p.seq) for p, _n in missing if (p.vehicle, p.seq) in in_outbox}
    lost = [(p, n) for p, n in missing if (p.vehicle, p.seq) not in held]
    undelivered = [(p, n) for p, n in missing if (p.vehicle, p.seq) in held]
    return {
        "streams": streams,
        "lost": sum(s["lost"] for s in streams.values()),
        "undelivered": sum(s["undelivered"] for s in streams.values()),
        "duplicated": sum(s["duplicated"] for s in streams.values()),
        "unexpected": sum(s["unexpected"] for s in streams.values()),
        "lost_messages": len(lost),
        "undelivered_messages": len(undelivered),
        "lost_by_cause": by_cause(lost, timeline),
        "undelivered_by_cause": by_cause(undelivered, timeline),
        "lost_examples": examples(lost, stored, timeline),
        "undelivered_examples": examples(undelivered, stored, timeline),
    }


def by_cause(missing: list[tuple[Produced, int]], timeline: Timeline) -> dict[str, int]:
    """Missing messages counted by stream and cause."""
    return dict(Counter(f"{p.kind}: {cause_of(p, timeline)[0]}" for p, _n in missing).most_common())


def examples(missing: list[tuple[Produced, int]], stored: Stored, timeline: Timeline) -> list[dict[str, Any]]:
    """The first 20 missing messages with their times and the cause's detail."""
    return [
        {
            "vehicle": p.vehicle,
            "seq": p.seq,
            "kind": p.kind,
            "units": n,
            "stored_at_s": round(p.stored_at, 2),
            "acked_at_s": None if p.acked_at is None else round(p.acked_at, 2),
            "last_acked_at_s": None if p.last_acked_at is None else round(p.last_acked_at, 2),
            "acks": p.acks,
            "offline_day": p.offline,
            "in_ledger": (p.vehicle, p.seq) in stored.ledger,
            "cause": cause_of(p, timeline)[1],
        }
        for p, n in sorted(missing, key=lambda x: x[0].stored_at)[:20]
    ]


# --- the soak -----------------------------------------------------------------------------------------------
class Soak:
    """Services, fleet and faults of one run; ``close`` releases everything it started."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.started = time.monotonic()
        self.recorder = Recorder(self.started)
        self.faults: list[Fault] = []
        self.broker_log: BrokerLog | None = None
        self.broker_up: list[tuple[float, str]] = []  # (soak seconds, after which kill)
        self.outages: list[tuple[float, float, str]] = []  # an ingest worker's or the database's
        self._down: dict[str, float] = {}
        self.counts = Counter[str]()
        self.pg = PrivatePostgres(tmp / "pg")
        self.broker: PrivateBroker | None = None
        self.ingest: IngestPool | None = None
        self.cars: list[Car] = []
        self.offline: OfflineDay | None = None
        self.stop = threading.Event()
        self.db_url = ""

    def now(self) -> float:
        """Seconds since the soak started."""
        return time.monotonic() - self.started

    def note(self, what: str, detail: str = "") -> None:
        """Record a fault (and say it on stderr)."""
        self.faults.append(Fault(round(self.now(), 2), datetime.now(UTC), what, detail))
        log(f"t={self.now():.1f}s {what} {detail}")

    # services ----------------------------------------------------------------------------------------------
    def start_services(self) -> None:
        """PostgreSQL (migrated), the broker and the ingest workers."""
        self.pg.init()
        self.pg.start()
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE drivesight_soak")
        self.db_url = self.pg.url("drivesight_soak")
        applied = migrate(self.db_url)
        log(f"private PostgreSQL on port {self.pg.port}, {len(applied)} migrations applied")
        broker_dir = self.tmp / "broker"
        broker_dir.mkdir()
        self.broker_log = BrokerLog(broker_dir / "broker.log", self.now)
        self.broker_log.start()
        self.broker = start_broker(broker_dir, debug_log=self.args.broker_debug_log)
        log(f"private mosquitto on port {self.broker.port}: {deploy_broker_directives()}")
        logs = self.tmp / "logs"
        logs.mkdir()
        self.ingest = IngestPool(self.args.workers, self.db_url, self.broker.url, logs)
        for i in range(self.args.workers):
            self.ingest.start(i)
        deadline = time.monotonic() + 60
        while not all(self.ingest.subscribed(i) for i in range(self.args.workers)):
            if time.monotonic() > deadline:
                raise RuntimeError("the ingest workers did not subscribe within 60 s")
            self.ingest.supervise(self.now())
            time.sleep(0.1)
        log(f"{self.args.workers} ingest workers subscribed")

    def start_fleet(self) -> None:
        """The cars, each in its thread; car 0 is the one that spends a simulated day offline."""
        args = self.args
        assert self.broker is not None
        duration = args.minutes * 60
        # enough simulated days for the pace (a day has 30-110 blocks) plus the offline day, all in the past
        days = math.ceil(args.pace * duration / 30) + 3
        first_day = datetime.now(UTC).date() - timedelta(days=days + 1)
        specs = build_fleet(args.vehicles, args.seed, prefix="soak-", consent_rate=1.0)
        streams = np.random.SeedSequence(args.seed).spawn(len(specs))
        link = LinkCut(self.broker.port)
        link.restore()
        self.offline = OfflineDay(specs[0].vehicle_id, link)
        self.recorder.clocks[specs[0].vehicle_id] = self.offline.clock
        for i, (spec, stream) in enumerate(zip(specs, streams, strict=True)):
            url = f"mqtt://127.0.0.1:{link.port}" if i == 0 else self.broker.url
            car = Car(spec, self.tmp / "cars" / spec.vehicle_id, url)
            blocks = paced(
                simulated_blocks(spec, first_day, days, int(stream.generate_state(1)[0])),
                args.pace, i / len(specs), self.stop, self.offline if i == 0 else None, self.recorder,
            )  # fmt: skip
            car.thread = threading.Thread(
                target=drive, args=(car, blocks, self.stop, args.drain_timeout), name=spec.vehicle_id
            )
            self.cars.append(car)
        for car in self.cars:
            assert car.thread is not None
            car.thread.start()
        log(f"{len(self.cars)} cars driving from {first_day} ({days} simulated days available)")

    # faults ------------------------------------------------------------------------------------------------
    def inject(self, what: str) -> list[tuple[float, str]]:
        """One fault, or the end of one; returns what is due later (each service is back ``--down-s`` after
        it was killed, whatever else happens meanwhile)."""
        assert self.broker is not None and self.ingest is not None and self.offline is not None
        back = self.now() + self.args.down_s
        if what in ("broker_kill", "broker_wipe"):
            assert self.broker.process is not None
            db_file = self.broker.dir / "mosquitto.db"
            saved = f"{time.time() - db_file.stat().st_mtime:.1f} s before" if db_file.exists() else "never"
            self.broker.process.send_signal(signal.SIGKILL)
            self.broker.process.wait(10)
            self.counts["broker_kills"] += 1
            if what == "broker_wipe":
                db_file.unlink(missing_ok=True)
                saved += ", then deleted"
            self.note("broker_kill", f"#{self.counts['broker_kills']} (last persisted {saved})")
            return [(back, "broker_up")]
        if what == "broker_up":
            self.broker.start()
            self.broker_up.append((round(self.now(), 2), f"broker_kill #{self.counts['broker_kills']}"))
        elif what == "ingest_kill":
            i = self.counts["ingest_kills"] % self.args.workers
            self.ingest.kill(i)
            self.counts["ingest_kills"] += 1
            self.note(what, f"#{self.counts['ingest_kills']} (worker {i})")
            self._down[f"ingest worker {i} was down"] = self.now()
            return [(back, f"ingest_up {i}")]
        elif what.startswith("ingest_up"):
            i = int(what.split()[1])
            self.ingest.start(i)
            self._back_up(f"ingest worker {i} was down")
        elif what == "db_restart":
            self.pg.crash()
            self.counts["db_restarts"] += 1
            self.note(what, f"#{self.counts['db_restarts']} (immediate stop, recovery on start)")
            self._down["the database was down"] = self.now()
            return [(back, "db_up")]
        elif what == "db_up":
            self.pg.start()
            self._back_up("the database was down")
        elif what == "link_cut":
            self.recorder.offline.add(self.offline.vehicle)
            self.offline.link.cut()
            self.offline.cut.set()
            self.note(what, self.offline.vehicle)
        elif what == "link_restore":
            while self.offline.day_driven_at is None and not self.stop.is_set():
                time.sleep(0.1)  # the day is driven before the car can be back
            self.recorder.offline.discard(self.offline.vehicle)
            self.offline.link.restore()
            self.offline.restored.set()
            self.note(what, self.offline.vehicle)
        return []

    def _back_up(self, outage: str) -> None:
        # until its restart (an ingest worker subscribes about a second later: its share queues meanwhile)
        self.outages.append((self._down.pop(outage), self.now(), outage))

    def run_faults(self) -> None:
        """Drive for ``--minutes`` with the faults at their times; report progress every 5 s."""
        duration = self.args.minutes * 60
        began = self.now()  # the cars have just started
        due = sorted((began + share * duration + offset, what) for share, offset, what in SCHEDULE)
        last_report = 0.0
        assert self.ingest is not None
        while self.now() < began + duration or due:
            while due and self.now() >= due[0][0]:
                due = sorted(due[1:] + self.inject(due[0][1]))
            self.ingest.supervise(self.now())
            if self.now() - last_report >= 5:
                last_report = self.now()
                log(f"t={self.now():.0f}s produced {len(self.recorder.messages)} messages, "
                    f"stored {self.ledger_count()}")  # fmt: skip
            time.sleep(0.05)

    def ledger_count(self) -> int | str:
        """Messages in the ledger (or why it cannot be read now)."""
        try:
            with psycopg.connect(self.db_url, connect_timeout=2) as conn:
                row = conn.execute("SELECT count(*) FROM ingested_messages").fetchone()
                return int(row[0]) if row else 0
        except psycopg.Error as exc:
            return f"? ({type(exc).__name__})"

    def missing_from_ledger(self) -> int:
        """Produced messages the ledger does not hold yet."""
        keys = [(p.vehicle, p.seq) for p in self.recorder.snapshot()]
        with psycopg.connect(self.db_url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM unnest(%s::text[], %s::bigint[]) AS k (vehicle_id, seq)"
                " WHERE NOT EXISTS (SELECT 1 FROM ingested_messages l"
                "  WHERE l.vehicle_id = k.vehicle_id AND l.seq = k.seq)",
                ([k[0] for k in keys], [k[1] for k in keys]),
            ).fetchone()
        return int(row[0]) if row else 0

    def drain(self) -> tuple[float, bool]:
        """Stop driving, let the cars flush and stop, then wait until the ledger holds every produced message
        (or nothing arrives for ``--settle-s``, or ``--drain-timeout``); return (seconds, drained)."""
        began = time.monotonic()
        self.stop.set()
        if self.offline is not None and not self.offline.restored.is_set():
            self.offline.link.restore()
            self.offline.restored.set()
        deadline = began + self.args.drain_timeout
        for car in self.cars:
            assert car.thread is not None
            car.thread.join(max(1.0, deadline - time.monotonic()))
        log(f"cars stopped after {time.monotonic() - began:.1f} s; waiting for the ingest")
        missing, since = -1, time.monotonic()
        assert self.ingest is not None
        while time.monotonic() < deadline:
            self.ingest.supervise(self.now())
            now_missing = self.missing_from_ledger()
            if now_missing == 0:
                return time.monotonic() - began, True
            if now_missing != missing:
                missing, since = now_missing, time.monotonic()
                log(f"{missing} produced messages not stored yet")
            elif time.monotonic() - since > self.args.settle_s:
                break
            time.sleep(0.5)
        return time.monotonic() - began, False

    def report(self, drain_s: float, drained: bool) -> dict[str, Any]:
        """The JSON line's content."""
        produced = self.recorder.snapshot()
        stored = read_stored(self.db_url, self.recorder.wills)
        in_outbox = {(c.spec.vehicle_id, s) for c in self.cars for s in still_in_outbox(c)}
        assert self.broker is not None
        assert self.broker_log is not None
        self.broker_log.stop()
        timeline = Timeline(
            self.faults,
            self.broker_up,
            self.broker_log.subscribed,
            self.broker_log.cars_connected,
            self.broker_log.unrouted,
            self.outages,
        )
        result = account(produced, stored, in_outbox, timeline)
        assert self.offline is not None and self.ingest is not None
        cut = next((f for f in self.faults if f.what == "link_cut"), None)
        restore = next((f for f in self.faults if f.what == "link_restore"), None)
        mine = [p for p in produced if p.offline]
        back = sorted(
            p.acked_at for p in mine if p.acked_at is not None and restore and p.acked_at >= restore.at_s
        )
        received = [stored.ledger[(p.vehicle, p.seq)][1] for p in mine if (p.vehicle, p.seq) in stored.ledger]
        dropped: Counter[str] = Counter()
        for car in self.cars:
            dropped.update(edge_dropped(car))
        return {
            "lost": result.pop("lost"),
            "duplicated": result.pop("duplicated"),
            **result,
            "produced_messages": len(produced),
            "stored_messages": sum((p.vehicle, p.seq) in stored.ledger for p in produced),
            "wills_stored": sum(w in stored.ledger for w in self.recorder.wills),
            # acknowledged by the broker more than once: published again after a reconnect (the ledger
            # stores each once); the broker's PUBACKs in all, counted by the outboxes
            "messages_acked_again": sum(p.acks > 1 for p in produced),
            "pubacks": sum(p.acks for p in produced),
            "edge_dropped": dict(dropped),
            "dead_letters": stored.dead_letters,
            "implausible_samples_dropped": stored.dropped_samples,
            "broker_kills": self.counts["broker_kills"],
            "ingest_kills": self.counts["ingest_kills"],
            "db_restarts": self.counts["db_restarts"],
            "ingest_unplanned_exits": self.ingest.exits,
            "cars_not_flushed": [c.spec.vehicle_id for c in self.cars if c.flushed is not True],
            "car_errors": {c.spec.vehicle_id: c.error for c in self.cars if c.error},
            "offline": {
                "vehicle": self.offline.vehicle,
                "simulated_s": DAY_S,
                "messages": len(mine),
                "day_driven_in_s": None
                if self.offline.day_driven_at is None or cut is None
                else round(self.offline.day_driven_at - cut.at_s, 1),
                "first_ack_after_restore_s": round(back[0] - restore.at_s, 1) if back and restore else None,
                "stored_after_restore_s": round((max(received) - restore.wall).total_seconds(), 1)
                if received and restore
                else None,
            },
            "faults": [{"at_s": f.at_s, "what": f.what, "detail": f.detail} for f in self.faults],
            "broker_restarts": [
                {
                    "up_at_s": up,
                    "after": kill,
                    "ingest_subscribed_after_s": None if sub is None else round(sub - up, 2),
                    "first_car_after_s": None if car is None else round(car - up, 2),
                    "publishes_before_ingest_subscribed": sum(timeline.unrouted_after(i).values())
                    if self.args.broker_debug_log
                    else None,
                }
                for i, (up, kill) in enumerate(self.broker_up)
                for sub, car in [(timeline.resubscribed_after(up), timeline.car_connected_after(up))]
            ],
            "drained": drained,
            "soak_s": round(self.args.minutes * 60, 1),
            "drain_s": round(drain_s, 1),
            "total_s": round(self.now(), 1),
            "settings": {
                "minutes": self.args.minutes,
                "vehicles": self.args.vehicles,
                "pace_blocks_per_s": self.args.pace,
                "workers": self.args.workers,
                "down_s": self.args.down_s,
                "drain_timeout_s": self.args.drain_timeout,
                "settle_s": self.args.settle_s,
                "seed": self.args.seed,
                "broker_debug_log": self.args.broker_debug_log,
                "broker_from_deploy": deploy_broker_directives(),
                "deploy_persistence": deploy_persistence(),
                "commit": git_head(),
            },
        }

    def close(self) -> None:
        """Stop everything the soak started, each step even when another failed (safe after any failure)."""
        self.stop.set()
        if self.offline is not None:
            self.offline.restored.set()
        for car in self.cars:
            if car.thread is not None and car.thread.is_alive():
                car.thread.join(15)
        if self.broker_log is not None:
            self.broker_log.stop()
        steps: list[Callable[[], None]] = [self.pg.cleanup]
        if self.ingest is not None:
            steps.insert(0, self.ingest.stop)
        if self.broker is not None:
            steps.insert(1, self._kill_broker)
        for step in steps:
            try:
                step()
            except Exception as exc:  # go on: the other services must stop too
                log(f"cleanup step {step.__name__} failed: {exc}")

    def _kill_broker(self) -> None:
        if self.broker is not None and self.broker.process is not None:
            self.broker.process.kill()
            self.broker.process.wait(10)
            self.broker.process = None


def git_head() -> str:
    """The checkout's commit (and whether it has local changes), for comparing runs."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+local changes" if dirty else "")


def main() -> int:
    """Run the soak; print one JSON line; 1 when anything was lost, undelivered, duplicated or unexpected."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=5.0, help="driving time with faults")
    parser.add_argument("--vehicles", type=int, default=10)
    parser.add_argument("--pace", type=float, default=2.0, help="blocks (1 min of driving) per s per car")
    parser.add_argument("--workers", type=int, default=2, help="ingest processes (shared subscription)")
    parser.add_argument("--down-s", type=float, default=2.0, help="how long a killed service stays down")
    parser.add_argument("--drain-timeout", type=float, default=180.0, help="bound on the final wait")
    parser.add_argument("--settle-s", type=float, default=20.0, help="end the wait after this long idle")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="keep the logs (broker, ingest, PostgreSQL)")
    parser.add_argument(
        "--broker-debug-log",
        action="store_true",
        help="log every PUBLISH (counts those a restarted broker got before a subscriber; slows it down)",
    )
    args = parser.parse_args()
    if args.vehicles < 2 or args.workers < 2:
        parser.error("the soak needs at least 2 vehicles (one goes offline) and 2 ingest workers")
    for binary in ("initdb", "pg_ctl"):
        if not (PG_BIN / binary).exists():
            parser.error(f"{PG_BIN / binary} is missing (PostgreSQL 15 server binaries)")

    # SIGTERM/SIGINT end the run through the finally below: nothing of ours is left running
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="drivesight-soak-"))
    if os.geteuid() == 0:
        tmp.chmod(0o711)  # the postgres user must reach its cluster below
    soak = Soak(args, tmp)
    try:
        with recording_outboxes(soak.recorder):
            soak.start_services()
            soak.start_fleet()
            soak.run_faults()
            drain_s, drained = soak.drain()
            result = soak.report(drain_s, drained)
    finally:
        soak.close()
        if args.keep:
            for data in (tmp / "pg" / "data", tmp / "cars"):
                shutil.rmtree(data, ignore_errors=True)
            log(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    log(f"lost {result['lost']}, undelivered {result['undelivered']}, duplicated {result['duplicated']}, "
        f"unexpected {result['unexpected']} in {result['produced_messages']} messages")  # fmt: skip
    print(json.dumps(result))
    bad = result["lost"] or result["undelivered"] or result["duplicated"] or result["unexpected"]
    return 1 if bad or result["car_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
