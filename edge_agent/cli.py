"""``drivesight-edge``: the in-car process (also ``drivesight edge`` in the developer's umbrella command).

Imports nothing from ``cloud``, ``models`` or ``simulators`` (the layering contract in pyproject.toml): a car
installs ``drivesight[edge]`` and never loads cloud, training or simulator code. The signal source comes from
the settings (``DRIVESIGHT_EDGE_SOURCE`` and friends) so that a service manager can start a car with its real
source from its configuration file; flags override. Simulated cars are ``drivesight sim car``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .protocol.conventions import command_parser, configure_logging
from .signals import SignalBlock
from .sources.can import CAN_LOG_SUFFIXES

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``edge`` command and its subcommands (the umbrella ``drivesight`` command)."""
    edge = subparsers.add_parser("edge", help="run the in-car edge agent")
    add_commands(edge)


def add_commands(parser: argparse.ArgumentParser) -> None:
    """The edge subcommands (``run``, ``replay``) on ``parser``."""
    sub = parser.add_subparsers(dest="edge_command", required=True)
    run = sub.add_parser("run", help="run the agent: read a source, publish to the broker, obey the downlink")
    add_run_arguments(run)
    run.set_defaults(handler=run_agent)
    replay = sub.add_parser(
        "replay",
        help="run a recorded CSV, Parquet or CAN log (.log, .asc, .blf) through the agent offline; print"
        " events and trip summaries",
    )
    replay.add_argument("file", type=Path)
    replay.add_argument(
        "--mapping", type=Path, required=True, help="TOML/JSON column -> VSS (or, for a CAN log, DBC -> VSS)"
    )
    replay.add_argument(
        "--dbc", action="append", type=Path, default=[], help=f"CAN log ({', '.join(CAN_LOG_SUFFIXES)}): a"
        " DBC file (repeatable), instead of the mapping's own",
    )  # fmt: skip
    replay.add_argument(
        "--json", action="store_true", help="print one JSON document (default: a short table)"
    )
    replay.add_argument("--vehicle-class", default="car", choices=["car", "suv", "van", "truck"])
    replay.add_argument(
        "--profile", default=None, help="sensor profile: vehicle-bus (CAN, an aligned box), phone,"
        " aftermarket-imu; sets the harsh-event thresholds (default: the mapping's, else vehicle-bus)",
    )  # fmt: skip
    replay.add_argument("--speed-limit", type=float, default=120.0, help="km/h; 0 turns speeding off")
    replay.add_argument("--timezone", default="UTC", help="IANA zone of the recording, for night rules")
    replay.add_argument(
        "--trip-gap", type=float, default=300.0, help="seconds without samples that end a trip"
    )
    replay.set_defaults(handler=_replay)


#: ``edge run`` flags that override an :class:`~edge_agent.config.EdgeSettings` field of the same name
_SETTING_FLAGS = (
    "vehicle_id", "mqtt_url", "state_dir", "timezone", "source", "source_file", "mapping_file",
    "dbc_files", "can_interface", "can_channel", "obd_port",
)  # fmt: skip

#: per source, the source settings it does not use: giving one is an error rather than silently ignored
_IGNORED_BY = {
    "replay": ("dbc_files", "can_interface", "can_channel", "obd_port"),
    "can": ("obd_port",),
    "can_log": ("obd_port", "can_interface", "can_channel"),
    "obd": ("source_file", "mapping_file", "dbc_files", "can_interface", "can_channel"),
}
_FLAG_OF = {"source_file": "--file", "mapping_file": "--mapping", "dbc_files": "--dbc"}


def add_run_arguments(run: argparse.ArgumentParser, *, source_flags: bool = True) -> None:
    """The flags of ``edge run``, each overriding a ``DRIVESIGHT_EDGE_*`` setting; without ``source_flags``
    for a caller that brings its own source (``drivesight sim car``)."""
    run.add_argument("--vehicle-id", help="default: DRIVESIGHT_EDGE_VEHICLE_ID")
    run.add_argument("--mqtt-url", help="default: DRIVESIGHT_EDGE_MQTT_URL or mqtt://127.0.0.1:1883")
    run.add_argument("--state-dir", type=Path, help="outbox and consent; default DRIVESIGHT_EDGE_STATE_DIR")
    run.add_argument("--timezone", help="IANA zone of the car, for night rules")
    if not source_flags:
        return
    run.add_argument("--source", choices=["replay", "can", "obd"], help="default: DRIVESIGHT_EDGE_SOURCE")
    run.add_argument(
        "--file", dest="source_file", type=Path, help="replay: the recorded CSV or Parquet file; can: a"
        " recorded CAN log (.log, .asc, .blf) instead of the bus",
    )  # fmt: skip
    run.add_argument(
        "--mapping", dest="mapping_file", type=Path, help="replay/can: the column or DBC -> VSS mapping"
    )
    run.add_argument(
        "--dbc", dest="dbc_files", action="append", type=Path, help="can: a DBC file (repeatable), instead"
        " of the mapping's own",
    )  # fmt: skip
    run.add_argument("--can-interface", help="can: python-can interface (socketcan, virtual)")
    run.add_argument("--can-channel", help="can: the channel, e.g. can0 or vcan0")
    run.add_argument("--obd-port", help="obd: the adapter's serial port (default: scan)")


#: builds the signal source from the settings and the stop event (``drivesight sim car`` brings its own)
SourceFactory = Callable[[object, object], Iterable[SignalBlock]]


def run_agent(args: argparse.Namespace) -> int:
    """``edge run``: the agent until its source ends or it is stopped; the exit status of the run."""
    import threading

    from pydantic import ValidationError

    from .config import EdgeSettings
    from .protocol import format_validation_error
    from .runner import install_signal_handlers, run_vehicle

    overrides = {k: getattr(args, k) for k in _SETTING_FLAGS if getattr(args, k, None) is not None}
    try:
        settings = EdgeSettings(**overrides)
    except ValidationError as exc:
        log.error("edge settings refused: %s", format_validation_error(exc))
        return 2
    stop = threading.Event()
    install_signal_handlers(stop)
    factory: SourceFactory = getattr(args, "source_factory", None) or configured_source
    try:
        source = factory(settings, stop)
    except ValueError as exc:  # MappingError, ReplayError, a missing setting: a clear message, no traceback
        log.error("%s", exc)
        return 2
    return 0 if run_vehicle(settings, source, stop=stop) else 1


def configured_source(settings: object, stop: object) -> Iterable[SignalBlock]:
    """The signal source the settings name (``source`` and its ``source_file``/``mapping_file``/...)."""
    from .config import EdgeSettings

    assert isinstance(settings, EdgeSettings)
    if settings.source is None:
        raise ValueError("no signal source: set DRIVESIGHT_EDGE_SOURCE (replay, can, obd) or pass --source")
    kind = "can_log" if settings.source == "can" and settings.source_file is not None else settings.source
    ignored = [f for f in _IGNORED_BY[kind] if f in settings.model_fields_set]
    if ignored:
        named = ", ".join(
            f"{_FLAG_OF.get(f, '--' + f.replace('_', '-'))} (DRIVESIGHT_EDGE_{f.upper()})" for f in ignored
        )
        what = "a recorded CAN log" if kind == "can_log" else f"source {settings.source}"
        raise ValueError(f"{what} does not use {named}: remove it")
    if settings.source == "replay":
        from .sources.mapping import load_mapping
        from .sources.replay import ReplaySource

        if settings.source_file is None or settings.mapping_file is None:
            raise ValueError(
                "source replay needs a file and a mapping (DRIVESIGHT_EDGE_SOURCE_FILE and"
                " DRIVESIGHT_EDGE_MAPPING_FILE, or --file and --mapping)"
            )
        # the runner conditions every source the same way: the replay source does not do it a second time
        return ReplaySource(settings.source_file, load_mapping(settings.mapping_file), conditioned=False)
    if settings.source == "can":
        import can

        from .sources.can import CanLogSource, CanSource, load_can_mapping

        if settings.mapping_file is None:
            raise ValueError(
                "source can needs a DBC -> VSS mapping (DRIVESIGHT_EDGE_MAPPING_FILE or --mapping)"
            )
        mapping = load_can_mapping(settings.mapping_file, settings.dbc_files)
        if settings.source_file is not None:
            return CanLogSource(settings.source_file, mapping, stop=stop)  # type: ignore[arg-type]
        bus = can.Bus(interface=settings.can_interface, channel=settings.can_channel)
        return CanSource(bus, mapping, stop=stop)  # type: ignore[arg-type]
    from .sources.obd import ObdSource

    try:
        return ObdSource.open(settings.obd_port, stop=stop)
    except ConnectionError as exc:
        raise ValueError(str(exc)) from exc


def _replay(args: argparse.Namespace) -> int:
    import json
    import sys

    from .detectors import VehicleClass, thresholds_for
    from .offline import run_offline
    from .processing import Pipeline, conditioning_stages
    from .profiles import SensorProfile, parse_profile
    from .sources.can import CanLogSource, is_can_log, load_can_mapping
    from .sources.mapping import MappingError, load_mapping
    from .sources.replay import ReplayError, ReplaySource
    from .trips import TripSettings

    source: ReplaySource | CanLogSource
    blocks: Iterable[SignalBlock]
    try:
        profile = parse_profile(args.profile) if args.profile else None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if is_can_log(args.file):
            source = CanLogSource(args.file, load_can_mapping(args.mapping, args.dbc))
            # CAN signals come at their own rates, each frame a row: the car's conditioning and grid
            blocks = Pipeline(conditioning_stages()).run(source)
        elif args.dbc:
            raise MappingError(
                f"--dbc is for a CAN log ({', '.join(CAN_LOG_SUFFIXES)}); {args.file} is a table"
            )
        else:
            mapping = load_mapping(args.mapping)
            source = ReplaySource(args.file, mapping)
            blocks = source
            profile = profile or mapping.processing.profile
        profile = profile or SensorProfile.VEHICLE_BUS
        result = run_offline(
            blocks,
            trip_settings=TripSettings(trip_gap_s=args.trip_gap, timezone=args.timezone),
            thresholds=thresholds_for(
                VehicleClass(args.vehicle_class), speed_limit_kmh=args.speed_limit or None, profile=profile
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
        "profile": profile.value,
        "quality": source.report.as_dict(base.from_epoch if base else float),
        **({"can": source.stats.as_dict()} if isinstance(source, CanLogSource) else {}),
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
    if "can" in document:
        c = document["can"]
        print(
            f"CAN frames {c['frames']}: decoded {c['decoded']},"
            f" unmapped {c['unmapped']} ({c['unmapped_ids']} ids), other bus {c['other_channel']},"
            f" refused {c['refused']}"
        )
    print(f"sensor profile {profile.value}")
    for warning in q["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``drivesight-edge`` argument parser."""
    parser = command_parser("drivesight-edge", "the drivesight in-car edge agent")
    add_commands(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``drivesight-edge``: logs on stderr, results on stdout."""
    args = build_parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
