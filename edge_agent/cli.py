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
