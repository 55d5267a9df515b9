"""A simulated population written as the CRM and online export files drivesight imports, and its trips
loaded as if the cars had sent them (binary-free COPY into ``trips``, for tests and benchmarks)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from .population import AIR_CONDITIONING, CATEGORIES, CHILD_LOCK, REAR_SEAT, Population

#: the order the files must be imported in (references point backwards)
IMPORT_ORDER = (
    "dealers",
    "customers",
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
        "customers": {
            k: c[k]
            for k in (
                "customer_id",
                "name",
                "phone",
                "email",
                "birth_year",
                "gender",
                "region",
                "city",
                "income_band",
                "education",
            )
        },
        "vehicles": dict(pop.vehicles),
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


def trip_rows(pop: Population) -> Any:
    """The population's trips as rows of the ``trips`` table (columns: :data:`TRIP_COLUMNS`)."""
    t = pop.trips
    vehicle_ids = pop.vehicles["vehicle_id"]
    for i in range(len(t["customer"])):
        start = datetime.fromtimestamp(float(t["started_at"][i]), UTC)
        end = datetime.fromtimestamp(float(t["started_at"][i] + t["duration_s"][i]), UTC)
        usage = {AIR_CONDITIONING: {"activations": 1, "active_s": round(float(t["ac_s"][i]), 1)}}
        if t["rear_seat_s"][i] > 0:
            usage[REAR_SEAT] = {"activations": 1, "active_s": round(float(t["rear_seat_s"][i]), 1)}
        if t["child_lock"][i]:
            usage[CHILD_LOCK] = {"activations": 1, "active_s": round(float(t["rear_seat_s"][i]), 1)}
        events = {k: int(t[k][i]) for k in ("harsh_brake", "harsh_accel", "harsh_corner") if t[k][i]}
        yield (
            vehicle_ids[t["vehicle"][i]],
            f"T{i:09d}",
            i,
            start,
            end,
            float(t["distance_km"][i]),
            float(t["duration_s"][i]),
            float(t["moving_s"][i]),
            float(t["idle_s"][i]),
            float(t["max_speed_kmh"][i]),
            float(t["avg_speed_kmh"][i]),
            float(t["night_share"][i]),
            _json(events),
            0,
            float(t["eco_score"][i]),
            _json(usage),
        )


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


def _json(value: dict[str, Any]) -> str:
    import json

    return json.dumps(value, separators=(",", ":"))


def load_trips(conn: Any, pop: Population) -> int:
    """COPY the population's trips into ``trips`` (the vehicles must exist); return how many."""
    n = 0
    with conn.cursor() as cur, cur.copy(f"COPY trips ({', '.join(TRIP_COLUMNS)}) FROM STDIN") as copy:
        for row in trip_rows(pop):
            copy.write_row(row)
            n += 1
    return n
