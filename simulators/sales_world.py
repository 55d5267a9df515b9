"""A simulated sales world for the forecasting work: monthly unit sales of several models in several regions.

Each (model, region) series has its own level, a yearly trend, a season (a shared market rhythm — the
spring and "golden September" peaks, the New Year dip — plus a model's own swing), promotions (campaign
months of a model with a lift in every region) and noise (log-normal on the rate, then Poisson counts).
The forecasting methods know nothing of the promotions: to them a campaign is noise, as an unannounced one
would be.

``write_sales_csv`` writes the ``--data`` file of ``drivesight cloud forecast``; ``load_sales_world`` writes
every unit as a purchase (with its car, customer and dealer) into a migrated database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from simulators.churn_world import copy_lines

#: the market's month-of-year rhythm (January first): the New Year dip, spring and autumn peaks
MARKET_SEASON = np.array([0.95, 0.75, 1.05, 1.05, 1.0, 0.95, 0.9, 0.95, 1.15, 1.1, 1.05, 1.1])
REGIONS = ("north", "east", "south", "west", "central", "northeast", "southwest")


@dataclass(frozen=True, slots=True)
class SalesWorld:
    """Units sold per model, region and month (``units[model, region, month]``), the campaign months of each
    model, and the expected units without noise (``rate``)."""

    first_month: date
    models: tuple[str, ...]
    regions: tuple[str, ...]
    units: np.ndarray
    rate: np.ndarray
    promotions: dict[str, list[int]]

    @property
    def months(self) -> int:
        """How many months the world runs."""
        return int(self.units.shape[2])

    def month(self, index: int) -> date:
        """The first day of a month index."""
        t = self.first_month.year * 12 + self.first_month.month - 1 + index
        return date(t // 12, t % 12 + 1, 1)


def simulate_sales_world(
    seed: int,
    *,
    models: int = 4,
    regions: int = 5,
    months: int = 60,
    first_month: date = date(2021, 1, 1),
    promotions_per_year: float = 2.0,
    lift: tuple[float, float] = (1.15, 1.4),
    noise: float = 0.08,
) -> SalesWorld:
    """``models`` x ``regions`` monthly series over ``months`` months from ``first_month``."""
    rng = np.random.default_rng(seed)
    names = tuple(f"DS-{i + 1:02d}" for i in range(models))
    places = (
        REGIONS[:regions] if regions <= len(REGIONS) else tuple(f"region-{j + 1:02d}" for j in range(regions))
    )
    t = np.arange(months)
    month_of_year = (first_month.month - 1 + t) % 12
    level = np.exp(rng.normal(3.6, 0.7, (models, regions)))  # about 37 units a month, from 9 to 150
    growth = rng.normal(0.04, 0.08, (models, 1, 1))  # per year, shared by a model's regions
    region_growth = rng.normal(0.0, 0.03, (1, regions, 1))
    trend = np.exp((growth + region_growth) * t[None, None, :] / 12)
    swing = rng.uniform(0.05, 0.25, (models, 1, 1))
    phase = rng.uniform(0, 12, (models, 1, 1))
    season = MARKET_SEASON[month_of_year][None, None, :] * (
        1 + swing * np.sin(2 * np.pi * (month_of_year[None, None, :] + phase) / 12)
    )
    promo = np.ones((models, 1, months))
    campaigns: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        chosen = np.flatnonzero(rng.random(months) < promotions_per_year / 12)
        campaigns[name] = [int(c) for c in chosen]
        promo[i, 0, chosen] = rng.uniform(*lift, len(chosen))
    rate = level[:, :, None] * trend * season * promo
    noisy = rate * np.exp(rng.normal(-(noise**2) / 2, noise, rate.shape))
    units = rng.poisson(noisy)
    return SalesWorld(first_month, names, places, units, rate, campaigns)


def write_sales_csv(world: SalesWorld, path: Path) -> int:
    """The world as the forecast command's ``--data`` file (``date,model,region,units``, a row per model,
    region and month, the date the month's first day); returns the rows written."""
    lines = ["date,model,region,units\n"]
    for i, model in enumerate(world.models):
        for j, region in enumerate(world.regions):
            for t in range(world.months):
                lines.append(f"{world.month(t).isoformat()},{model},{region},{int(world.units[i, j, t])}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return len(lines) - 1


def load_sales_world(
    conn: psycopg.Connection[Any],
    world: SalesWorld,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> int:
    """Every unit of the world as a purchase in a migrated database (COPY): a dealer per region, and per unit
    a customer, a car of the model and the purchase on a random day of its month. Every other car has no
    region of its own, so the dealer's region counts (as the forecast reads it). Returns the purchases."""
    say = progress or (lambda _m: None)
    rng = np.random.default_rng([seed, 7])
    stamp = datetime.combine(world.first_month, datetime.min.time(), tzinfo=UTC).isoformat()
    copy_lines(
        conn, "dealers", "dealer_id, name, region", [f"D-{r}\t{r} dealer\t{r}\n" for r in world.regions]
    )
    customers, vehicles, purchases = [], [], []
    n = 0
    for i, model in enumerate(world.models):
        for j, region in enumerate(world.regions):
            for t in range(world.months):
                first = world.month(t)
                days = (world.month(t + 1) - first).days
                for _ in range(int(world.units[i, j, t])):
                    n += 1
                    c, v = f"SC{n:08d}", f"SV{n:08d}"
                    day = first.replace(day=int(rng.integers(1, days + 1)))
                    own_region = region if n % 2 else "\\N"
                    customers.append(f"{c}\t{region}\n")
                    vehicles.append(f"{v}\t{stamp}\t{stamp}\t{c}\t{model}\t{own_region}\tD-{region}\n")
                    purchases.append(f"{v}\t{c}\tD-{region}\t{day.isoformat()}\n")
    copy_lines(conn, "customers", "customer_id, region", customers)
    copy_lines(
        conn, "vehicles", "vehicle_id, first_seen, last_seen, customer_id, model, region, dealer_id", vehicles
    )
    copy_lines(conn, "purchases", "vehicle_id, customer_id, dealer_id, purchased_at", purchases)
    say(f"{n} purchases loaded")
    return n
