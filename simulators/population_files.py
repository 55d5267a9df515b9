"""A simulated population written as the CRM and online export files drivesight imports, and its trips
loaded as if the cars had sent them (binary-free COPY into ``trips``, for tests and benchmarks)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from cloud.analytics.imports import CustomerRow

from .population import AIR_CONDITIONING, CATEGORIES, CHILD_LOCK, REAR_SEAT, Population

#: the order the files must be imported in (references point backwards)
IMPORT_ORDER = (
    "dealers",
    "customers",
    "consent",
    "vehicles",
    "service_visits",
    "complaints",
    "accounts",
    "items",
    "interactions",
)


def _write(path: Path, columns: dict[str, Any]) -> Path:
    names = list(columns)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        writer.writerows(zip(*(np.asarray(columns[n]).astype(str) for n in names), strict=True))
    return path


def write_population_files(pop: Population, directory: Path) -> dict[str, Path]:
    """One CSV per import kind in ``directory``; return kind -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    c = pop.customers
    membership = pop.items["membership"]
    categories = [
        ";".join(f"{CATEGORIES[j]}:{row[j]:.3f}" for j in np.flatnonzero(row)) for row in membership
    ]
    files: dict[str, dict[str, Any]] = {
        "dealers": {k: pop.dealers[k] for k in ("dealer_id", "name", "region")},
        "customers": {k: c[k] for k in CustomerRow.model_fields if k in c},
        "consent": pop.consent,
        # the simulated market is in one time zone (campaigns keep quiet hours in the car's local time)
        "vehicles": {**pop.vehicles, "time_zone": np.full(len(pop.vehicles["vehicle_id"]), "Asia/Shanghai")},
        "service_visits": pop.service_visits,
        "complaints": {**pop.complaints, "resolved": np.where(pop.complaints["resolved"], "true", "false")},
        "accounts": pop.accounts,
        "items": {"item_id": pop.items["item_id"], "kind": pop.items["kind"], "categories": categories},
        "interactions": {
            **pop.interactions,
            "at": np.char.add(pop.interactions["at"].astype("datetime64[s]").astype(str), "Z"),
        },
    }
    return {kind: _write(directory / f"{kind}.csv", files[kind]) for kind in IMPORT_ORDER}


TRIP_COLUMNS = (
    "vehicle_id",
    "trip_id",
    "seq",
    "started_at",
    "ended_at",
    "distance_km",
    "duration_s",
    "moving_s",
    "idle_s",
    "max_speed_kmh",
    "avg_speed_kmh",
    "night_share",
    "event_counts",
    "samples",
    "eco_score",
    "feature_usage",
)


def _usage(t: dict[str, np.ndarray], rows: slice) -> np.ndarray:
    """feature_usage JSON per trip: A/C always, the rear seat and child lock when used."""
    ac = np.char.mod(f'{{"{AIR_CONDITIONING}": {{"activations": 1, "active_s": %.1f}}', t["ac_s"][rows])
    rear_s = np.char.mod("%.1f", t["rear_seat_s"][rows])
    rear = np.where(
        t["rear_seat_s"][rows] > 0,
        np.char.add(np.char.add(f', "{REAR_SEAT}": {{"activations": 1, "active_s": ', rear_s), "}"),
        "",
    )
    lock = np.where(
        t["child_lock"][rows],
        np.char.add(np.char.add(f', "{CHILD_LOCK}": {{"activations": 1, "active_s": ', rear_s), "}"),
        "",
    )
    return np.char.add(np.char.add(np.char.add(ac, rear), lock), "}")


def _events(t: dict[str, np.ndarray], rows: slice) -> np.ndarray:
    parts = [
        np.char.mod(f'"{kind}": %d', t[kind][rows]) for kind in ("harsh_brake", "harsh_accel", "harsh_corner")
    ]
    joined = np.char.add(np.char.add(np.char.add(np.char.add(parts[0], ", "), parts[1]), ", "), parts[2])
    return np.char.add(np.char.add("{", joined), "}")


def trips_copy_text(pop: Population, rows: slice) -> str:
    """A chunk of the population's trips as COPY text rows (tab-separated) for :data:`TRIP_COLUMNS`."""
    t = pop.trips
    start = t["started_at"][rows]
    index = np.arange(len(t["customer"]))[rows]
    stamp = (start * 1e6).astype("datetime64[us]").astype(str)
    end = ((start + t["duration_s"][rows]) * 1e6).astype("datetime64[us]").astype(str)
    columns = [
        pop.vehicles["vehicle_id"][t["vehicle"][rows]],
        np.char.mod("T%09d", index),
        index.astype(str),
        np.char.add(stamp, "+00"),
        np.char.add(end, "+00"),
        *(
            np.char.mod("%.4f", t[k][rows])
            for k in TRIP_COLUMNS[5:12]  # distance_km ... night_share
        ),
        _events(t, rows),
        np.full(len(index), "0"),
        np.char.mod("%.2f", t["eco_score"][rows]),
        _usage(t, rows),
    ]
    lines = columns[0]
    for column in columns[1:]:
        lines = np.char.add(np.char.add(lines, "\t"), column)
    return "\n".join(lines.tolist()) + "\n"


def load_trips(conn: Any, pop: Population, *, chunk: int = 200_000, progress: Any = None) -> int:
    """COPY the population's trips into ``trips`` (the vehicles must exist); return how many."""
    n = len(pop.trips["customer"])
    with conn.cursor() as cur, cur.copy(f"COPY trips ({', '.join(TRIP_COLUMNS)}) FROM STDIN") as copy:
        for lo in range(0, n, chunk):
            copy.write(trips_copy_text(pop, slice(lo, min(n, lo + chunk))))
            if progress:
                progress(min(n, lo + chunk), n)
    return n
