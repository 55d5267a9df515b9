"""``drivesight``: the developer's umbrella command for the demo and tools; each component registers its own
subcommands: ``edge`` (edge_agent.cli), ``cloud`` (cloud.cli), ``models`` (models.cli), ``sim`` and ``demo``
(here).

Deployed processes do not use it: a car runs ``drivesight-edge`` and the cloud image ``drivesight-cloud``,
which load no simulator code. The simulators package hosts the umbrella because it is the test harness, the
one package that may depend on every other (the layering contract in pyproject.toml).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import Any

from cloud import cli as cloud_cli
from edge_agent import cli as edge_cli
from edge_agent.protocol.conventions import command_parser, configure_logging
from edge_agent.signals import SignalBlock
from models import cli as models_cli

from .progress import Progress


def _sim_fleet(args: argparse.Namespace) -> int:
    from .fleet import build_fleet, injected_counts, simulate_fleet

    specs = build_fleet(args.vehicles, args.seed, prefix=args.prefix)
    trips = simulate_fleet(specs, date.fromisoformat(args.first_day), args.days, args.seed)
    for spec in specs:
        for trip in trips[spec.vehicle_id]:
            print(
                json.dumps(
                    {
                        "vehicle_id": spec.vehicle_id,
                        "persona": spec.persona.value,
                        "powertrain": spec.powertrain.value,
                        "start": trip.start,
                        "end": trip.end,
                        "samples": len(trip.block),
                        "distance_km": round(trip.distance_km, 3),
                        "idle_s": round(trip.idle_s, 1),
                        "events": {k.value: n for k, n in injected_counts([trip]).items()},
                    }
                )
            )
    return 0


def _sim_car(args: argparse.Namespace) -> int:
    """One simulated car through the real edge agent; its driver answers pushes with the response model
    (simulators/push_world.py): displayed, then opened or dismissed, sometimes converted."""
    import threading
    import time

    import numpy as np
    from pydantic import ValidationError

    from edge_agent.config import EdgeSettings
    from edge_agent.protocol import format_validation_error
    from edge_agent.runner import install_signal_handlers, run_vehicle

    from .population import CATEGORIES
    from .push_world import RespondingDriver
    from .vehicle import simulated_drive

    overrides = {
        k: getattr(args, k)
        for k in ("vehicle_id", "mqtt_url", "state_dir", "timezone")
        if getattr(args, k, None) is not None
    }
    try:
        settings = EdgeSettings(**overrides)
    except ValidationError as exc:
        print(f"edge settings refused: {format_validation_error(exc)}", file=sys.stderr)
        return 2
    zone = args.timezone or "Asia/Shanghai"
    rng = np.random.default_rng(args.seed)
    # the driver's hidden taste, as the simulated population draws it
    driver = RespondingDriver(rng.dirichlet(np.full(len(CATEGORIES), 0.5)), rng, zone=zone)
    stop = threading.Event()
    install_signal_handlers(stop)

    def source() -> Iterable[SignalBlock]:
        yield from simulated_drive(
            settings.vehicle_id or "sim", args.persona, days=args.days, seed=args.seed, timezone=zone
        )
        # then parked but online for --stay seconds: an empty block a second, so the agent's loop keeps
        # handling the downlink (pushes) between blocks
        until = time.monotonic() + args.stay
        while time.monotonic() < until and not stop.wait(1.0):
            yield SignalBlock(np.array([time.time()]), {})

    return 0 if run_vehicle(settings, source(), display=driver, stop=stop) else 1


def _sim_population(args: argparse.Namespace) -> int:
    from .population import PERSONA_TAGS, simulate_population
    from .population_files import IMPORT_ORDER, load_trips, write_population_files

    pop = simulate_population(args.customers, args.seed, days=args.days)
    files = write_population_files(pop, args.out)
    truth = args.out / "ground_truth.csv"
    with truth.open("w", encoding="utf-8") as f:
        f.write("customer_id,persona,weekend_traveller,family_use\n")
        for i, customer in enumerate(pop.customers["customer_id"]):
            f.write(
                f"{customer},{pop.truth['persona'][i]},{bool(pop.truth['weekend_traveller'][i])},"
                f"{bool(pop.truth['family_use'][i])}\n"
            )
    customers, trips = len(pop.customers["customer_id"]), len(pop.trips["customer"])
    report: dict[str, Any] = {
        "customers": customers, "trips": trips, "out": str(args.out),
        "files": {k: str(files[k]) for k in IMPORT_ORDER}, "ground_truth": str(truth), "imported": None,
    }  # fmt: skip
    if not args.json:
        print(f"{customers} customers, {trips} trips; files in {args.out}")
        print("import in this order: " + " ".join(f"{k}={files[k].name}" for k in IMPORT_ORDER))
        print(f"ground truth (personas behind the tags {', '.join(PERSONA_TAGS)}): {truth}")
    if args.load:
        import psycopg

        from cloud.analytics.imports import import_file
        from cloud.config import CloudSettings

        imported: dict[str, int] = {}
        with psycopg.connect(CloudSettings().require_database_url(), autocommit=True) as conn:
            for kind in IMPORT_ORDER:
                imported[kind] = import_file(conn, kind, files[kind]).imported
                progress_line = f"{kind}: {imported[kind]} rows imported"
                print(progress_line, file=sys.stderr if args.json else sys.stdout)
            with conn.transaction():
                imported["trips"] = load_trips(conn, pop)
        report["imported"] = imported
        if not args.json:
            print(f"{imported['trips']} trips loaded")
    if args.json:
        print(json.dumps(report))
    return 0


def _sim_sensors(args: argparse.Namespace) -> int:
    """A realistic sensor recording of a simulated drive: CSV + replay mapping + labels (+ candump, DBC and
    CAN mapping). The seed goes to stderr first, so whatever happens next can be reproduced."""
    import os
    from collections import Counter

    from .sensors import SensorProfile, render, simulate_truth

    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big") >> 1
    print(f"seed {seed} (reproduce with --seed {seed})", file=sys.stderr)
    profile = SensorProfile(args.profile)
    problem = None
    if args.candump and profile is not SensorProfile.VEHICLE_BUS:
        problem = f"--candump writes the car's bus: it needs --profile vehicle-bus, not {profile.value}"
    elif args.dbc_out is not None and not args.candump:
        problem = "--dbc-out is where --candump writes its DBC: give --candump too"
    elif not 1.0 <= args.rate <= 200.0:
        problem = f"--rate must be between 1 and 200 Hz, got {args.rate:g}"
    elif args.minutes <= 0:
        problem = f"--minutes must be positive, got {args.minutes:g}"
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        truth = simulate_truth(
            seed, minutes=args.minutes, calm_only=args.calm_only, peak_range=tuple(args.event_peak)
        )
        recording = render(truth, profile, args.rate, seed)
        csv_path, mapping_path = recording.write_csv(args.out)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "seed": seed, "profile": profile.value, "rate_hz": args.rate, "minutes": args.minutes,
        "samples": int(recording.t.size), "labels": len(recording.labels),
        "labels_by_kind": dict(sorted(Counter(e.kind for e in recording.labels).items())),
        "calm_s": round(sum(b - a for a, b in recording.calm), 1),
        "csv": str(csv_path), "mapping": str(mapping_path),
        "labels_file": str(csv_path.with_suffix(".labels.json")),
    }  # fmt: skip
    if args.candump:
        from .candump import write_candump

        try:
            files = write_candump(recording, csv_path.with_suffix(".log"), dbc_path=args.dbc_out)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        report |= {"candump": str(files.log), "dbc": str(files.dbc), "can_mapping": str(files.mapping)}
        report["frames"] = files.frames
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{recording.describe()}: {report['samples']} samples, {report['labels']} labelled events")
    print(f"replay: drivesight-edge replay {csv_path} --mapping {mapping_path}")
    if args.candump:
        print(f"replay the bus: drivesight-edge replay {report['candump']} --mapping {report['can_mapping']}")
    print(f"labels: {report['labels_file']}")
    return 0


class _RichProgress(Progress):
    """Draws the demo's phases as rich progress bars."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bars

        self.console = Console(stderr=True)
        self.progress = Bars(
            TextColumn("{task.description:<34}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
        )
        self.progress.start()

    def phase(self, name: str, total: float | None = None) -> Callable[[float], None]:
        task = self.progress.add_task(name, total=total)
        return lambda step: self.progress.advance(task, step)

    def note(self, text: str) -> None:
        self.progress.console.log(text)

    def stop(self) -> None:
        self.progress.stop()


def _print_summary(summary: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    overview = Table(title="drivesight demo", show_header=False)
    for key in (
        "database", "broker", "vehicles", "samples", "messages_acknowledged", "messages_stored",
        "trips_simulated", "trips_stored", "harsh_events_injected", "harsh_events_stored", "telemetry_rows",
        "rollup_hours", "dead_letters", "api_trips_checked", "seconds",
    ):  # fmt: skip
        overview.add_row(key.replace("_", " "), str(getattr(summary, key)))
    overview.add_row("events by kind", ", ".join(f"{k} {n}" for k, n in summary.events_by_kind.items()))
    console.print(overview)
    personas = Table(title="by persona: harsh events per 100 km, and the car's driving-style model")
    for column in ("persona", "cars", "km", "harsh", "/100 km", "injected", "style ok"):
        personas.add_column(column, justify="left" if column == "persona" else "right")
    for name, row in summary.by_persona.items():
        personas.add_row(
            name, str(row["vehicles"]), f"{row['km']:.1f}", str(row["harsh_events"]),
            f"{row['harsh_per_100km']:.2f}", str(row["injected"]),
            f"{round(row['style_accuracy'] * row['styled_trips'])}/{row['styled_trips']}",
        )  # fmt: skip
    console.print(personas)


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    progress = _RichProgress()
    try:
        summary = run_demo(
            vehicles=args.vehicles,
            days=args.days,
            seed=args.seed,
            telemetry=not args.no_telemetry,
            progress=progress,
        )
    finally:
        progress.stop()
    if args.json:
        print(json.dumps(summary.as_dict()))
    else:
        _print_summary(summary)
    complete = summary.messages_stored == summary.messages_acknowledged
    if not complete:
        print(
            f"incomplete: {summary.messages_stored} of {summary.messages_acknowledged} messages stored",
            file=sys.stderr,
        )
    return 0 if complete else 1


def build_parser() -> argparse.ArgumentParser:
    """The full ``drivesight`` argument parser."""
    parser = command_parser("drivesight", __doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    edge_cli.register(sub)
    cloud_cli.register(sub)
    models_cli.register(sub)
    sim = sub.add_parser("sim", help="simulators: vehicles, drivers")
    sim_sub = sim.add_subparsers(dest="sim_command", required=True)
    fleet = sim_sub.add_parser(
        "fleet", help="print a simulated fleet's trips with ground truth, one JSON line each"
    )
    fleet.add_argument("--vehicles", type=int, default=8)
    fleet.add_argument("--days", type=int, default=1)
    fleet.add_argument("--seed", type=int, default=7)
    fleet.add_argument("--first-day", default="2026-11-02")
    fleet.add_argument("--prefix", default="sim-")
    fleet.set_defaults(handler=_sim_fleet)
    car = sim_sub.add_parser(
        "car",
        help="one simulated car: a simulated driver through the real edge agent, publishing to a broker;"
        " pushes it receives are answered like a customer would (displayed, opened/dismissed, converted)",
    )
    edge_cli.add_run_arguments(car, source_flags=False)
    car.add_argument("--persona", default="calm_commuter", help="the simulated driver")
    car.add_argument("--days", type=int, default=1, help="simulated days, ending yesterday")
    car.add_argument("--seed", type=int, default=1, help="random seed (the drive and the driver's taste)")
    car.add_argument(
        "--stay", type=float, default=0.0, help="seconds to stay online after the drive, answering pushes"
    )
    car.set_defaults(handler=_sim_car)
    population = sim_sub.add_parser(
        "population",
        help="write a simulated population's CRM and online files and ground truth (for analytics import)",
    )
    population.add_argument("--customers", type=int, default=1000)
    population.add_argument("--days", type=int, default=60)
    population.add_argument("--seed", type=int, default=11)
    population.add_argument("--out", type=Path, required=True, help="directory for the CSV files")
    population.add_argument(
        "--load",
        action="store_true",
        help="also import the files into DRIVESIGHT_DATABASE_URL and load the trips as if the cars sent them",
    )
    population.add_argument("--json", action="store_true", help="one JSON document on stdout")
    population.set_defaults(handler=_sim_population)
    sensors = sim_sub.add_parser(
        "sensors",
        help="a realistic sensor recording of a simulated drive (car bus, phone or aftermarket IMU): CSV,"
        " replay mapping and labelled events; with --candump also a candump log, its DBC and a CAN mapping",
    )
    sensors.add_argument("--profile", choices=["vehicle-bus", "phone", "aftermarket-imu"], default="phone")
    sensors.add_argument("--rate", type=float, default=50.0, help="sample rate, Hz (default 50)")
    sensors.add_argument("--minutes", type=float, default=20.0, help="length of the drive (default 20)")
    sensors.add_argument("--seed", type=int, help="random seed (default: a new one, printed on stderr)")
    sensors.add_argument("--out", type=Path, required=True, help="directory for the files")
    sensors.add_argument("--calm-only", action="store_true", help="no harsh manoeuvres (for false alarms)")
    sensors.add_argument(
        "--event-peak", nargs=2, type=float, default=(2.5, 4.0), metavar=("LOW", "HIGH"),
        help="range of manoeuvre peaks, m/s^2 (default 2.5 4.0: near the thresholds)",
    )  # fmt: skip
    sensors.add_argument(
        "--candump", action="store_true", help="also a candump .log through a DBC (vehicle-bus)"
    )
    sensors.add_argument(
        "--dbc-out", type=Path, help="where --candump writes the DBC (default: beside the log)"
    )
    sensors.add_argument("--json", action="store_true", help="one JSON document on stdout")
    sensors.set_defaults(handler=_sim_sensors)
    demo = sub.add_parser("demo", help="run the whole pipeline on this machine and print a summary")
    demo.add_argument("--vehicles", type=int, default=20)
    demo.add_argument("--days", type=int, default=1)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--no-telemetry", action="store_true")
    demo.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``drivesight`` command."""
    args = build_parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    if args.command == "cloud":
        return cloud_cli.run_handler(args)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
