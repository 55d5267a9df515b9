"""Labelled data made by the simulator and the real edge pipeline, so training sees exactly what cars compute.

Each simulated vehicle drives through its own :class:`~edge_agent.agent.EdgeAgent`; the features are taken
from the agent's trips and windows with the same functions the car uses. Held-out data are whole vehicles
the model never saw in training (a trip of a seen vehicle would leak its driver).

To train on real labelled data instead, write one CSV row per trip (or window) with the columns named in
``edge_agent.features`` plus ``label`` and pass it with ``drivesight models train NAME --data FILE.csv``.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from edge_agent.agent import EdgeAgent
from edge_agent.features import HEALTH_FEATURES, STYLE_FEATURES, health_features, style_features
from edge_agent.outbox import Outbox
from edge_agent.signals import SignalBlock, iter_blocks
from edge_agent.trips import TripAccumulator, TripSettings
from simulators.customers import CHURN_FEATURES, simulate_customers
from simulators.fleet import build_fleet, simulate_fleet
from simulators.vehicle import Powertrain, SimulatedTrip, VehicleSpec

FIRST_DAY = date(2026, 10, 5)
#: health windows from fault onset until the fault has developed are neither healthy nor clearly faulty
DEVELOPING_S = 300.0


@dataclass
class Dataset:
    """Features, labels and the vehicle each row came from (for splits by vehicle)."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    features: tuple[str, ...]
    description: str

    def split(self, held_out_share: float, seed: int) -> tuple[Dataset, Dataset]:
        """Train and held-out parts, by whole groups (vehicles)."""
        rng = np.random.default_rng(seed)
        groups = np.unique(self.groups)
        held = set(
            rng.choice(groups, size=max(1, round(len(groups) * held_out_share)), replace=False).tolist()
        )
        mask = np.array([g in held for g in self.groups])

        def part(m: np.ndarray) -> Dataset:
            return Dataset(self.X[m], self.y[m], self.groups[m], self.features, self.description)

        return part(~mask), part(mask)


def _drive(
    spec: VehicleSpec,
    trips: list[SimulatedTrip],
    on_trip: Callable[[TripAccumulator], None] | None = None,
    on_block: Callable[[SignalBlock], None] | None = None,
) -> None:
    outbox = Outbox(":memory:", "train", max_bytes=1 << 40)
    agent = EdgeAgent(
        outbox, trip_settings=TripSettings(timezone=spec.timezone), on_trip=on_trip, on_block=on_block
    )
    agent.run(iter_blocks((t.block for t in trips), 600))
    outbox.close()


def style_dataset(vehicles: int, days: int, seed: int) -> Dataset:
    """One row per trip: the trip's style features, labelled with the driver's persona."""
    specs = build_fleet(vehicles, seed, prefix="train-")
    fleet = simulate_fleet(specs, FIRST_DAY, days, seed)
    rows: list[np.ndarray] = []
    labels: list[str] = []
    groups: list[str] = []
    for spec in specs:

        def keep(trip: TripAccumulator, spec: VehicleSpec = spec) -> None:
            if trip.duration_s >= 60:
                rows.append(style_features(trip))
                labels.append(spec.persona.value)
                groups.append(spec.vehicle_id)

        _drive(spec, fleet[spec.vehicle_id], on_trip=keep)
    description = (
        f"simulator: {vehicles} vehicles (personas in turn) x {days} days from {FIRST_DAY}, seed {seed}"
    )
    return Dataset(np.vstack(rows), np.asarray(labels), np.asarray(groups), STYLE_FEATURES, description)


def health_dataset(vehicles: int, days: int, seed: int, fault_rate: float = 0.3) -> Dataset:
    """One row per one-minute window of combustion cars: 0 healthy, 1 faulty (developed), -1 developing."""
    specs = [
        VehicleSpec(
            s.vehicle_id, s.persona, Powertrain.ICE, s.model, health_fault_rate=fault_rate, fault_rate=0.0
        )
        for s in build_fleet(vehicles, seed, prefix="health-")
    ]
    fleet = simulate_fleet(specs, FIRST_DAY, days, seed)
    rows: list[np.ndarray] = []
    labels: list[int] = []
    groups: list[str] = []
    for spec in specs:
        trips = fleet[spec.vehicle_id]
        faults = [(tr.start, tr.end, tr.health_fault) for tr in trips]

        def keep(block: SignalBlock, spec: VehicleSpec = spec, faults: list = faults) -> None:  # type: ignore[type-arg]
            x = health_features(block)
            if x is None:
                return
            end = float(block.t[-1])
            label = 0
            for start, stop, fault in faults:
                if fault is not None and start <= end <= stop and end >= fault[1]:
                    label = 1 if end >= fault[1] + DEVELOPING_S else -1
            rows.append(x)
            labels.append(label)
            groups.append(spec.vehicle_id)

        _drive(spec, trips, on_block=keep)
    description = (
        f"simulator: {vehicles} combustion vehicles x {days} days from {FIRST_DAY}, seed {seed}; "
        "a trip develops "
        f"overheating, a charging fault or misfire with probability {fault_rate}; one-minute windows"
    )
    return Dataset(np.vstack(rows), np.asarray(labels), np.asarray(groups), HEALTH_FEATURES, description)


def read_labelled_csv(path: Path, features: tuple[str, ...]) -> Dataset:
    """Real labelled data: a ``label`` column, the feature columns, optionally a ``group`` column."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in (*features, "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks columns {missing}; it has {reader.fieldnames}")
        rows, labels, groups = [], [], []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append([float(row[f]) for f in features])
            except ValueError as exc:
                raise ValueError(f"{path} line {line}: {exc}") from None
            labels.append(row["label"])
            groups.append(row.get("group") or str(line))
    return Dataset(
        np.asarray(rows, dtype=np.float32), np.asarray(labels), np.asarray(groups), features, str(path)
    )


def churn_dataset(customers: int, seed: int) -> Dataset:
    """The churn training set from simulated customers; each customer is its own group."""
    X, y = simulate_customers(customers, seed)
    return Dataset(
        X,
        y.astype(str),
        np.arange(customers).astype(str),
        CHURN_FEATURES,
        f"simulator: {customers} customers, seed {seed}; churn drawn from a known logistic model",
    )
