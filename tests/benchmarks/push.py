"""Campaigns at fleet scale against simulated customers (simulators/push_world.py). Prints one JSON line.

A population (one car each) is imported into a scratch database (online interactions by COPY, the rest
through the importer), its analytics run, the catalogue and 90 days of organic purchases imported. Then, in a
process of its own (so that ``peak_rss_mb`` is the campaign's, not the population generator's), one campaign
with arms personalized / relevance (popularity) / random and a 20 % holdout is launched:

- ``decide_s``: the launch without delivery — audience, consent, assignment, fitting the recommenders,
  ranking, every send-time rule, the decisions recorded, and marking what the broker acknowledged;
- ``deliver_s``: every push published QoS 1 to the real broker and acknowledged (``mqtt_sender``);
- then the cars' feedback through the ingest's ``store_batch``, the window's purchases through the CRM
  import, and ``campaign_results``: CTR and uplift per arm with the Newcombe interval.

``aa_fpr``: the share of ``--aa-repetitions`` A/A tests (the engine's hash assignment, a campaign id each,
responses re-drawn; see ``aa_p_values``) on the first ``--aa-customers`` customers significant at 0.05.
``recommend_p50_ms`` / ``recommend_p99_ms`` are null: the HTTP route exists
(``GET /v1/customers/{id}/recommendations``) but this script does not serve the API.

    python tests/benchmarks/push.py                       # 100,000 cars
    python tests/benchmarks/push.py --customers 3000 --aa-repetitions 300   # smoke size (CI)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.db.migrate import migrate
from cloud.downlink import DownlinkPublisher, connect
from cloud.push import measure
from cloud.push.campaigns import mqtt_sender
from edge_agent.protocol import BrokerAddress
from simulators.population import simulate_population
from simulators.push_world import (
    COMPARISON_ARMS,
    World,
    aa_p_values,
    everyone,
    load_world,
    run_simulated_campaign,
)
from tests.helpers import scratch_database

#: noon in Shanghai, outside the quiet hours
NOW = datetime(2026, 10, 5, 4, 0, tzinfo=UTC)


def _campaign(url: str, broker_url: str, world: World, seed: int) -> dict[str, Any]:
    """The campaign phase (run in a child process): launch, deliver, feedback, results."""
    client = connect(BrokerAddress.parse(broker_url), client_id=f"push-bench-{uuid.uuid4().hex[:8]}")
    send = mqtt_sender(DownlinkPublisher(client), timeout_s=300)
    delivered: list[float] = []

    def timed(outgoing: Any) -> set[str]:
        started = time.perf_counter()
        acked = send(outgoing)
        delivered.append(time.perf_counter() - started)
        return acked

    try:
        with psycopg.connect(url, autocommit=True) as conn:
            run = run_simulated_campaign(
                conn, world, everyone("bench", COMPARISON_ARMS, NOW), timed, now=NOW, seed=seed
            )
    finally:
        client.disconnect()
        client.loop_stop()
    arms = {a["arm"]: a for a in run.results["arms"]}
    deliver_s = sum(delivered)
    out: dict[str, Any] = {
        "decide_s": round(run.seconds["launch"] - deliver_s, 2),
        "deliver_s": round(deliver_s, 2),
        "sent": run.pushes,
        "acknowledged": run.report.acknowledged,
        "decided": run.report.decided,
        "feedback_messages": run.feedback,
        "feedback_s": round(run.seconds["feedback"], 2),
        "peak_rss_mb": _peak_rss_mb(),
    }
    for name in ("personalized", "relevance", "random"):
        a = arms[name]
        out[f"ctr_{name}"] = round(a["ctr"]["value"], 4)
        out[f"uplift_{name}"] = round(a["uplift"]["difference"], 4)
        out[f"uplift_{name}_ci"] = [round(a["uplift"]["ci_low"], 4), round(a["uplift"]["ci_high"], 4)]
    out["uplift_ci_low"] = out["uplift_personalized_ci"][0]
    out["holdout_conversion"] = round(arms["holdout"]["conversion"]["value"], 4)
    out["srm_p"] = run.results["sample_ratio"]["p_value"]
    return out


def _peak_rss_mb() -> float:
    """This process's peak resident memory. Linux's ``ru_maxrss`` is no use in a spawned child: the fork it
    is exec'd from counts the parent's resident pages (the whole population, 3.3 GB at 100,000 cars) and the
    maximum survives the exec; ``VmHWM`` is the peak of the child's own memory."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--aa-customers", type=int, default=5000)
    parser.add_argument("--aa-repetitions", type=int, default=1000)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    parser.add_argument(
        "--mqtt-url", default=os.environ.get("DRIVESIGHT_TEST_MQTT_URL", "mqtt://127.0.0.1:1883")
    )
    args = parser.parse_args()
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    started = time.perf_counter()
    # one day of trips: the campaign reads no trips, and ten million of them would only cost memory
    pop = simulate_population(args.customers, args.seed, days=1)
    with (
        scratch_database(args.admin_url, "drivesight_pushbench") as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            world = load_world(
                conn, url, pop, Path(tmp), now=NOW, seed=args.seed, n_items=args.items,
                bulk_interactions=True, progress=say,
            )  # fmt: skip
        load_s = time.perf_counter() - started
        say(f"world loaded in {load_s:.0f} s")
        # the child gets what answering needs, not the population's trips and online history
        light = replace(
            world,
            population=replace(pop, trips={}, interactions={}, accounts={}, service_visits={}, complaints={}),
        )
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            result = pool.apply(_campaign, (url, args.mqtt_url, light, args.seed))
    aa_n = min(args.aa_customers, args.customers)
    p = aa_p_values(
        [str(c) for c in pop.customers["customer_id"][:aa_n]], pop.truth["preference"][:aa_n],
        world.catalogue,
        world.eligible[:aa_n], repetitions=args.aa_repetitions, seed=args.seed,
    )  # fmt: skip
    print(
        json.dumps(
            {
                "cars": args.customers,
                "items": args.items,
                **result,
                "recommend_p50_ms": None,
                "recommend_p99_ms": None,
                "aa_fpr": round(measure.false_positive_rate(p), 4),
                "aa_repetitions": args.aa_repetitions,
                "aa_customers": aa_n,
                "load_s": round(load_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
