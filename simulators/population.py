"""A seeded world of customers for the analytics: who they are, how they drive, what they read online.

Everything is drawn at the level the analytics reads (trip summaries, CRM records, online interactions) with
numpy, so that a population of 100,000 customers and ten million trips takes seconds, and every draw keeps
its ground truth:

- each customer has a driving persona (:mod:`simulators.personas`: its trips per day, start hours, trip
  length, cruise speed and harsh-event rates) and independent traits (weekend traveller, family use); three
  cars in ten are shared with a second driver of another persona who takes 15-35% of the trips;
- demographics (birth year, gender, region, city, income band, education) lean on the persona, so that a
  decision tree on demographics has something real to find;
- a category preference vector (Dirichlet) that drives which content items the customer's online accounts
  view, comment on and collect;
- online accounts on the site and the app carry the customer's name, phone and email as people type them
  (case, spaces, phone formats), some without phone and email, plus prospects who are nobody's customer;
- consent per customer and scope, as the dealer recorded it at the purchase (:data:`CONSENT_RATES`), drawn
  from a generator of its own so that every other draw stays what it was before consent was simulated.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np

from .personas import PERSONAS, PersonaName

REGIONS = ("north", "east", "south", "west", "central", "northeast")
CITIES = {r: tuple(f"{r}-city-{i}" for i in range(1, 4)) for r in REGIONS}
INCOME_BANDS = ("low", "middle", "high")
EDUCATION = ("secondary", "bachelor", "master")
CATEGORIES = ("suv", "electric", "family", "performance", "outdoor", "technology", "luxury", "maintenance")
MODELS = {
    "DS-Compact": ("base", "comfort"),
    "DS-Sedan": ("comfort", "premium"),
    "DS-SUV": ("comfort", "premium"),
    "DS-EV5": ("standard", "long-range"),
}
#: the VSS feature signals the family trait shows in (rear seat occupied, child lock)
REAR_SEAT = "Vehicle.Cabin.Seat.Row2.PassengerSide.IsOccupied"
CHILD_LOCK = "Vehicle.Cabin.Door.Row2.PassengerSide.IsChildLockActive"
AIR_CONDITIONING = "Vehicle.Cabin.HVAC.IsAirConditioningActive"
UTC_OFFSET_H = 8  # the customers' local time zone (UTC+8); trips are stored in UTC
_FAMILY = (
    "wang",
    "li",
    "zhang",
    "liu",
    "chen",
    "yang",
    "huang",
    "zhao",
    "wu",
    "zhou",
    "xu",
    "sun",
    "ma",
    "zhu",
)
_GIVEN = (
    "wei",
    "fang",
    "na",
    "min",
    "jing",
    "lei",
    "qiang",
    "jun",
    "yan",
    "tao",
    "ming",
    "hui",
    "xin",
    "bo",
    "hong",
    "ying",
    "jie",
    "ping",
    "gang",
    "li",
    "hua",
    "yu",
    "ting",
    "chao",
)

#: the share of customers granting each consent scope (cloud/privacy/consent.py): marketing most, not all
CONSENT_RATES = {"marketing": 0.85, "profiling": 0.9, "location": 0.75, "rd": 0.9}

#: the persona each ground-truth tag stands for
PERSONA_TAGS: dict[str, PersonaName] = {
    "eco": PersonaName.CALM_COMMUTER,
    "aggressive": PersonaName.AGGRESSIVE,
    "night_driver": PersonaName.NIGHT_DRIVER,
    "long_distance": PersonaName.HIGHWAY,
}
_ECO_SCORE = {
    PersonaName.CALM_COMMUTER: (86, 4),
    PersonaName.AGGRESSIVE: (52, 8),
    PersonaName.NIGHT_DRIVER: (68, 6),
    PersonaName.HIGHWAY: (72, 5),
}


@dataclass
class Population:
    """Column arrays per entity; ``truth`` holds what the analytics must find."""

    customers: dict[str, np.ndarray]
    vehicles: dict[str, np.ndarray]
    trips: dict[str, np.ndarray]
    accounts: dict[str, np.ndarray]
    items: dict[str, np.ndarray]
    interactions: dict[str, np.ndarray]
    service_visits: dict[str, np.ndarray]
    complaints: dict[str, np.ndarray]
    dealers: dict[str, np.ndarray]
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    first_day: date = date(2026, 8, 1)
    days: int = 60
    #: one row per customer and scope: customer_id, scope, granted, at, source
    consent: dict[str, np.ndarray] = field(default_factory=dict)


def _persona_params(personas: np.ndarray) -> dict[str, np.ndarray]:
    """Per customer, the persona's parameters as arrays (for vectorized draws)."""
    names = list(PersonaName)
    table = {
        "trips_lo": [PERSONAS[p].trips_per_day[0] for p in names],
        "trips_hi": [PERSONAS[p].trips_per_day[1] for p in names],
        "min_lo": [PERSONAS[p].trip_minutes[0] for p in names],
        "min_hi": [PERSONAS[p].trip_minutes[1] for p in names],
        "kmh_lo": [PERSONAS[p].cruise_kmh[0] for p in names],
        "kmh_hi": [PERSONAS[p].cruise_kmh[1] for p in names],
        "harsh": [
            PERSONAS[p].harsh_brake_per_min
            + PERSONAS[p].harsh_accel_per_min
            + PERSONAS[p].harsh_corner_per_min
            for p in names
        ],
    }
    return {k: np.asarray(v, dtype=np.float64)[personas] for k, v in table.items()}


def _start_hours(personas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A local start hour per trip from its persona's start windows (one window chosen per trip)."""
    out = np.empty(len(personas))
    for i, name in enumerate(PersonaName):
        mask = personas == i
        windows = np.asarray(PERSONAS[name].start_hours)
        pick = windows[rng.integers(0, len(windows), mask.sum())]
        out[mask] = rng.uniform(pick[:, 0], pick[:, 1])
    return out


def _night_share(start_h: np.ndarray, hours: np.ndarray) -> np.ndarray:
    """Share of [start, start + hours) (local hours from the day's midnight) between 22:00 and 05:00."""
    end = start_h + hours
    night = np.zeros_like(start_h)
    for lo, hi in ((-2.0, 5.0), (22.0, 29.0), (46.0, 53.0)):
        night += np.clip(np.minimum(end, hi) - np.maximum(start_h, lo), 0, None)
    share: np.ndarray = np.clip(night / np.maximum(hours, 1e-9), 0, 1)
    return share


def _customers(n: int, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    persona = np.arange(n) % len(PersonaName)
    rng.shuffle(persona)
    # demographics lean on the persona: aggressive and night drivers are younger, highway drivers earn more
    age_mean = np.array([42.0, 29.0, 31.0, 45.0])[persona]
    age = np.clip(rng.normal(age_mean, 6.0), 18, 80).round()
    income_p = np.array([[0.3, 0.5, 0.2], [0.4, 0.45, 0.15], [0.5, 0.4, 0.1], [0.1, 0.35, 0.55]])[persona]
    income = (rng.random(n)[:, None] > np.cumsum(income_p, axis=1)).sum(axis=1)
    education = np.clip(income + rng.integers(-1, 2, n), 0, 2)
    region = rng.integers(0, len(REGIONS), n)
    city = rng.integers(0, 3, n)
    family = rng.integers(0, len(_FAMILY), n)
    given = rng.integers(0, len(_GIVEN), (n, 2))
    names = np.array(
        [f"{_FAMILY[f]} {_GIVEN[g[0]]}{_GIVEN[g[1]]}" for f, g in zip(family, given, strict=True)]
    )
    phone = np.array([f"13{d:09d}" for d in rng.choice(10**9, n, replace=False)])
    ids = np.array([f"C{i:07d}" for i in range(n)])
    customers = {
        "customer_id": ids,
        "name": names,
        "phone": phone,
        "email": np.array([f"{nm.replace(' ', '.')}{i}@mail.example" for i, nm in enumerate(names)]),
        "birth_year": (2026 - age).astype(np.int64),
        "gender": rng.choice(np.array(["f", "m"]), n),
        "region": np.array(REGIONS)[region],
        "city": np.array([CITIES[REGIONS[r]][c] for r, c in zip(region, city, strict=True)]),
        "income_band": np.array(INCOME_BANDS)[income],
        "education": np.array(EDUCATION)[education],
    }
    truth = {
        "persona": np.array([p.value for p in PersonaName])[persona],
        "persona_index": persona,
        "weekend_traveller": rng.random(n) < 0.25,
        "family_use": rng.random(n) < 0.3,
        # 30% of the cars are shared with a second driver of another persona, who takes 15-35% of the trips;
        # the customer's persona (the truth the tags are judged by) is the main driver's
        "second_persona": (persona + rng.integers(1, len(PersonaName), n)) % len(PersonaName),
        "second_share": np.where(rng.random(n) < 0.3, rng.uniform(0.15, 0.35, n), 0.0),
        "preference": rng.dirichlet(np.full(len(CATEGORIES), 0.5), n),
    }
    return customers, truth


def _trips(
    persona: np.ndarray,
    truth: dict[str, np.ndarray],
    vehicle_of: np.ndarray,
    first_day: date,
    days: int,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Trip summaries over ``days`` for customers whose vehicle is ``vehicle_of[customer]``."""
    n = len(persona)
    params = _persona_params(persona)
    day_index = np.arange(days)
    weekend = ((np.datetime64(first_day) + day_index).astype("datetime64[D]").view("int64") - 4) % 7 >= 5
    # trips per customer and day: the persona's range on weekdays; commuters drive little at weekends
    per_day = rng.integers(params["trips_lo"][:, None], params["trips_hi"][:, None] + 1, (n, days))
    commuter = persona == list(PersonaName).index(PersonaName.CALM_COMMUTER)
    per_day[np.ix_(commuter, weekend)] = rng.integers(0, 2, (commuter.sum(), weekend.sum()))
    # weekend travellers add a long leisure trip on most weekend days
    leisure = (truth["weekend_traveller"][:, None] & weekend[None, :]) & (rng.random((n, days)) < 0.8)
    counts = per_day + leisure
    customer = np.repeat(np.repeat(np.arange(n), days), counts.ravel())
    day = np.repeat(np.tile(day_index, n), counts.ravel())
    is_leisure = np.zeros(len(customer), dtype=bool)
    ends = np.cumsum(counts.ravel())  # each customer-day's leisure trip, if any, is its last one
    is_leisure[ends[leisure.ravel()] - 1] = True
    m = len(customer)
    # a shared car: some trips are the second driver's, driven their way
    driver = np.where(
        rng.random(m) < truth["second_share"][customer], truth["second_persona"][customer], persona[customer]
    )
    params = _persona_params(driver)
    minutes = rng.uniform(params["min_lo"], params["min_hi"])
    cruise = rng.uniform(params["kmh_lo"], params["kmh_hi"])
    minutes[is_leisure] = rng.uniform(60, 150, is_leisure.sum())
    cruise[is_leisure] = rng.uniform(80, 110, is_leisure.sum())
    start_h = _start_hours(driver, rng)
    start_h[is_leisure] = rng.uniform(9, 12, is_leisure.sum())
    duration_s = minutes * 60
    idle_s = duration_s * rng.uniform(0.03, 0.15, m)
    moving_s = duration_s - idle_s
    avg_speed = cruise * rng.uniform(0.55, 0.75, m)
    distance = avg_speed * moving_s / 3600
    harsh = rng.poisson(params["harsh"] * minutes)
    split = rng.multinomial(1, [0.45, 0.35, 0.2], m) * harsh[:, None] if m else np.zeros((0, 3), int)
    eco_mu = np.array([_ECO_SCORE[p][0] for p in PersonaName])[driver]
    eco_sd = np.array([_ECO_SCORE[p][1] for p in PersonaName])[driver]
    family = truth["family_use"][customer]
    rear = rng.random(m) < np.where(family, 0.65, 0.05)
    epoch = datetime(first_day.year, first_day.month, first_day.day, tzinfo=UTC).timestamp()
    started = epoch + day * 86400 + (start_h - UTC_OFFSET_H) * 3600
    order = np.lexsort((started, vehicle_of[customer]))
    columns = {
        "customer": customer,
        "vehicle": vehicle_of[customer],
        "started_at": started,
        "duration_s": duration_s,
        "moving_s": moving_s,
        "idle_s": idle_s,
        "distance_km": distance,
        "avg_speed_kmh": avg_speed,
        "max_speed_kmh": cruise * rng.uniform(1.05, 1.25, m),
        "night_share": _night_share(start_h, minutes / 60),
        "harsh_brake": split[:, 0],
        "harsh_accel": split[:, 1],
        "harsh_corner": split[:, 2],
        "eco_score": np.clip(rng.normal(eco_mu, eco_sd), 0, 100),
        "rear_seat_s": np.where(rear, duration_s * rng.uniform(0.8, 1.0, m), 0.0),
        "child_lock": rear & family & (rng.random(m) < 0.7),
        "ac_s": duration_s * rng.uniform(0, 1, m),
    }
    return {k: v[order] for k, v in columns.items()}


def simulate_population(
    customers: int, seed: int, *, days: int = 60, first_day: date = date(2026, 8, 1), content_items: int = 300
) -> Population:
    """A population of ``customers`` (one vehicle each) driving ``days`` days, with CRM and online data."""
    rng = np.random.default_rng(seed)
    people, truth = _customers(customers, rng)
    n = customers
    persona = truth["persona_index"]
    dealers = {
        "dealer_id": np.array([f"D{r:02d}{c}" for r in range(len(REGIONS)) for c in range(2)]),
        "name": np.array([f"drivesight {REGIONS[r]} {c + 1}" for r in range(len(REGIONS)) for c in range(2)]),
        "region": np.array([REGIONS[r] for r in range(len(REGIONS)) for _c in range(2)]),
    }
    models = np.array(list(MODELS))
    # highway drivers buy SUVs and sedans, night drivers compacts; 30% of everyone's cars are electric
    model_idx = np.where(rng.random(n) < 0.3, 3, np.array([1, 0, 0, 2])[persona])
    model = models[model_idx]
    trims = np.array([MODELS[m][int(t)] for m, t in zip(model, rng.integers(0, 2, n), strict=True)])
    region_idx = np.array([REGIONS.index(r) for r in people["region"]])
    vehicles = {
        "vehicle_id": np.array([f"LDS{i:014d}" for i in range(n)]),
        "customer_id": people["customer_id"],
        "dealer_id": dealers["dealer_id"][region_idx * 2 + rng.integers(0, 2, n)],
        "model": model,
        "trim_level": trims,
        "model_year": rng.integers(2021, 2027, n),
        "powertrain": np.where(model_idx == 3, "ev", "ice"),
        "region": people["region"],
        "purchased_at": np.datetime64(first_day) - rng.integers(30, 1500, n).astype("timedelta64[D]"),
        "price": np.round(rng.uniform(90_000, 320_000, n), -2),
    }
    trips = _trips(persona, truth, np.arange(n), first_day, days, rng)
    accounts, account_truth = _accounts(people, rng)
    items, interactions = _content(truth["preference"], account_truth, content_items, first_day, days, rng)
    visits = rng.poisson(1.2, n)
    owner = np.repeat(np.arange(n), visits)
    service = {
        "visit_id": np.array([f"S{i:08d}" for i in range(len(owner))]),
        "vehicle_id": vehicles["vehicle_id"][owner],
        "dealer_id": vehicles["dealer_id"][owner],
        "visited_at": np.datetime64(first_day) + rng.integers(0, days, len(owner)).astype("timedelta64[D]"),
        "kind": rng.choice(np.array(["maintenance", "repair", "recall", "tyres"]), len(owner)),
        "cost": np.round(rng.gamma(2.0, 400.0, len(owner)), 2),
    }
    complainers = np.flatnonzero(rng.random(n) < 0.08)
    complaints = {
        "complaint_id": np.array([f"Q{i:07d}" for i in range(len(complainers))]),
        "customer_id": people["customer_id"][complainers],
        "opened_at": np.datetime64(first_day)
        + rng.integers(0, days, len(complainers)).astype("timedelta64[D]"),
        "category": rng.choice(np.array(["quality", "service", "delivery", "software"]), len(complainers)),
        "resolved": rng.random(len(complainers)) < 0.7,
    }
    truth.update(account_truth)
    consent = _consent(people["customer_id"], vehicles["purchased_at"], np.random.default_rng([seed, 14]))
    return Population(
        people,
        vehicles,
        trips,
        accounts,
        items,
        interactions,
        service,
        complaints,
        dealers,
        truth,
        first_day,
        days,
        consent,
    )


def _consent(
    customer_ids: np.ndarray, purchased: np.ndarray, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Each customer's choice per scope, recorded by the dealer at 10:00 UTC on the day of the purchase."""
    n = len(customer_ids)
    scopes = np.array(list(CONSENT_RATES))
    rates = np.array(list(CONSENT_RATES.values()))
    granted = rng.random((n, len(scopes))) < rates
    at = purchased.astype("datetime64[s]") + np.timedelta64(10 * 3600, "s")
    return {
        "customer_id": np.repeat(customer_ids, len(scopes)),
        "scope": np.tile(scopes, n),
        "granted": np.where(granted.ravel(), "true", "false"),
        "at": np.char.add(np.repeat(at, len(scopes)).astype(str), "Z"),
        "source": np.full(n * len(scopes), "dealer"),
    }


def _typed_name(name: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Names as people type them into a sign-up form: capitals, doubled or missing spaces."""
    style = rng.integers(0, 4, len(name))
    out = name.copy()
    out[style == 1] = np.char.title(name[style == 1])
    out[style == 2] = np.char.upper(name[style == 2])
    out[style == 3] = np.char.replace(name[style == 3], " ", "  ")
    return out


def _typed_phone(phone: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    style = rng.integers(0, 3, len(phone))
    out = phone.astype(object)
    out[style == 1] = [f"+86 {p[:3]}-{p[3:7]}-{p[7:]}" for p in phone[style == 1]]
    out[style == 2] = [f"{p[:3]} {p[3:7]} {p[7:]}" for p in phone[style == 2]]
    return out.astype(str)


def _accounts(
    people: dict[str, np.ndarray], rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Site and app accounts of customers (ground truth: whose), and prospects who belong to nobody."""
    n = len(people["customer_id"])
    owners: list[np.ndarray] = []
    channels: list[np.ndarray] = []
    for name, p in (("site", 0.6), ("app", 0.5)):
        has = np.flatnonzero(rng.random(n) < p)
        owners.append(has)
        channels.append(np.full(len(has), name))
    owner = np.concatenate(owners)
    channel = np.concatenate(channels)
    k = len(owner)
    # a tenth of the accounts give neither phone nor email: only name, birth year and city link them
    contact = rng.random(k) >= 0.1
    prospects = max(1, k // 10)
    p_idx = rng.integers(0, n, prospects)  # prospects share a customer's name, but not the birth year or city
    typed = np.concatenate([_typed_name(people["name"][owner], rng), people["name"][p_idx]])
    birth = np.concatenate(
        [people["birth_year"][owner], people["birth_year"][p_idx] - rng.integers(1, 9, prospects)]
    )
    accounts: dict[str, np.ndarray] = {
        "account_id": np.array([f"A{i:08d}" for i in range(k + prospects)]),
        "channel": np.concatenate([channel, rng.choice(np.array(["site", "app"]), prospects)]),
        "name": typed,
        "phone": np.concatenate(
            [
                np.where(contact, _typed_phone(people["phone"][owner], rng), ""),
                np.array([f"15{d:09d}" for d in rng.integers(0, 10**9, prospects)]),
            ]
        ),
        "email": np.concatenate(
            [
                np.where(contact & (rng.random(k) < 0.7), np.char.upper(people["email"][owner]), ""),
                np.full(prospects, ""),
            ]
        ),
        "birth_year": birth,
        "city": np.concatenate([people["city"][owner], people["city"][(p_idx + 1) % n]]),
    }
    truth = {"account_owner": np.concatenate([owner, np.full(prospects, -1)])}
    return accounts, truth


def _content(
    preference: np.ndarray,
    account_truth: dict[str, np.ndarray],
    n_items: int,
    first_day: date,
    days: int,
    rng: np.random.Generator,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Content items with category memberships, and the interactions of accounts driven by preferences."""
    c = len(CATEGORIES)
    main = np.arange(n_items) % c
    membership = np.zeros((n_items, c))
    membership[np.arange(n_items), main] = rng.uniform(0.8, 1.0, n_items)
    second = (main + rng.integers(1, c, n_items)) % c
    has_second = rng.random(n_items) < 0.5
    membership[np.flatnonzero(has_second), second[has_second]] = rng.uniform(0.1, 0.4, has_second.sum())
    items = {
        "item_id": np.array([f"I{i:05d}" for i in range(n_items)]),
        "kind": rng.choice(np.array(["article", "video", "product"]), n_items),
        "membership": membership,
    }
    owner = account_truth["account_owner"]
    per_account = rng.poisson(40, len(owner)) + 10
    account = np.repeat(np.arange(len(owner)), per_account)
    who = owner[account]
    pref = np.where(who[:, None] >= 0, preference[np.maximum(who, 0)], 1.0 / c)
    # P(item) is proportional to sum_j pref_j * m_j(item): draw a category j with weight pref_j * M_j
    # (M_j = sum_i m_j(i)), then an item with weight m_j(item) / M_j -- the same mixture, without an
    # interactions x items matrix
    mass = membership.sum(axis=0)
    weights = pref * mass
    cdf = np.cumsum(weights, axis=1)
    category = (rng.random(len(account))[:, None] * cdf[:, -1:] > cdf).sum(axis=1)
    chosen = np.empty(len(account), dtype=np.int64)
    for j in range(c):
        rows = np.flatnonzero(category == j)
        item_cdf = np.cumsum(membership[:, j]) / mass[j]
        chosen[rows] = np.minimum(np.searchsorted(item_cdf, rng.random(len(rows)), side="right"), n_items - 1)
    kind = rng.choice(np.array(["view", "comment", "collect"]), len(account), p=[0.7, 0.15, 0.15])
    interactions = {
        "account_id": np.array([f"A{i:08d}" for i in account]),
        "item_id": items["item_id"][chosen],
        "kind": kind,
        "at": np.datetime64(first_day) + rng.integers(0, days * 86400, len(account)).astype("timedelta64[s]"),
    }
    return items, interactions
