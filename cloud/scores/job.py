"""The steps a daily scoring job shares: who may be scored, the training snapshot days, storing and loading
a model, replacing a day's scores, and the run itself (one at a time per database, timed). The job passes in
its own features, label, model, score table and columns."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Generic, Protocol, Self, TypeVar

import numpy as np
import psycopg
from psycopg.rows import tuple_row

M = TypeVar("M")
F = TypeVar("F", bound="HasCustomers")
S = TypeVar("S")
R = TypeVar("R", bound="Rows")


class HasCustomers(Protocol):
    """A feature matrix: one row per customer."""

    @property
    def customers(self) -> list[str]: ...


class Rows(HasCustomers, Protocol):
    """A feature matrix that can keep some of its rows."""

    def rows(self, keep: np.ndarray) -> Self: ...


class Snapshots(Protocol):
    """The settings that place a job's training snapshots."""

    @property
    def horizon_days(self) -> int: ...
    @property
    def snapshot_step_days(self) -> int: ...
    @property
    def snapshots(self) -> int: ...


@dataclass(frozen=True, slots=True)
class StoredModel(Generic[M]):
    """A model from a job's model table."""

    version: int
    model: M
    metrics: dict[str, Any]


def allowed(conn: psycopg.Connection[Any], customers: list[str]) -> set[str]:
    """The ones among ``customers`` whose current ``marketing`` consent is granted."""
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT customer_id FROM consent_current WHERE scope = 'marketing' AND granted"
            " AND customer_id = ANY(%s)",
            (customers,),
        )
        .fetchall()
    )
    return {str(r[0]) for r in rows}


def consenting(conn: psycopg.Connection[Any], matrix: R) -> R:
    """The rows of ``matrix`` whose customers allow marketing now."""
    allow = allowed(conn, matrix.customers)
    return matrix.rows(np.array([c in allow for c in matrix.customers], dtype=bool))


def training_days(day: date, config: Snapshots) -> list[date]:
    """The snapshot days a model for scoring ``day`` learns from, oldest first (outcomes known by ``day``)."""
    last = day - timedelta(days=config.horizon_days)
    return [last - timedelta(days=config.snapshot_step_days * k) for k in reversed(range(config.snapshots))]


def stack(
    days: list[date], rows: Callable[[date], tuple[np.ndarray, np.ndarray]]
) -> tuple[np.ndarray, np.ndarray]:
    """The features and labels of each of ``days`` (``rows``), stacked."""
    xs, ys = [], []
    for d in days:
        x, y = rows(d)
        xs.append(x)
        ys.append(y)
    return np.vstack(xs), np.concatenate(ys)


def insert_model(
    conn: psycopg.Connection[Any],
    table: str,
    days: list[date],
    horizon_days: int,
    features: Sequence[str],
    metrics: dict[str, Any],
    blob: bytes,
) -> int:
    """Store a fitted model in ``table``; its new version."""
    row = conn.execute(
        f"INSERT INTO {table} (as_of, horizon_days, features, metrics, model)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING version",
        (days, horizon_days, list(features), json.dumps(metrics), blob),
    ).fetchone()
    assert row is not None
    return int(row[0])


def latest_model(
    conn: psycopg.Connection[Any], table: str, features: Sequence[str], loads: Callable[[bytes], M]
) -> StoredModel[M] | None:
    """The newest model of ``table`` whose features are ``features`` (None: none)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT version, model, metrics FROM {table} WHERE features = %s ORDER BY version DESC LIMIT 1",
            (list(features),),
        )
        .fetchone()
    )
    if row is None:
        return None
    version, blob, metrics = row
    assert isinstance(version, int) and isinstance(blob, bytes) and isinstance(metrics, dict)
    return StoredModel(version, loads(blob), metrics)


def store_rows(
    cur: psycopg.Cursor[Any], table: str, columns: Sequence[str], day: date, rows: Iterable[Sequence[Any]]
) -> None:
    """Replace ``day``'s rows of ``table`` with ``rows`` of ``columns`` (COPY)."""
    cur.execute(f"DELETE FROM {table} WHERE day = %s", (day,))
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


@dataclass(frozen=True, slots=True)
class Job(Generic[M, F, S]):
    """One scoring job's own parts, for :func:`run_daily`."""

    name: str  # the lock's name (``drivesight-<name>``) and the word in its error
    error: type[RuntimeError]
    latest: Callable[[psycopg.Connection[Any]], StoredModel[M] | None]
    training_days: Callable[[date], list[date]]
    train: Callable[[psycopg.Connection[Any], date, int], StoredModel[M]]
    features: Callable[[psycopg.Connection[Any], date], F]
    score: Callable[[M, F], S]
    store: Callable[[psycopg.Cursor[Any], date, S, int], None]
    say_scored: bool = True  # report the scoring's seconds in the progress
    time_store: bool = True  # report the storing's seconds (``seconds["store"]``)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[M, S]):
    """What :func:`run_daily` did: the model used (trained now or not), the scores, the seconds per step."""

    stored: StoredModel[M]
    trained: bool
    scores: S
    seconds: dict[str, float]


def run_daily(
    database_url: str,
    job: Job[M, F, S],
    day: date,
    *,
    retrain: bool,
    seed: int,
    progress: Callable[[str], None],
) -> Outcome[M, S]:
    """Score ``day`` (training a model first when there is none or on ``retrain``) and store the scores,
    saying how it goes to ``progress``."""
    say = progress
    seconds: dict[str, float] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        locked = conn.execute(f"SELECT pg_try_advisory_lock(hashtext('drivesight-{job.name}'))").fetchone()
        if not locked or not locked[0]:
            raise job.error(f"another {job.name} run holds the lock on this database; try again when it ends")
        started = time.perf_counter()
        stored = None if retrain else job.latest(conn)
        trained = stored is None
        if stored is None:
            say(f"training on {', '.join(str(d) for d in job.training_days(day))}")
            stored = job.train(conn, day, seed)
            say(f"model {stored.version}: {stored.metrics}")
        seconds["train"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        matrix = job.features(conn, day)
        seconds["features"] = round(time.perf_counter() - started, 3)
        say(f"features of {len(matrix.customers)} customers: {seconds['features']:.1f} s")
        started = time.perf_counter()
        scores = job.score(stored.model, matrix)
        seconds["score"] = round(time.perf_counter() - started, 3)
        if job.say_scored:
            say(f"scores and reasons: {seconds['score']:.1f} s")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            job.store(cur, day, scores, stored.version)
        if job.time_store:
            seconds["store"] = round(time.perf_counter() - started, 3)
    return Outcome(stored, trained, scores, seconds)
