"""Fleet runner: many simulated vehicles, each driving a real edge agent that publishes over MQTT."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from edge_agent.agent import EdgeAgent, TelemetrySettings
from edge_agent.model_store import ModelStore
from edge_agent.outbox import Outbox
from edge_agent.protocol import BrokerAddress, ConsentState, EventKind
from edge_agent.signals import iter_blocks
from edge_agent.trips import TripSettings
from edge_agent.uplink import MqttUplink

from .personas import PersonaName
from .vehicle import Powertrain, SimulatedTrip, VehicleSpec, initial_state, simulate_day

MODELS = ("DS-Compact", "DS-Sedan", "DS-SUV", "DS-EV5")
BLOCK_SAMPLES = 600  # one minute at 10 Hz per block, as a car's agent would batch its ring buffer


def build_fleet(
    count: int, seed: int, *, prefix: str = "sim-", consent_rate: float = 1.0
) -> list[VehicleSpec]:
    """``count`` vehicles with personas in turn (so each persona is represented) and seeded attributes.

    Each owner grants each consent scope (telemetry, location, profiling) with probability ``consent_rate``.
    """
    rng = np.random.default_rng(seed)
    personas = list(PersonaName)
    specs = []
    for i in range(count):
        persona = personas[i % len(personas)]
        ev = bool(rng.random() < 0.3)
        grants = rng.random(3) < consent_rate
        specs.append(
            VehicleSpec(
                vehicle_id=f"{prefix}{i:04d}",
                persona=persona,
                powertrain=Powertrain.EV if ev else Powertrain.ICE,
                model="DS-EV5" if ev else str(rng.choice(MODELS[:3])),
                consent=ConsentState(
                    telemetry=bool(grants[0]), location=bool(grants[1]), profiling=bool(grants[2])
                ),
            )
        )
    return specs


def simulate_fleet(
    specs: Sequence[VehicleSpec],
    first_day: date,
    days: int,
    seed: int,
    *,
    on_vehicle: Callable[[], None] | None = None,
) -> dict[str, list[SimulatedTrip]]:
    """Every vehicle's trips over ``days`` local days; vehicle i draws from its own stream of ``seed``."""
    streams = np.random.SeedSequence(seed).spawn(len(specs))
    result: dict[str, list[SimulatedTrip]] = {}
    for spec, stream in zip(specs, streams, strict=True):
        rng = np.random.default_rng(stream)
        state = initial_state(spec, rng)
        trips: list[SimulatedTrip] = []
        for d in range(days):
            day_trips, state = simulate_day(spec, first_day + timedelta(days=d), state, rng)
            trips += day_trips
        result[spec.vehicle_id] = trips
        if on_vehicle:
            on_vehicle()
    return result


@dataclass
class FleetRun:
    """What the edge agents of a fleet sent."""

    messages_acknowledged: int = 0
    trips_sent: int = 0
    events_sent: int = 0
    samples: int = 0
    unflushed: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def drive_fleet(
    specs: Sequence[VehicleSpec],
    trips: dict[str, list[SimulatedTrip]],
    broker: BrokerAddress,
    outbox_dir: Path,
    *,
    telemetry: TelemetrySettings | None = None,
    concurrency: int = 4,
    flush_timeout_s: float = 60.0,
    on_samples: Callable[[int], None] | None = None,
    with_models: bool = True,
    confirmed: bool = False,
) -> FleetRun:
    """Run each vehicle's trips through its own edge agent, outbox and MQTT connection; wait for PUBACKs,
    and with ``confirmed`` for the ingest's receipts too (an ingest must be running)."""
    outbox_dir.mkdir(parents=True, exist_ok=True)
    run = FleetRun()

    def drive(spec: VehicleSpec) -> None:
        outbox = Outbox(outbox_dir / f"{spec.vehicle_id}.db", spec.vehicle_id)
        agent = EdgeAgent(
            outbox,
            trip_settings=TripSettings(timezone=spec.timezone),
            telemetry=telemetry,
            consent=spec.consent,
            models=ModelStore(outbox_dir / f"{spec.vehicle_id}-models") if with_models else None,
        )
        uplink = MqttUplink(outbox, broker, status_fields=agent.status_fields)
        uplink.start()
        samples = 0
        for block in iter_blocks((t.block for t in trips[spec.vehicle_id]), BLOCK_SAMPLES):
            agent.process(block)
            uplink.notify()
            samples += len(block)
            if on_samples:
                on_samples(len(block))
        agent.close_trip()
        flushed = uplink.flush(flush_timeout_s, confirmed=confirmed)
        uplink.stop()
        outbox.close()
        with run._lock:
            run.messages_acknowledged += uplink.acknowledged
            run.trips_sent += agent.trips_sent
            run.events_sent += agent.events_sent
            run.samples += samples
            if not flushed:
                run.unflushed.append(spec.vehicle_id)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(drive, spec) for spec in specs]:
            future.result()
    return run


def injected_counts(trips: Sequence[SimulatedTrip]) -> dict[EventKind, int]:
    """Ground-truth harsh events per kind over ``trips``."""
    counts: dict[EventKind, int] = {}
    for trip in trips:
        for event in trip.events:
            counts[event.kind] = counts.get(event.kind, 0) + 1
    return counts
