"""Locust load for ``tests/benchmarks/api.py``: authenticated portrait reads of random customers, paced.

Run by the benchmark (``locust --headless -f tests/benchmarks/api_locustfile.py ...``), which passes through
the environment: ``DS_BENCH_KEY`` (an API key with ``marketing:read``), ``DS_BENCH_IDS`` (a file of customer
ids, one a line, each allowing marketing), ``DS_BENCH_RATE`` (requests a second per user, each user on a
fixed schedule: users x rate is the offered load) and ``DS_BENCH_SAMPLES`` (where every request is written
when locust stops: start time, milliseconds, status, and the server's ``Server-Timing`` auth figure).
Locust's own percentiles are bucketed (whole milliseconds below 100 ms), so the benchmark computes its
figures from these exact samples.
"""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path
from typing import Any

import gevent
from locust import FastHttpUser, events, task

KEY = os.environ.get("DS_BENCH_KEY", "")
IDS = Path(os.environ["DS_BENCH_IDS"]).read_text().split() if "DS_BENCH_IDS" in os.environ else []
RATE = float(os.environ.get("DS_BENCH_RATE", "10"))
SAMPLES = os.environ.get("DS_BENCH_SAMPLES")
#: the route read: a customer's portrait, or their recommendations
ROUTE = os.environ.get("DS_BENCH_ROUTE", "portrait")

_TIMING = re.compile(r'auth;dur=([0-9.]+);desc="(\w+)"')
#: (start time s, response time ms, status, server auth ms or -1, "cached" / "lookup" / "")
_samples: list[tuple[float, float, int, float, str]] = []


@events.request.add_listener
def _on_request(
    start_time: float, response_time: float, response: Any, exception: BaseException | None, **_: Any
) -> None:
    status = int(getattr(response, "status_code", 0) or 0)  # 0: no answer (connection error, timeout)
    match = _TIMING.search(response.headers.get("server-timing") or "") if status else None
    auth_ms, source = (float(match[1]), match[2]) if match else (-1.0, "")
    _samples.append((start_time, response_time, status, auth_ms, source))


@events.quitting.add_listener
def _write_samples(**_: Any) -> None:
    if SAMPLES:
        with open(SAMPLES, "w") as out:
            out.writelines(f"{t:.6f} {ms:.3f} {s} {a:.4f} {src or '-'}\n" for t, ms, s, a, src in _samples)


class PortraitReader(FastHttpUser):
    """One marketing client: a portrait of a random consenting customer at ``DS_BENCH_RATE`` a second.

    Paced on a fixed schedule (start + n / rate), like locust's ``constant_throughput`` but from an absolute
    clock: locust's counts each wait from the end of the last task, and users that a stall (of this process
    or the server) delays together then stay in step, sending in bursts. Each user starts at a random point
    of the first period, so that the load is even from the start.
    """

    def on_start(self) -> None:
        """Wait for this user's first turn, a random point of the first period."""
        self.next_at = time.monotonic() + random.random() / RATE
        gevent.sleep(self.next_at - time.monotonic())

    def wait_time(self) -> float:
        """Seconds until this user's next turn (0 when it is late)."""
        self.next_at += 1 / RATE
        return max(0.0, self.next_at - time.monotonic())

    @task
    def portrait(self) -> None:
        """GET one portrait with the key; anything but a 2xx is a failure."""
        customer = random.choice(IDS)
        with self.client.get(
            f"/v1/customers/{customer}/{ROUTE}",
            headers={"Authorization": f"Bearer {KEY}"},
            name=f"/v1/customers/{{id}}/{ROUTE}",
            catch_response=True,
        ) as response:
            if not 200 <= response.status_code < 300:
                response.failure(f"status {response.status_code}")
