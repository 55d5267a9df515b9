"""Capacity model: what one million cars need, from figures measured on the development machine.

Arithmetic only: every input is an argument whose default is a measured figure (with the command that
measured it) or a stated assumption (with its source). deploy/README.md's capacity tables are this script's
``--markdown`` output, and tests/test_capacity_doc.py fails when they differ, so the document cannot drift.

    python tests/benchmarks/capacity.py                    # one JSON line: inputs and results
    python tests/benchmarks/capacity.py --cars 5000000     # another fleet
    python tests/benchmarks/capacity.py --markdown         # the tables of deploy/README.md

The model, per car and day: it drives ``driving_min_per_day`` minutes in ``trips_per_day`` trips. While
driving it sends one telemetry row every ``telemetry_period_s`` (if its owner consented: ``telemetry_share``),
batched into one message every ``telemetry_batch_s`` plus one partial batch at each trip's end; per trip one
trip summary, ``events_msgs_per_trip`` event messages, ``status_msgs_per_trip`` status messages (online and
offline) and ``dtc_msgs_per_trip`` fault-code messages. At the peak hour ``peak_hour_share`` of the day's
driving happens (traffic engineering's K factor), so the share of cars driving then is
``peak_hour_share * driving hours per day``. Workers, broker nodes and the database are sized for ``headroom``
times the peak (catching up after an outage takes spare capacity). Each message is one row of the
exactly-once ledger; telemetry rows are compressed after ``compress_after_days`` (TimescaleDB).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.db.retention import DEFAULT_KEEP_DAYS
from edge_agent.config import EdgeSettings

_EDGE = EdgeSettings.model_fields


def _input(value: float, source: str) -> Any:
    return field(default=value, metadata={"source": source})


@dataclass(frozen=True)
class Inputs:
    """The model's inputs; each default is measured here or an assumption with its source."""

    cars: int = _input(1_000_000, "the question")
    # --- measured on the development machine (2 shared cores, PostgreSQL 15, Mosquitto 2.0) --------------
    ingest_rows_per_s: float = _input(
        62_364,
        "measured: ingest.py with 60-row messages (the edge's default batch), 2 workers, median of 3",
    )
    ingest_workers: int = _input(2, "measured: the workers of that run")
    ingest_rows_per_msg: int = _input(60, "measured: the rows per message of that run")
    copy_rows_per_s: float = _input(378_863, "measured: the raw binary COPY of that run, median of 3")
    telemetry_bytes_per_row: float = _input(
        200, "measured: drivesight demo's telemetry table, indexes included (queries.py's rows: 147)"
    )
    ledger_bytes_per_row: float = _input(
        240, "measured: drivesight demo's ingested_messages, indexes included"
    )
    events_msgs_per_trip: float = _input(2.98, "measured: drivesight demo, 122 event messages in 41 trips")
    dtc_msgs_per_trip: float = _input(0.07, "measured: drivesight demo, 3 fault-code messages in 41 trips")
    # --- the edge's defaults (edge_agent/config.py) --------------------------------------------------------
    telemetry_period_s: float = _input(_EDGE["telemetry_period_s"].default, "edge default")
    telemetry_batch_s: float = _input(_EDGE["telemetry_batch_s"].default, "edge default")
    status_msgs_per_trip: float = _input(2, "edge: online when the agent starts, offline when it stops")
    # --- retention (cloud/db/retention.py), compression (the TimescaleDB migration) -------------------------
    telemetry_keep_days: int = _input(DEFAULT_KEEP_DAYS["telemetry"] or 0, "retention default")
    ledger_keep_days: int = _input(DEFAULT_KEEP_DAYS["ingested_messages"] or 0, "retention default")
    compress_after_days: int = _input(7, "the TimescaleDB migration's compression policy")
    # --- assumptions ---------------------------------------------------------------------------------------
    compression_ratio: float = _input(
        10, "assumption: TimescaleDB's documentation, 'reduce your chunk size by more than 90%'"
    )
    telemetry_share: float = _input(1.0, "assumption: every owner consents to telemetry (upper bound)")
    driving_min_per_day: float = _input(
        59, "assumption: AAA Foundation, New American Driving Survey 2019-2020"
    )
    trips_per_day: float = _input(2.5, "assumption: AAA Foundation, New American Driving Survey 2019-2020")
    peak_hour_share: float = _input(
        0.12, "assumption: K factor, 7-12% of daily traffic in the peak hour (top of the range)"
    )
    headroom: float = _input(2.0, "assumption: capacity for twice the peak (catching up after an outage)")
    connected_share: float = _input(1.0, "assumption: every car keeps its broker session connected")
    broker_connections_per_node: float = _input(
        2_000_000, "EMQX's figure: 10 million connections on 5 nodes of 32 cores (EMQX 4.3 test report)"
    )
    broker_msgs_per_node: float = _input(
        100_000, "EMQX's figure: 500,000 QoS 1 messages/s on the same 5 nodes (50-byte payloads)"
    )
    broker_derate: float = _input(0.5, "assumption: half of EMQX's figures (TLS, kilobyte payloads)")


def compute(i: Inputs) -> dict[str, Any]:
    """The model's results (rounded for reading), from its inputs."""
    driving_s = i.driving_min_per_day * 60
    rows_per_car_day = i.telemetry_share * driving_s / i.telemetry_period_s
    telemetry_msgs_per_car_day = i.telemetry_share * (driving_s / i.telemetry_batch_s + i.trips_per_day)
    other_per_trip = 1 + i.events_msgs_per_trip + i.status_msgs_per_trip + i.dtc_msgs_per_trip
    msgs_per_car_day = telemetry_msgs_per_car_day + i.trips_per_day * other_per_trip

    driving_at_peak = i.cars * i.peak_hour_share * driving_s / 3600
    peak_rows_per_s = driving_at_peak * i.telemetry_share / i.telemetry_period_s
    peak_trips_per_s = i.cars * i.trips_per_day * i.peak_hour_share / 3600
    peak_msgs_per_s = driving_at_peak * i.telemetry_share / i.telemetry_batch_s + peak_trips_per_s * (
        other_per_trip + 1
    )

    worker_rows_per_s = i.ingest_rows_per_s / i.ingest_workers
    worker_msgs_per_s = worker_rows_per_s / i.ingest_rows_per_msg
    workers = max(
        math.ceil(i.headroom * peak_rows_per_s / worker_rows_per_s),
        math.ceil(i.headroom * peak_msgs_per_s / worker_msgs_per_s),
    )

    connections = i.cars * i.connected_share
    broker_nodes = (
        max(
            math.ceil(connections / (i.broker_connections_per_node * i.broker_derate)),
            math.ceil(i.headroom * peak_msgs_per_s / (i.broker_msgs_per_node * i.broker_derate)),
        )
        + 1  # the cluster must carry everything with one node down
    )

    rows_per_day = i.cars * rows_per_car_day
    msgs_per_day = i.cars * msgs_per_car_day
    raw_gb_per_day = rows_per_day * i.telemetry_bytes_per_row / 1e9
    compressed_gb_per_day = raw_gb_per_day / i.compression_ratio
    uncompressed_days = min(i.compress_after_days, i.telemetry_keep_days)
    telemetry_tb = (
        uncompressed_days * raw_gb_per_day
        + (i.telemetry_keep_days - uncompressed_days) * compressed_gb_per_day
    ) / 1000
    ledger_gb_per_day = msgs_per_day * i.ledger_bytes_per_row / 1e9
    return {
        "cars_driving_at_peak": round(driving_at_peak),
        "peak_msgs_per_s": round(peak_msgs_per_s),
        "peak_rows_per_s": round(peak_rows_per_s),
        "msgs_per_car_day": round(msgs_per_car_day, 1),
        "worker_msgs_per_s": round(worker_msgs_per_s),
        "ingest_workers": workers,
        "db_write_share_of_copy": round(i.headroom * peak_rows_per_s / i.copy_rows_per_s, 2),
        "broker_connections": round(connections),
        "broker_nodes": broker_nodes,
        "telemetry_rows_per_day": round(rows_per_day),
        "messages_per_day": round(msgs_per_day),
        "telemetry_gb_per_day": round(raw_gb_per_day),
        "telemetry_compressed_gb_per_day": round(compressed_gb_per_day, 1),
        "telemetry_tb_retained_compressed": round(telemetry_tb, 1),
        "telemetry_tb_retained_plain_postgres": round(raw_gb_per_day * i.telemetry_keep_days / 1000, 1),
        "ledger_gb_per_day": round(ledger_gb_per_day, 1),
        "ledger_tb_retained": round(ledger_gb_per_day * i.ledger_keep_days / 1000, 1),
    }


RESULTS = {
    "cars_driving_at_peak": "cars driving at the peak hour",
    "peak_msgs_per_s": "messages/s at the peak",
    "peak_rows_per_s": "telemetry rows/s at the peak",
    "msgs_per_car_day": "messages per car and day",
    "worker_msgs_per_s": "messages/s one ingest worker stored (measured, fleet-shaped messages)",
    "ingest_workers": "ingest workers (headroom included)",
    "db_write_share_of_copy": "peak row rate x headroom / this machine's raw COPY rate",
    "broker_connections": "broker connections",
    "broker_nodes": "EMQX nodes (one more than the load needs)",
    "telemetry_rows_per_day": "telemetry rows per day",
    "messages_per_day": "messages (= ledger rows) per day",
    "telemetry_gb_per_day": "telemetry GB per day, as written",
    "telemetry_compressed_gb_per_day": "telemetry GB per day, compressed",
    "telemetry_tb_retained_compressed": "telemetry TB kept (TimescaleDB: 7 days raw, the rest compressed)",
    "telemetry_tb_retained_plain_postgres": "telemetry TB kept (plain PostgreSQL, no compression)",
    "ledger_gb_per_day": "ledger GB per day",
    "ledger_tb_retained": "ledger TB kept",
}


def markdown(inputs: Inputs, results: dict[str, Any]) -> str:
    """The two tables of deploy/README.md: inputs with their sources, and results."""
    lines = ["| input | value | source |", "| --- | --- | --- |"]
    for f in fields(inputs):
        lines.append(f"| `{f.name}` | {getattr(inputs, f.name):,} | {f.metadata['source']} |")
    lines += ["", "| result | value |", "| --- | --- |"]
    lines += [f"| {RESULTS[k]} (`{k}`) | {v:,} |" for k, v in results.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    for f in fields(Inputs):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type={"int": int, "float": float}[str(f.type)],
            default=f.default,
            help=f.metadata["source"],
        )
    parser.add_argument("--markdown", action="store_true", help="print deploy/README.md's tables instead")
    args = vars(parser.parse_args(argv))
    as_markdown = args.pop("markdown")
    inputs = Inputs(**args)
    results = compute(inputs)
    print(markdown(inputs, results) if as_markdown else json.dumps({"inputs": asdict(inputs), **results}))


if __name__ == "__main__":
    main()
