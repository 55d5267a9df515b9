"""Customers who answer pushes: a catalogue consistent with the simulated population, a response model
driven by each customer's hidden category preferences, and a harness that runs a campaign end to end through
the real engine, broker path, ingest and measurement.

**Catalogue** (:func:`make_catalogue`): ``n_items`` items of the campaign kinds (offer, test_drive, accessory,
service_package, insurance, charging_plan, ota_feature), each with a main category of the population's
(:data:`simulators.population.CATEGORIES`, membership 0.7-1.0) and, for half of them, a second one
(0.1-0.4); tags (its categories and kind); charging plans target the EV model, a tenth of the rest one
region; a cost per send (0.02-0.10) and a value per conversion (by kind). Each item has a hidden ``appeal``
(N(0, ``appeal_sd``)): some offers are simply better for everyone, which is what a popularity ranking finds.

**Response model** (:class:`ResponseModel`), for customer ``c`` and item ``i`` with preference vector
``p_c`` (sums to 1) and memberships ``m_i``:

- affinity ``a = p_c · m_i`` (about 0.12 for a random item, 0.4-0.9 for the customer's best);
- noise ``e ~ N(0, noise_sd)`` per push, in both logits below;
- a push reaches the car unless the car is offline past the expiry (``offline_share``: ``expired``);
  otherwise ``delivered`` and ``displayed``;
- ``P(open) = sigmoid(open_base + open_affinity·a + appeal_weight·appeal_i + e) · night_factor^[local hour in
  21:00-07:00] · fatigue^(pushes in the last 7 days)``; not opened: ``dismissed`` with probability
  ``dismiss_share``, else nothing more (the driver ignored it);
- opened: ``P(convert) = push_effect · sigmoid(convert_base + convert_affinity·a + appeal_weight·appeal_i
  + e)``, reported from the car as ``converted`` and recorded by the CRM (a ``conversions`` row);
- organic purchases, with or without any push, for everyone (holdout included): over a window of ``days``,
  ``P(c buys i) = organic_rate · days / 14 · w_ci / (mean over customers of Σ_j w_cj)`` with
  ``w_ci = exp(organic_affinity·a_ci + appeal_weight·appeal_i)`` over the items targeted at the customer's
  car — so about ``organic_rate`` of customers buy something in 14 days, mostly what they like.

Defaults (below) give, on the default population, CTRs of roughly 0.45 (personalized) / 0.3 (popular) /
0.2 (random) and push-induced conversion of about 8 / 4 / 2 % of the treated against 3 % organic. With
``push_effect = 0`` a push changes nothing a customer buys: every measured uplift must be noise.

**Harness** (:func:`load_world`, :func:`run_simulated_campaign`): the population's files through
``cloud.analytics.imports.import_file``, cars' time zones (Asia/Shanghai for most, a few unknown), the
analytics run (portraits, preferences), the catalogue and ninety days of organic history as ``catalogue``
and ``conversions`` imports; then a campaign created and launched through cloud/push, every sent push turned
into the car's feedback (``FeedbackV1`` through ``cloud.ingest.store.store_batch``, the ingest's own write
path) and the window's organic and push-induced conversions imported, and ``campaign_results`` returned.
Everything is seeded (numpy ``Generator``).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from edge_agent.protocol import FeedbackV1, PushAction, PushV1, decode, encode, uplink_topic

from .population import CATEGORIES, REGIONS, Population

log = logging.getLogger(__name__)

#: the catalogue kinds a campaign offers (cloud/analytics/imports.py CatalogueRow, minus articles)
CATALOGUE_KINDS = (
    "offer",
    "test_drive",
    "accessory",
    "service_package",
    "insurance",
    "charging_plan",
    "ota_feature",
)
#: value per conversion by kind (currency units): a test drive is worth less than an insurance contract
_VALUE = {
    "offer": (200, 2000),
    "test_drive": (50, 300),
    "accessory": (100, 1500),
    "service_package": (300, 1200),
    "insurance": (800, 4000),
    "charging_plan": (300, 900),
    "ota_feature": (50, 500),
}
EV_MODEL = "DS-EV5"
#: the zone most simulated cars are registered in (the population's local time is UTC+8)
DEFAULT_ZONE = "Asia/Shanghai"
URL_PREFIX = "https://drivesight.example/offers/"


@dataclass(frozen=True)
class Catalogue:
    """Catalogue items as arrays (by index), with the hidden appeal the response model uses."""

    item_ids: np.ndarray
    kinds: np.ndarray
    membership: np.ndarray  # items x len(CATEGORIES)
    target_models: tuple[tuple[str, ...], ...]
    target_regions: tuple[tuple[str, ...], ...]
    cost_per_send: np.ndarray
    value_per_conversion: np.ndarray
    appeal: np.ndarray

    def __len__(self) -> int:
        return len(self.item_ids)

    def index(self) -> dict[str, int]:
        """Item id -> index."""
        return {str(i): k for k, i in enumerate(self.item_ids)}

    def eligible(self, models: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """customers x items: is the item targeted at the customer's car model and region."""
        out = np.ones((len(models), len(self)), dtype=bool)
        for k in range(len(self)):
            if self.target_models[k]:
                out[:, k] &= np.isin(models, self.target_models[k])
            if self.target_regions[k]:
                out[:, k] &= np.isin(regions, self.target_regions[k])
        return out


def make_catalogue(rng: np.random.Generator, n_items: int = 40, *, appeal_sd: float = 0.6) -> Catalogue:
    """A catalogue consistent with the population (see the module docstring)."""
    c = len(CATEGORIES)
    main = np.arange(n_items) % c
    membership = np.zeros((n_items, c))
    membership[np.arange(n_items), main] = rng.uniform(0.7, 1.0, n_items)
    second = (main + rng.integers(1, c, n_items)) % c
    has_second = rng.random(n_items) < 0.5
    membership[np.flatnonzero(has_second), second[has_second]] = rng.uniform(0.1, 0.4, has_second.sum())
    # the kind follows the main category where one fits (an electric item is a charging plan, ...)
    fitting = {"electric": "charging_plan", "maintenance": "service_package", "technology": "ota_feature"}
    kinds = np.array(
        [
            fitting.get(CATEGORIES[m], CATALOGUE_KINDS[int(rng.integers(0, len(CATALOGUE_KINDS)))])
            if rng.random() < 0.7
            else CATALOGUE_KINDS[int(rng.integers(0, len(CATALOGUE_KINDS)))]
            for m in main
        ]
    )
    models: list[tuple[str, ...]] = []
    regions: list[tuple[str, ...]] = []
    for k in range(n_items):
        models.append((EV_MODEL,) if kinds[k] == "charging_plan" else ())
        regions.append((REGIONS[int(rng.integers(0, len(REGIONS)))],) if rng.random() < 0.1 else ())
    value = np.array([rng.uniform(*_VALUE[str(k)]) for k in kinds]).round(2)
    return Catalogue(
        item_ids=np.array([f"K{k:04d}" for k in range(n_items)]),
        kinds=kinds,
        membership=membership,
        target_models=tuple(models),
        target_regions=tuple(regions),
        cost_per_send=rng.uniform(0.02, 0.10, n_items).round(4),
        value_per_conversion=value,
        appeal=rng.normal(0.0, appeal_sd, n_items),
    )


def write_catalogue(catalogue: Catalogue, path: Path) -> Path:
    """The catalogue as a ``catalogue`` import file (CSV)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            ["item_id", "kind", "title", "body", "url", "category", "tags", "target_models",
             "target_regions", "cost_per_send", "value_per_conversion", "categories"]
        )  # fmt: skip
        for k, item in enumerate(catalogue.item_ids):
            row = catalogue.membership[k]
            cats = [CATEGORIES[j] for j in np.argsort(-row) if row[j] > 0]
            w.writerow(
                [
                    item,
                    catalogue.kinds[k],
                    f"{cats[0].title()} {str(catalogue.kinds[k]).replace('_', ' ')} {item}",
                    f"A {catalogue.kinds[k]} for {' and '.join(cats)} lovers",
                    URL_PREFIX + str(item),
                    cats[0],
                    ";".join([*cats, str(catalogue.kinds[k])]),
                    ";".join(catalogue.target_models[k]),
                    ";".join(catalogue.target_regions[k]),
                    catalogue.cost_per_send[k],
                    catalogue.value_per_conversion[k],
                    ";".join(f"{CATEGORIES[j]}:{row[j]:.3f}" for j in np.flatnonzero(row)),
                ]
            )
    return path


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-x))
    return out


@dataclass(frozen=True)
class Responses:
    """What each car reported for its push (boolean arrays, one entry per push)."""

    expired: np.ndarray
    displayed: np.ndarray
    opened: np.ndarray
    dismissed: np.ndarray
    converted: np.ndarray

    def actions(self, k: int) -> list[PushAction]:
        """The feedback of push ``k`` in the order the car sends it."""
        if self.expired[k]:
            return [PushAction.EXPIRED]
        out = [PushAction.DELIVERED, PushAction.DISPLAYED]
        if self.opened[k]:
            out.append(PushAction.OPENED)
        elif self.dismissed[k]:
            out.append(PushAction.DISMISSED)
        if self.converted[k]:
            out.append(PushAction.CONVERTED)
        return out


@dataclass(frozen=True)
class ResponseModel:
    """How customers answer pushes and buy without them (formulas in the module docstring)."""

    open_base: float = -1.6
    open_affinity: float = 4.0
    appeal_weight: float = 1.0
    night_factor: float = 0.5
    fatigue: float = 0.8
    dismiss_share: float = 0.7
    convert_base: float = -2.8
    convert_affinity: float = 4.0
    push_effect: float = 1.0
    organic_rate: float = 0.03
    organic_affinity: float = 4.0
    noise_sd: float = 0.3
    offline_share: float = 0.03

    def without_push_effect(self) -> ResponseModel:
        """The same customers, whom a push never makes buy anything."""
        return replace(self, push_effect=0.0)

    @staticmethod
    def affinity(preference: np.ndarray, membership: np.ndarray) -> np.ndarray:
        """Row-wise ``preference · membership`` (one customer and item per row)."""
        out: np.ndarray = np.einsum("ij,ij->i", preference, membership)
        return out

    def respond(
        self,
        rng: np.random.Generator,
        affinity: np.ndarray,
        appeal: np.ndarray,
        local_hour: np.ndarray,
        recent_pushes: np.ndarray,
    ) -> Responses:
        """Draw the car's feedback for pushes with these affinities, item appeals, local hours (0-23) and
        the customers' pushes in the last 7 days."""
        n = len(affinity)
        noise = rng.normal(0.0, self.noise_sd, n)
        night = (local_hour >= 21) | (local_hour < 7)
        p_open = _sigmoid(
            self.open_base + self.open_affinity * affinity + self.appeal_weight * appeal + noise
        )
        p_open = p_open * np.where(night, self.night_factor, 1.0) * self.fatigue ** np.asarray(recent_pushes)
        expired = rng.random(n) < self.offline_share
        displayed = ~expired
        opened = displayed & (rng.random(n) < p_open)
        dismissed = displayed & ~opened & (rng.random(n) < self.dismiss_share)
        p_convert = self.push_effect * _sigmoid(
            self.convert_base + self.convert_affinity * affinity + self.appeal_weight * appeal + noise
        )
        converted = opened & (rng.random(n) < p_convert)
        return Responses(expired, displayed, opened, dismissed, converted)

    def organic(
        self,
        rng: np.random.Generator,
        preference: np.ndarray,
        catalogue: Catalogue,
        eligible: np.ndarray,
        days: float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Organic purchases over ``days``: (customer index, item index) arrays, at most one per pair."""
        aff = preference @ catalogue.membership.T
        w = np.exp(self.organic_affinity * aff + self.appeal_weight * catalogue.appeal[None, :]) * eligible
        scale = self.organic_rate * days / 14.0 / max(float(w.sum(axis=1).mean()), 1e-12)
        hit = rng.random(w.shape) < np.minimum(w * scale, 1.0)
        customers, items = np.nonzero(hit)
        return customers, items


# ---------------------------------------------------------------------------------------------------------
# the harness


@dataclass
class World:
    """A population loaded into a database, with its catalogue and what the simulation needs to answer."""

    population: Population
    catalogue: Catalogue
    model: ResponseModel
    #: customer id -> row of the population
    customer_index: dict[str, int]
    item_index: dict[str, int]
    models: np.ndarray
    regions: np.ndarray
    eligible: np.ndarray
    seq: int = 0
    history: dict[str, float] = field(default_factory=dict)

    def next_seqs(self, n: int) -> np.ndarray:
        """``n`` fresh feedback seqs (unique per world, so no car's (vehicle, seq) repeats)."""
        out = np.arange(self.seq + 1, self.seq + n + 1)
        self.seq += n
        return out


def load_world(
    conn: psycopg.Connection[Any],
    database_url: str,
    population: Population,
    directory: Path,
    *,
    now: datetime,
    seed: int,
    n_items: int = 40,
    model: ResponseModel | None = None,
    unknown_zone_share: float = 0.02,
    history_days: float = 90.0,
    bulk_interactions: bool = False,
    progress: Callable[[str], None] | None = None,
) -> World:
    """Import the population (customers, consent, cars with time zones, accounts, items, interactions), run
    the analytics, import the catalogue and ``history_days`` of organic purchases before ``now``.

    ``bulk_interactions`` copies the online interactions straight into their table instead of through the
    validating importer (5.5 million lines at 100,000 customers: minutes of validation a benchmark of
    campaigns does not measure)."""
    from cloud.analytics.config import load_config
    from cloud.analytics.imports import import_file
    from cloud.analytics.run import run_analytics

    from .population_files import IMPORT_ORDER, write_population_files

    say = progress or (lambda _m: None)
    rng = np.random.default_rng([seed, 8])
    model = model or ResponseModel()
    directory.mkdir(parents=True, exist_ok=True)
    files = write_population_files(population, directory)
    seconds: dict[str, float] = {}
    for kind in IMPORT_ORDER:
        if kind in ("service_visits", "complaints"):
            continue  # nothing a campaign reads
        started = datetime.now(UTC)
        if kind == "interactions" and bulk_interactions:
            with files[kind].open(encoding="utf-8") as f, conn.cursor() as cur:
                header = f.readline().strip()
                # through a staging table: a line twice is stored once, as the importer does
                cur.execute("CREATE TEMP TABLE interactions_bulk (LIKE interactions INCLUDING DEFAULTS)")
                with cur.copy(f"COPY interactions_bulk ({header}) FROM STDIN WITH (FORMAT csv)") as copy:
                    while chunk := f.read(1 << 20):
                        copy.write(chunk)
                cur.execute(
                    f"INSERT INTO interactions ({header}) SELECT {header} FROM interactions_bulk"
                    " ON CONFLICT DO NOTHING; DROP TABLE interactions_bulk"
                )
        else:
            import_file(conn, kind, files[kind])
        seconds[kind] = (datetime.now(UTC) - started).total_seconds()
        say(f"imported {kind} in {seconds[kind]:.1f} s")
    # cars' time zones come from master data (the population's file gives most); a few are unknown, and
    # campaigns hold those (never guessed)
    vehicles = population.vehicles["vehicle_id"]
    unknown = [str(v) for v in vehicles[rng.random(len(vehicles)) < unknown_zone_share]]
    conn.execute(
        "UPDATE vehicles SET time_zone = CASE WHEN vehicle_id = ANY(%s) THEN NULL"
        " ELSE coalesce(time_zone, %s) END",
        (unknown, DEFAULT_ZONE),
    )
    run_analytics(database_url, load_config(), full=True, seed=seed)
    say("analytics run")
    catalogue = make_catalogue(rng, n_items)
    import_file(conn, "catalogue", write_catalogue(catalogue, directory / "catalogue.csv"))
    world = World(
        population,
        catalogue,
        model,
        {str(c): i for i, c in enumerate(population.customers["customer_id"])},
        catalogue.index(),
        np.asarray(population.vehicles["model"]).astype(str),
        np.asarray(population.vehicles["region"]).astype(str),
        catalogue.eligible(
            np.asarray(population.vehicles["model"]).astype(str),
            np.asarray(population.vehicles["region"]).astype(str),
        ),
    )
    # organic purchases before the campaigns: what the popularity ranking and the learned models learn from
    who, what = model.organic(rng, population.truth["preference"], catalogue, world.eligible, history_days)
    start = now - timedelta(days=history_days)
    at = [start + timedelta(seconds=float(s)) for s in rng.uniform(0, history_days * 86400 - 60, len(who))]
    import_conversions(conn, world, who, what, at, directory / "history.csv")
    say(f"{len(who)} organic purchases in the {history_days:.0f} days before")
    conn.execute("ANALYZE")
    return world


def import_conversions(
    conn: psycopg.Connection[Any],
    world: World,
    customers: np.ndarray,
    items: np.ndarray,
    at: Sequence[datetime] | np.ndarray,
    path: Path,
) -> int:
    """Write and import a ``conversions`` file (the CRM's record of purchases); return the rows."""
    from cloud.analytics.imports import import_file

    ids = world.population.customers["customer_id"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["customer_id", "item_id", "at", "value"])
        for c, i, t in zip(customers.tolist(), items.tolist(), at, strict=True):
            w.writerow(
                [ids[c], world.catalogue.item_ids[i], t.isoformat(), world.catalogue.value_per_conversion[i]]
            )
    if len(customers) == 0:
        return 0
    return import_file(conn, "conversions", path).imported


def everyone(campaign_id: str, arms: list[dict[str, Any]], now: datetime, **changes: Any) -> dict[str, Any]:
    """A campaign document for the whole population (every region), starting an hour before ``now``."""
    spec: dict[str, Any] = {
        "campaign_id": campaign_id,
        "name": f"simulated {campaign_id}",
        "audience": {"where": {"attr": "region", "op": "in", "value": list(REGIONS)}},
        "arms": arms,
        "holdout_share": 0.2,
        "starts_at": (now - timedelta(hours=1)).isoformat(),
        "ends_at": (now + timedelta(days=7)).isoformat(),
        # simulated campaigns follow each other quickly; the caps are not what is measured here
        "caps": {"per_day": 50, "per_week": 200},
        "attribution_days": 14,
    }
    spec.update(changes)
    return spec


#: the three arms of the recommender comparison the issue asks for
COMPARISON_ARMS = [
    {"name": "personalized", "content": {"recommended": "personalized"}},
    {"name": "relevance", "content": {"recommended": "popularity"}},
    {"name": "random", "content": {"recommended": "random"}},
]


def in_process_sender(outgoing: Sequence[Any]) -> set[str]:
    """A sender for pure-simulation runs: every push is taken as acknowledged (no broker)."""
    return {o.push.push_id for o in outgoing}


@dataclass
class SimulatedRun:
    """One simulated campaign: the launch's report, its results and timings."""

    report: Any
    results: dict[str, Any]
    pushes: int
    feedback: int
    conversions: int
    seconds: dict[str, float]


def run_simulated_campaign(
    conn: psycopg.Connection[Any],
    world: World,
    spec_document: dict[str, Any],
    sender: Callable[[Sequence[Any]], set[str]],
    *,
    now: datetime,
    seed: int,
    model: ResponseModel | None = None,
) -> SimulatedRun:
    """Create and launch the campaign at ``now``, answer every sent push as the cars would, record the
    window's organic and push-induced purchases, and return the campaign's results."""
    import time

    from cloud.push.campaigns import create, launch
    from cloud.push.results import campaign_results
    from cloud.push.spec import parse_spec

    model = model or world.model
    rng = np.random.default_rng([seed, 9])
    spec = parse_spec(spec_document)
    campaign_id = spec.campaign_id
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    create(conn, spec, now=now)
    report = launch(conn, campaign_id, sender, now=now)
    seconds["launch"] = time.perf_counter() - started
    started = time.perf_counter()
    sent = conn.execute(
        "SELECT d.customer_id, d.vehicle_id, d.push_id, d.item_id, v.time_zone,"
        " (SELECT count(*) FROM campaign_decisions p WHERE p.customer_id = d.customer_id"
        "  AND p.sent_at >= %(now)s - interval '7 days' AND p.sent_at < %(now)s)"
        " FROM campaign_decisions d JOIN vehicles v USING (vehicle_id)"
        " WHERE d.campaign_id = %(c)s AND d.decision = 'sent' ORDER BY d.customer_id",
        {"c": campaign_id, "now": now},
    ).fetchall()
    rows = np.array([world.customer_index[str(r[0])] for r in sent], dtype=np.int64)
    items = np.array([world.item_index[str(r[3])] for r in sent], dtype=np.int64)
    preference = world.population.truth["preference"]
    affinity = (
        model.affinity(preference[rows], world.catalogue.membership[items]) if len(rows) else np.zeros(0)
    )
    shown_at = now + timedelta(minutes=30)
    hours = np.array([_local_hour(shown_at, r[4]) for r in sent], dtype=np.int64)
    answers = model.respond(
        rng, affinity, world.catalogue.appeal[items], hours, np.array([r[5] for r in sent])
    )
    feedback = store_feedback(
        conn, world, campaign_id, [(str(r[1]), str(r[2])) for r in sent], answers, shown_at
    )
    seconds["feedback"] = time.perf_counter() - started
    started = time.perf_counter()
    # the window's purchases: organic for everyone, plus those the pushes made (also in the CRM)
    window = spec.attribution_days
    who, what = model.organic(rng, preference, world.catalogue, world.eligible, window)
    at = [now + timedelta(seconds=float(s)) for s in rng.uniform(60, window * 86400 * 0.95, len(who))]
    pushed = np.flatnonzero(answers.converted)
    who = np.concatenate([who, rows[pushed]])
    what = np.concatenate([what, items[pushed]])
    at += [shown_at + timedelta(minutes=5)] * len(pushed)
    # a customer who buys an item organically and through the push bought it once
    _, first = np.unique(who * len(world.catalogue) + what, return_index=True)
    first.sort()
    conversions = import_conversions(
        conn, world, who[first], what[first], [at[k] for k in first], Path(_tmp_dir()) / f"{campaign_id}.csv"
    )
    seconds["conversions"] = time.perf_counter() - started
    results = campaign_results(conn, campaign_id)
    return SimulatedRun(report, results, len(sent), feedback, conversions, seconds)


def _tmp_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def _local_hour(at: datetime, zone: str | None) -> int:
    from zoneinfo import ZoneInfo

    return at.astimezone(ZoneInfo(zone)).hour if zone else at.hour


def store_feedback(
    conn: psycopg.Connection[Any],
    world: World,
    campaign_id: str,
    pushes: Sequence[tuple[str, str]],
    answers: Responses,
    at: datetime,
    *,
    batch: int = 2000,
) -> int:
    """The cars' feedback (``pushes``: vehicle, push id) as FeedbackV1 messages, encoded and decoded as on
    the wire and stored by the ingest's own ``store_batch``; return how many messages."""
    from cloud.ingest.store import store_batch

    messages = []
    total = sum(len(answers.actions(k)) for k in range(len(pushes)))
    seqs = iter(world.next_seqs(total).tolist())
    for k, (vehicle, push) in enumerate(pushes):
        for step, action in enumerate(answers.actions(k)):
            moment = at + timedelta(seconds=step)
            body = FeedbackV1(push_id=push, campaign_id=campaign_id, action=action, at=moment)
            payload = encode(vehicle, next(seqs), body, sent_at=moment)
            messages.append(decode(uplink_topic(vehicle, "feedback"), payload, now=moment))
    for lo in range(0, len(messages), batch):
        store_batch(conn, messages[lo : lo + batch])
    return len(messages)


# ---------------------------------------------------------------------------------------------------------
# the simulated car's driver


class RespondingDriver:
    """An in-car display hook whose driver answers pushes with the response model.

    The car knows no catalogue: the push's affinity is the driver's preference summed over the
    categories its title and text name (the simulated catalogue names them all), the item's appeal is
    unknown (0). The car reports ``displayed``, then ``opened`` or ``dismissed`` (or nothing), and
    ``converted``; expiry is the edge agent's own check, so the model's ``offline_share`` is not used.
    """

    def __init__(
        self,
        preference: np.ndarray,
        rng: np.random.Generator,
        *,
        model: ResponseModel | None = None,
        zone: str | None = DEFAULT_ZONE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.preference = preference
        self.rng = rng
        self.model = replace(model or ResponseModel(), offline_share=0.0)
        self.zone = zone
        self.clock = clock
        self.shown: list[tuple[str, list[PushAction]]] = []
        self._times: list[tuple[str, datetime]] = []  # (push, when shown): the fatigue of the last 7 days

    def affinity(self, push: PushV1) -> float:
        """The driver's preference over the categories the push names."""
        words = f"{push.title} {push.text}".lower()
        return float(min(1.0, sum(p for c, p in zip(CATEGORIES, self.preference, strict=True) if c in words)))

    def show(self, push: PushV1, respond: Callable[[PushAction], None]) -> None:
        """Show the push and report what the driver did."""
        now = self.clock()
        recent = sum(1 for _, at in self._times if at > now - timedelta(days=7))
        answer = self.model.respond(
            self.rng,
            np.array([self.affinity(push)]),
            np.zeros(1),
            np.array([_local_hour(now, self.zone)]),
            np.array([recent]),
        )
        actions = answer.actions(0)[1:]  # the agent reported the delivery itself
        self._times.append((push.push_id, now))
        self.shown.append((push.push_id, actions))
        log.info("push %s %r: %s", push.push_id, push.title, ", ".join(a.value for a in actions))
        for action in actions:
            respond(action)


# ---------------------------------------------------------------------------------------------------------
# an A/A simulation on the real assignment and statistics, without the database


def aa_p_values(
    customer_ids: Sequence[str],
    preference: np.ndarray,
    catalogue: Catalogue,
    eligible: np.ndarray,
    *,
    repetitions: int,
    seed: int,
    model: ResponseModel | None = None,
    holdout_share: float = 0.2,
    attribution_days: float = 14.0,
) -> list[float]:
    """p-values of ``repetitions`` A/A tests: each repetition is a campaign id of its own, so
    ``cloud.push.assign.group`` (the engine's hash assignment) splits the customers afresh into a holdout and
    two arms ``a`` and ``b`` that push the same item per customer (the customer's best-liked eligible
    item); responses and organic purchases are drawn anew; the p-value is ``cloud.push.measure.uplift``'s
    between the arms' intention-to-treat conversion."""
    from cloud.push import assign, measure

    model = model or ResponseModel()
    rng = np.random.default_rng([seed, 10])
    aff_all = preference @ catalogue.membership.T
    best = np.where(eligible, aff_all, -np.inf).argmax(axis=1)
    affinity = aff_all[np.arange(len(best)), best]
    arms = [("a", 0.5), ("b", 0.5)]
    out = []
    for r in range(repetitions):
        campaign = f"aa-{seed}-{r}"
        group = np.array([assign.group(campaign, c, holdout_share, arms) for c in customer_ids])
        treated = group != assign.HOLDOUT
        answers = model.respond(
            rng,
            affinity[treated],
            catalogue.appeal[best[treated]],
            np.full(treated.sum(), 12),
            np.zeros(treated.sum()),
        )
        converted = np.zeros(len(customer_ids), dtype=bool)
        converted[np.flatnonzero(treated)[answers.converted]] = True
        who, _ = model.organic(rng, preference, catalogue, eligible, attribution_days)
        converted[who] = True
        a, b = group == "a", group == "b"
        up = measure.uplift(int(converted[a].sum()), int(a.sum()), int(converted[b].sum()), int(b.sum()))
        out.append(1.0 if up.p_value is None else up.p_value)
    return out


def arm_affinity(results_rows: Iterable[tuple[str, str, str]], world: World) -> dict[str, float]:
    """Mean true affinity of the items sent, per arm (rows: customer, arm, item)."""
    sums: dict[str, list[float]] = {}
    pref = world.population.truth["preference"]
    for customer, arm, item in results_rows:
        a = float(pref[world.customer_index[customer]] @ world.catalogue.membership[world.item_index[item]])
        sums.setdefault(arm, []).append(a)
    return {arm: float(np.mean(v)) for arm, v in sums.items()}


__all__ = [
    "CATALOGUE_KINDS",
    "COMPARISON_ARMS",
    "Catalogue",
    "RespondingDriver",
    "ResponseModel",
    "Responses",
    "SimulatedRun",
    "World",
    "aa_p_values",
    "everyone",
    "in_process_sender",
    "load_world",
    "make_catalogue",
    "run_simulated_campaign",
    "store_feedback",
    "write_catalogue",
]
