"""``drivesight edge ...``: the in-car process. Imports nothing from ``cloud``."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``edge`` command and its subcommands."""
    edge = subparsers.add_parser("edge", help="run the in-car edge agent")
    sub = edge.add_subparsers(dest="edge_command", required=True)
    run = sub.add_parser("run", help="run the agent on a simulated vehicle and publish to the broker")
    run.add_argument("--vehicle-id", required=True)
    run.add_argument("--persona", default="calm_commuter", help="simulated driver persona")
    run.add_argument("--days", type=int, default=1)
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--state-dir", type=Path, default=Path(".drivesight/edge"), help="outbox location")
    run.add_argument("--mqtt-url", default=os.environ.get("DRIVESIGHT_MQTT_URL", "mqtt://127.0.0.1:1883"))
    run.add_argument("--timezone", default="Asia/Shanghai")
    run.add_argument("--no-telemetry", action="store_true", help="send trips and events only")
    run.set_defaults(handler=_run)
    replay = sub.add_parser(
        "replay",
        help="run a recorded CSV or Parquet file through the agent offline; print events and trip summaries",
    )
    replay.add_argument("file", type=Path)
    replay.add_argument("--mapping", type=Path, required=True, help="TOML/JSON column -> VSS signal mapping")
    replay.add_argument(
        "--json", action="store_true", help="print one JSON document (default: a short table)"
    )
    replay.add_argument("--vehicle-class", default="car", choices=["car", "suv", "van", "truck"])
    replay.add_argument("--speed-limit", type=float, default=120.0, help="km/h; 0 turns speeding off")
    replay.add_argument("--timezone", default="UTC", help="IANA zone of the recording, for night rules")
    replay.add_argument(
        "--trip-gap", type=float, default=300.0, help="seconds without samples that end a trip"
    )
    replay.set_defaults(handler=_replay)


def _run(args: argparse.Namespace) -> int:
    from datetime import date

    import numpy as np

    from simulators.personas import PersonaName
    from simulators.vehicle import VehicleSpec, initial_state, simulate_day

    from .agent import EdgeAgent, TelemetrySettings
    from .outbox import Outbox
    from .protocol import BrokerAddress
    from .signals import iter_blocks
    from .trips import TripSettings
    from .uplink import MqttUplink

    spec = VehicleSpec(args.vehicle_id, PersonaName(args.persona), timezone=args.timezone)
    rng = np.random.default_rng(args.seed)
    state = initial_state(spec, rng)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    outbox = Outbox(args.state_dir / f"{args.vehicle_id}.db", args.vehicle_id)
    uplink = MqttUplink(outbox, BrokerAddress.parse(args.mqtt_url))
    uplink.start()
    agent = EdgeAgent(
        outbox,
        trip_settings=TripSettings(timezone=args.timezone),
        telemetry=None if args.no_telemetry else TelemetrySettings(),
    )
    today = date.today()
    for d in range(args.days):
        trips, state = simulate_day(spec, date.fromordinal(today.toordinal() - args.days + d), state, rng)
        for block in iter_blocks((t.block for t in trips), 600):
            agent.process(block)
            uplink.notify()
    agent.close_trip()
    flushed = uplink.flush(timeout=60)
    uplink.stop()
    log.info(
        "sent %d trips, %d events; outbox %s",
        agent.trips_sent,
        agent.events_sent,
        "empty" if flushed else f"holds {outbox.depth()} messages for the next start",
    )
    outbox.close()
    return 0 if flushed else 1


def _replay(args: argparse.Namespace) -> int:
    import json
    import sys

    from .detectors import VehicleClass, thresholds_for
    from .offline import run_offline
    from .sources.mapping import MappingError, load_mapping
    from .sources.replay import ReplayError, ReplaySource
    from .trips import TripSettings

    try:
        mapping = load_mapping(args.mapping)
        source = ReplaySource(args.file, mapping)
        result = run_offline(
            source,
            trip_settings=TripSettings(trip_gap_s=args.trip_gap, timezone=args.timezone),
            thresholds=thresholds_for(
                VehicleClass(args.vehicle_class), speed_limit_kmh=args.speed_limit or None
            ),
            time_of=lambda t: source.time_base.from_epoch(t) if source.time_base else t,
        )
    except (MappingError, ReplayError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    base = source.time_base
    document = {
        "file": str(args.file),
        "time_format": base.format.value if base else None,
        "absolute_time": base.absolute if base else None,
        "quality": source.report.as_dict(base.from_epoch if base else float),
        **result,
    }
    if args.json:
        print(json.dumps(document))
        return 0
    for trip in result["trips"]:
        print(
            f"trip {trip['started_at']} .. {trip['ended_at']}: {trip['distance_km']:.2f} km, "
            f"safety {trip['safety_score']}, eco {trip['eco_score']}, events {trip['event_counts']}"
        )
    for e in result["events"]:
        print(f"  {e['kind']:<14} {e['start']} .. {e['end']}  peak {e['peak']} {e['unit']}")
    q = document["quality"]
    print(
        f"rows {q['rows']}, used {q['samples']}, out of order {q['out_of_order']},"
        f" duplicates {q['duplicates']}, gaps {q['gaps_total']},"
        f" out of range {q['out_of_range']}, unparsable {q['unparsable']}"
    )
    return 0
