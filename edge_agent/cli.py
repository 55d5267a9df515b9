"""``drivesight edge ...``: the in-car process. Imports nothing from ``cloud``."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from pathlib import Path

from .signals import SignalBlock

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``edge`` command and its subcommands."""
    edge = subparsers.add_parser("edge", help="run the in-car edge agent")
    sub = edge.add_subparsers(dest="edge_command", required=True)
    run = sub.add_parser("run", help="run the agent: read a source, publish to the broker, obey the downlink")
    run.add_argument("--vehicle-id", help="default: DRIVESIGHT_EDGE_VEHICLE_ID")
    run.add_argument("--mqtt-url", help="default: DRIVESIGHT_EDGE_MQTT_URL or mqtt://127.0.0.1:1883")
    run.add_argument("--state-dir", type=Path, help="outbox and consent; default .drivesight/edge")
    run.add_argument("--source", choices=["sim", "replay", "can", "obd"], default="sim")
    run.add_argument("--persona", default="calm_commuter", help="sim: the simulated driver")
    run.add_argument("--days", type=int, default=1, help="sim: simulated days, ending yesterday")
    run.add_argument("--seed", type=int, default=1, help="sim: random seed")
    run.add_argument("--file", type=Path, help="replay: the recorded CSV or Parquet file")
    run.add_argument("--mapping", type=Path, help="replay/can: the column or DBC -> VSS mapping")
    run.add_argument(
        "--can-interface", default="socketcan", help="can: python-can interface (socketcan, virtual)"
    )
    run.add_argument("--can-channel", default="can0", help="can: the channel, e.g. can0 or vcan0")
    run.add_argument("--obd-port", help="obd: the adapter's serial port (default: scan)")
    run.add_argument("--timezone", help="IANA zone of the car, for night rules")
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
    import threading

    from .config import EdgeSettings
    from .runner import install_signal_handlers, run_vehicle

    overrides = {
        "vehicle_id": args.vehicle_id,
        "mqtt_url": args.mqtt_url,
        "state_dir": args.state_dir,
        "timezone": args.timezone,
    }
    settings = EdgeSettings(**{k: v for k, v in overrides.items() if v is not None})
    stop = threading.Event()
    install_signal_handlers(stop)
    try:
        source = _source(args, settings, stop)
    except ValueError as exc:  # MappingError, ReplayError: a clear message, no traceback
        log.error("%s", exc)
        return 2
    return 0 if run_vehicle(settings, source, stop=stop) else 1


def _source(args: argparse.Namespace, settings: object, stop: object) -> Iterable[SignalBlock]:
    """The signal source the arguments name."""
    if args.source == "replay":
        from .sources.mapping import load_mapping
        from .sources.replay import ReplaySource

        if args.file is None or args.mapping is None:
            raise ValueError("--source replay needs --file and --mapping")
        return ReplaySource(args.file, load_mapping(args.mapping))
    if args.source == "can":
        import can

        from .sources.can import CanSource, load_can_mapping

        if args.mapping is None:
            raise ValueError("--source can needs --mapping (a DBC -> VSS mapping file)")
        mapping = load_can_mapping(args.mapping)
        bus = can.Bus(interface=args.can_interface, channel=args.can_channel)
        return CanSource(bus, mapping, stop=stop)  # type: ignore[arg-type]
    if args.source == "obd":
        from .sources.obd import ObdSource

        try:
            return ObdSource.open(args.obd_port, stop=stop)
        except ConnectionError as exc:
            raise ValueError(str(exc)) from exc
    return _simulated(args, settings)


def _simulated(args: argparse.Namespace, settings: object) -> Iterable[SignalBlock]:
    from datetime import date, timedelta

    import numpy as np

    from simulators.personas import PersonaName
    from simulators.vehicle import VehicleSpec, initial_state, simulate_day

    vehicle_id = getattr(settings, "vehicle_id", None) or "sim"
    spec = VehicleSpec(vehicle_id, PersonaName(args.persona), timezone=args.timezone or "Asia/Shanghai")
    rng = np.random.default_rng(args.seed)
    state = initial_state(spec, rng)
    first = date.today() - timedelta(days=args.days)
    for d in range(args.days):
        trips, state = simulate_day(spec, first + timedelta(days=d), state, rng)
        for trip in trips:
            for start in range(0, len(trip.block), 600):
                yield trip.block.slice(start, start + 600)


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
