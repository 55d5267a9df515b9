"""The HTTP API under load: authenticated portrait reads at a fixed offered rate from a separate process.

``--route recommendations`` loads ``GET /v1/customers/{id}/recommendations`` (personalized, k = 10) instead,
on the same population with a simulated catalogue (simulators/push_world.py) and the purchases of one
simulated campaign's worth of organic conversions: each API worker fits its model once before the load
(a few requests ahead, not counted), then serves from its cache.

A simulated population (CRM and online files through the importer, trips by COPY, the analytics job run) in
a scratch database; an API key with ``marketing:read`` made by the real code; the API started as production
starts it (``drivesight-cloud api --workers W --port P``, a separate process); then locust, headless in a
process of its own (``tests/benchmarks/api_locustfile.py``), sends ``--rps`` portrait GETs a second of random
consenting customers for ``--seconds`` (after ``--warmup`` seconds not counted), paced by constant-throughput
users on kept-alive connections.

Printed (one JSON line): ``p50_ms``/``p99_ms`` of the response time as the load process saw it, computed
from every request's exact time (locust's own percentiles are bucketed to whole milliseconds), the achieved
``rps``, ``failures`` (any answer but a 2xx; the exit status is 1 if there is one), and ``auth_ms``: the time
the key check (``require``) took inside the server per request, read from the ``Server-Timing`` header the
benchmark turns on (``DRIVESIGHT_API_SERVER_TIMING``): ``auth_ms`` for a cached key (median; ``auth_p99_ms``),
``auth_lookup_ms`` for a request that waited for the database lookup (made once per key and worker every
``DRIVESIGHT_API_KEY_CACHE_S``, ahead of expiry, so normally none). ``audit_rows_per_answer`` checks that
every answered read was audited. The server runs with a per-key rate limit high enough for one key to carry
the whole load.

What the run cost and how busy the machine was, for reading the latencies: ``server_cpu_ms_per_request``
(user and system CPU of the API's processes over the load, warm-up included, per request sent),
``server_cores`` and ``locust_cores`` (mean cores each used), ``cpu_pressure`` (the share of the time some
task of the machine, anyone's, waited for a CPU: Linux PSI) and ``load_average`` at the end. On a shared
machine the latencies are only comparable between runs at a similar pressure.

    python tests/benchmarks/api.py                              # 500 requests/s for 30 s, 2 workers
    python tests/benchmarks/api.py --rps 50 --seconds 5 --customers 200 --days 10   # smoke size
    python tests/benchmarks/api.py --route recommendations --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.access.keys import create_key
from cloud.analytics.config import load_config
from cloud.analytics.run import run_analytics
from cloud.db.migrate import migrate
from simulators.population import simulate_population
from tests.benchmarks.portrait_quality import load
from tests.helpers import scratch_database

#: the server (its maintenance database) the benchmark makes its database on
ADMIN_URL = os.environ.get("DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).parent
LOCUSTFILE = Path(__file__).with_name("api_locustfile.py")


def progress(message: str) -> None:
    """One progress line on stderr."""
    print(f"[api] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, server: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Return once ``base/healthz`` answers 200; fail if the server exits or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the API exited with status {server.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the API was not healthy within {timeout_s:g} s")


def stop(server: subprocess.Popen[bytes]) -> None:
    """Stop the API as a supervisor would (SIGTERM, then SIGKILL of its process group after 20 s)."""
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of process ``pid`` and its live descendants so far (Linux /proc)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # gone meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        pending.extend(int(child) for child in children)
    return total


def cpu_waiting_s() -> float | None:
    """Seconds so far that some runnable task of this machine waited for a CPU (Linux PSI), or None."""
    try:
        some = Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    return int(some.rsplit("total=", 1)[1]) / 1e6


def seed(
    url: str, customers: int, days: int, seed_: int, directory: Path, *, catalogue: bool = False
) -> tuple[list[str], str]:
    """Load a population, run the analytics (with ``catalogue``: a simulated catalogue and organic
    conversions too), and return the consenting customers' ids and a new key."""
    migrate(url)
    pop = simulate_population(customers, seed_, days=days)
    load(url, pop, directory / "files")
    run_analytics(url, load_config(), full=True)
    if catalogue:
        import numpy as np

        from cloud.analytics.imports import import_file
        from simulators.push_world import make_catalogue, write_catalogue

        rng = np.random.default_rng(seed_)
        made = make_catalogue(rng)
        with psycopg.connect(url, autocommit=True) as conn:
            import_file(conn, "catalogue", write_catalogue(made, directory / "catalogue.csv"))
            # a history to learn from: each customer bought one to three items
            rows = [
                (c, str(made.item_ids[int(i)]))
                for c in pop.customers["customer_id"]
                for i in rng.choice(len(made.item_ids), size=int(rng.integers(1, 4)), replace=False)
            ]
            with conn.cursor().copy("COPY conversions (customer_id, item_id, at) FROM STDIN") as copy:
                for c, item in rows:
                    copy.write_row((c, item, "2026-10-01T00:00:00Z"))
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [
            str(r[0])
            for r in conn.execute(
                "SELECT customer_id FROM consent_current WHERE scope = 'marketing' AND granted"
                " ORDER BY customer_id"
            )
        ]
        key = create_key(conn, name="api benchmark", scopes="marketing:read").key
        conn.execute("VACUUM ANALYZE")
    return ids, key


def audit_rows(url: str, route: str) -> int:
    """How many reads of ``route`` the audit log holds."""
    action = "portrait.read" if route == "portrait" else "recommendations.read"
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM audit_log WHERE action = %s", (action,)).fetchone()
    return int(row[0]) if row else 0


def warm(base: str, key: str, ids: list[str], requests: int) -> None:
    """Send ``requests`` recommendation GETs one after another (not counted): each worker fits its model."""
    import urllib.request

    started = time.monotonic()
    for n in range(requests):
        request = urllib.request.Request(
            f"{base}/v1/customers/{ids[n % len(ids)]}/recommendations",
            headers={"Authorization": f"Bearer {key}"},
        )
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()
    progress(f"recommenders fitted and cached in {time.monotonic() - started:.1f} s")


def summarise(samples: list[tuple[float, float, int, float, str]], warmup_s: float) -> dict[str, Any]:
    """The figures of the requests started after the first ``warmup_s`` seconds (failures: of all)."""
    first = min(s[0] for s in samples)
    counted = [s for s in samples if s[0] >= first + warmup_s]
    if len(counted) < 2:
        raise SystemExit("too few requests after the warm-up to measure anything")
    times = np.array([s[1] for s in counted])
    span = max(s[0] for s in counted) - min(s[0] for s in counted)
    cached = np.array([s[3] for s in counted if s[4] == "cached"])
    lookups = np.array([s[3] for s in counted if s[4] == "lookup"])
    return {
        "p50_ms": round(float(np.percentile(times, 50)), 2),
        "p90_ms": round(float(np.percentile(times, 90)), 2),
        "p99_ms": round(float(np.percentile(times, 99)), 2),
        "max_ms": round(float(times.max()), 1),
        "rps": round((len(counted) - 1) / span, 1) if span > 0 else None,
        "requests": len(samples),
        "failures": sum(1 for s in samples if not 200 <= s[2] < 300),
        "auth_ms": round(float(np.percentile(cached, 50)), 4) if cached.size else None,
        "auth_p99_ms": round(float(np.percentile(cached, 99)), 4) if cached.size else None,
        "auth_lookup_ms": round(float(np.median(lookups)), 3) if lookups.size else None,
        "auth_lookup_requests": int(lookups.size),  # requests that waited for a lookup (shared ones too)
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rps", type=float, default=500, help="offered load, requests a second")
    parser.add_argument("--seconds", type=float, default=30, help="measured time, after the warm-up")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load not counted")
    parser.add_argument("--workers", type=int, default=2, help="API worker processes")
    parser.add_argument("--users", type=int, default=50, help="locust users (connections), each paced")
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--route", choices=("portrait", "recommendations"), default="portrait")
    args = parser.parse_args()
    out: dict[str, Any] = {"offered_rps": args.rps, "seconds": args.seconds, "workers": args.workers}
    with scratch_database(ADMIN_URL, "drivesight_bench_api") as url, tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        started = time.monotonic()
        ids, key = seed(
            url, args.customers, args.days, args.seed, directory, catalogue=args.route == "recommendations"
        )
        progress(f"{len(ids)} consenting customers of {args.customers} in {time.monotonic() - started:.0f} s")
        (directory / "ids").write_text("\n".join(ids))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = os.environ | {
            "DRIVESIGHT_DATABASE_URL": url,
            "DRIVESIGHT_API_SERVER_TIMING": "1",
            "DRIVESIGHT_API_RATE_PER_S": "1000000",  # one key carries the whole load
            "DRIVESIGHT_API_RATE_BURST": "1000000",
        }
        log_path = directory / "api.log"
        with open(log_path, "wb") as server_log:
            server = subprocess.Popen(
                [BIN / "drivesight-cloud", "api", "--workers", str(args.workers), "--port", str(port)],
                env=env,
                stdout=server_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                wait_healthy(base, server)
                progress(f"API up on {base} with {args.workers} workers; locust at {args.rps:g}/s")
                samples_path = directory / "samples"
                load_env = os.environ | {
                    "DS_BENCH_KEY": key,
                    "DS_BENCH_IDS": str(directory / "ids"),
                    "DS_BENCH_RATE": str(args.rps / args.users),
                    "DS_BENCH_SAMPLES": str(samples_path),
                    "DS_BENCH_ROUTE": args.route,
                }
                if args.route == "recommendations":  # every worker fits its model before the load
                    warm(base, key, ids, 8 * args.workers)
                audited_before = audit_rows(url, args.route)
                command = [BIN / "locust", "-f", LOCUSTFILE, "--headless", "--host", base, "--only-summary"]
                command += ["-u", str(args.users), "-r", str(args.users)]  # all users within a second
                command += ["-t", f"{args.warmup + args.seconds:g}s", "--stop-timeout", "5"]
                # CPU of the API's processes and of locust over the whole load (warm-up included): what a
                # request costs, and whether the load process itself had a core to spare
                server_cpu, load_cpu = cpu_seconds(server.pid), resource.getrusage(resource.RUSAGE_CHILDREN)
                # and how busy the machine was: the share of the time something waited for a CPU (others'
                # work too; the latencies are only comparable at a similar figure)
                waiting, waiting_from = cpu_waiting_s(), time.monotonic()
                locust = subprocess.run(
                    [*command, "--loglevel", "WARNING"],
                    env=load_env,
                    stdout=sys.stderr,  # its summary table is progress; stdout is this script's JSON
                    check=False,
                )
                server_cpu = cpu_seconds(server.pid) - server_cpu
                waited = cpu_waiting_s()
                if waiting is not None and waited is not None:
                    cpu_pressure: float | None = (waited - waiting) / (time.monotonic() - waiting_from)
                else:
                    cpu_pressure = None
                used = resource.getrusage(resource.RUSAGE_CHILDREN)
                load_cpu_s = used.ru_utime + used.ru_stime - load_cpu.ru_utime - load_cpu.ru_stime
            finally:
                stop(server)
        if not samples_path.exists():
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
            raise SystemExit(f"locust wrote no samples (exit status {locust.returncode})")
        rows = (line.split() for line in samples_path.read_text().splitlines())
        samples = [(float(t), float(ms), int(code), float(auth), src) for t, ms, code, auth, src in rows]
        out |= summarise(samples, args.warmup)
        span = args.warmup + args.seconds
        out["server_cpu_ms_per_request"] = round(server_cpu * 1000 / len(samples), 3)
        out["server_cores"] = round(server_cpu / span, 2)  # mean cores the API's processes used
        out["locust_cores"] = round(load_cpu_s / span, 2)
        out["cpu_pressure"] = round(cpu_pressure, 2) if cpu_pressure is not None else None
        out["load_average"] = round(os.getloadavg()[0], 2)
        audited = audit_rows(url, args.route) - audited_before
        answered = sum(1 for s in samples if 200 <= s[2] < 300)
        out["audit_rows_per_answer"] = round(audited / answered, 3) if answered else None
        if out["failures"]:
            sys.stderr.write(log_path.read_text(errors="replace")[-4000:])
    print(json.dumps(out))
    if out["failures"] or out["audit_rows_per_answer"] != 1.0:
        sys.exit(1)


if __name__ == "__main__":
    main()
