"""A worker's Prometheus endpoint: ``GET /metrics`` on its own port (each worker process has one)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .worker import IngestWorker


def serve_metrics(worker: IngestWorker, host: str = "0.0.0.0", port: int = 9108) -> ThreadingHTTPServer:
    """Start serving the worker's counters in a daemon thread; ``shutdown()`` the returned server to stop."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/metrics":
                self.send_error(404, "only /metrics is here")
                return
            body = worker.metrics.prometheus(queue_depth=worker.queue_depth()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # scrapes every few seconds: keep quiet
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
