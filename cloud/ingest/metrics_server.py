"""A worker's HTTP side: ``GET /metrics`` (Prometheus, via prometheus_client) and ``GET /healthz``.

The counters live in the worker (:class:`~cloud.ingest.worker.IngestMetrics`); a custom collector reads them
at scrape time, so the worker keeps plain integers on its hot path and prometheus_client writes the format.
``/healthz`` answers 200 while the worker makes progress and 503 with the reason when it does not, which is
also why the ``cloud ingest`` command is about to exit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .worker import IngestWorker

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class WorkerCollector(Collector):
    """The worker's counters as Prometheus metric families, read at each scrape."""

    def __init__(self, worker: IngestWorker) -> None:
        self.worker = worker

    def collect(self) -> Iterator[Metric]:
        """Yield every metric family (called by prometheus_client on each scrape)."""
        w = self.worker
        m = w.metrics
        for name, doc in (
            ("received", "messages received from the broker"),
            ("stored", "messages stored (new to the ledger)"),
            ("duplicates", "redelivered messages the ledger already held"),
            ("erased", "messages of cars whose owner was erased, acknowledged and not stored"),
            ("batches", "batches committed"),
            ("db_retries", "retries after a lost database connection"),
            ("isolations", "batches the database refused whole and that were split to find the culprits"),
            ("receipts", "receipts sent to cars after a commit (a car forgets a message on its receipt)"),
        ):
            yield CounterMetricFamily(f"drivesight_ingest_{name}", doc, value=getattr(m, name))
        by_reason, by_signal = m.by_label()
        dead = CounterMetricFamily(
            "drivesight_ingest_dead_letters",
            "messages set aside as dead letters, by reason",
            labels=["reason"],
        )
        for reason, n in sorted(by_reason.items()):
            dead.add_metric([reason], n)
        yield dead
        dropped = CounterMetricFamily(
            "drivesight_ingest_samples_dropped",
            "implausible telemetry samples dropped (outside the signal's plausible range), by signal",
            labels=["signal"],
        )
        for signal, n in sorted(by_signal.items()):
            dropped.add_metric([signal], n)
        yield dropped
        healthy, _reason = w.health()
        yield GaugeMetricFamily("drivesight_ingest_queue_depth", "messages waiting", value=w.queue_depth())
        yield GaugeMetricFamily("drivesight_ingest_lag_s", "now minus the newest sent_at", value=m.lag_s)
        yield GaugeMetricFamily("drivesight_ingest_healthy", "1 while making progress", value=int(healthy))
        yield GaugeMetricFamily(
            "drivesight_ingest_seconds_since_progress",
            "seconds since a batch was committed or the queue was found empty",
            value=w.seconds_since_progress(),
        )


def serve_metrics(worker: IngestWorker, host: str = "127.0.0.1", port: int = 9108) -> ThreadingHTTPServer:
    """Start serving ``/metrics`` and ``/healthz`` in a daemon thread; ``shutdown()`` the server to stop."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkerCollector(worker))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/metrics":
                self._send(200, generate_latest(registry), _CONTENT_TYPE)
            elif path == "/healthz":
                healthy, reason = worker.health()
                self._send(200 if healthy else 503, f"{reason}\n".encode(), "text/plain; charset=utf-8")
            else:
                self.send_error(404, "only /metrics and /healthz are here")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes every few seconds: keep quiet
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
