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
    as_of: tuple[date, ...] = ()  # the snapshot days it learnt from, oldest first


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
    conn: psycopg.Connection[Any],
    table: str,
    features: Sequence[str],
    loads: Callable[[bytes], M],
    learnt_by: date | None = None,
) -> StoredModel[M] | None:
    """The newest model of ``table`` whose features are ``features`` and, given ``learnt_by``, whose newest
    snapshot day is not after it (a day scored again later is not scored by a model that saw its future;
    None: none)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            f"SELECT version, model, metrics, as_of FROM {table} WHERE features = %s"
            " AND (%s::date IS NULL OR as_of[array_upper(as_of, 1)] <= %s::date)"
            " ORDER BY version DESC LIMIT 1",
            (list(features), learnt_by, learnt_by),
        )
        .fetchone()
    )
    if row is None:
        return None
    version, blob, metrics, as_of = row
    assert isinstance(version, int) and isinstance(blob, bytes) and isinstance(metrics, dict)
    return StoredModel(version, loads(blob), metrics, tuple(as_of))


def prune(cur: psycopg.Cursor[Any], scores: str, models: str, before: date) -> tuple[int, int]:
    """Delete the score rows of ``scores`` older than ``before`` and then every model of ``models`` that no
    kept score refers to, except the newest (so the history stays bounded); (score rows, models) deleted."""
    cur.execute(f"DELETE FROM {scores} WHERE day < %s", (before,))
    rows = cur.rowcount
    cur.execute(
        f"DELETE FROM {models} m WHERE m.version < (SELECT max(version) FROM {models})"
        f" AND NOT EXISTS (SELECT 1 FROM {scores} s WHERE s.model_version = m.version)"
    )
    return rows, cur.rowcount


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
    latest: Callable[[psycopg.Connection[Any], date], StoredModel[M] | None]  # usable for a day's scores
    training_days: Callable[[date], list[date]]
    train: Callable[[psycopg.Connection[Any], date, int], StoredModel[M]]
    features: Callable[[psycopg.Connection[Any], date], F]
    score: Callable[[StoredModel[M], F], S]
    store: Callable[[psycopg.Cursor[Any], date, S, int], None]
    tables: tuple[str, str]  # (score table, model table), for the history's bound
    retrain_after_days: int  # a model whose newest snapshot is this much older than the newest possible
    keep_days: int  # score days kept
    say_scored: bool = True  # report the scoring's seconds in the progress
    time_store: bool = True  # report the storing's seconds (``seconds["store"]``)


@dataclass(frozen=True, slots=True)
class Outcome(Generic[M, S]):
    """What :func:`run_daily` did: the model used (trained now or not, and why), the scores, the seconds per
    step, and what the history's bound deleted."""

    stored: StoredModel[M]
    trained: bool
    scores: S
    seconds: dict[str, float]
    why_trained: str = ""
    pruned: dict[str, int] | None = None


def why_train(stored: StoredModel[Any] | None, newest_day: date, retrain_after_days: int) -> str:
    """Why a new model is needed to score with snapshots up to ``newest_day`` ("" when ``stored`` will do)."""
    if stored is None:
        return "no model learnt before this day"
    age = (newest_day - stored.as_of[-1]).days if stored.as_of else retrain_after_days + 1
    if age > retrain_after_days:
        return f"model {stored.version} learnt from days up to {age} days older (retrain_after_days)"
    return ""


def run_daily(
    database_url: str,
    job: Job[M, F, S],
    day: date,
    *,
    retrain: bool,
    seed: int,
    progress: Callable[[str], None],
) -> Outcome[M, S]:
    """Score ``day`` (training a model first on ``retrain``, when there is none usable for the day, or when
    the newest is stale) and store the scores, bounding the history; saying how it goes to ``progress``."""
    say = progress
    seconds: dict[str, float] = {}
    with psycopg.connect(database_url, autocommit=True) as conn:
        locked = conn.execute(f"SELECT pg_try_advisory_lock(hashtext('drivesight-{job.name}'))").fetchone()
        if not locked or not locked[0]:
            raise job.error(f"another {job.name} run holds the lock on this database; try again when it ends")
        started = time.perf_counter()
        days = job.training_days(day)
        stored = None if retrain else job.latest(conn, days[-1])
        why = "asked to retrain" if retrain else why_train(stored, days[-1], job.retrain_after_days)
        if why:
            say(f"training ({why}) on {', '.join(str(d) for d in days)}")
            stored = job.train(conn, day, seed)
            say(f"model {stored.version}: {stored.metrics}")
        assert stored is not None
        seconds["train"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        matrix = job.features(conn, day)
        seconds["features"] = round(time.perf_counter() - started, 3)
        say(f"features of {len(matrix.customers)} customers: {seconds['features']:.1f} s")
        started = time.perf_counter()
        scores = job.score(stored, matrix)
        seconds["score"] = round(time.perf_counter() - started, 3)
        if job.say_scored:
            say(f"scores and reasons: {seconds['score']:.1f} s")
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            job.store(cur, day, scores, stored.version)
            rows, models = prune(cur, *job.tables, day - timedelta(days=job.keep_days))
        if rows or models:
            say(f"history bound ({job.keep_days} days): {rows} score rows and {models} models deleted")
        if job.time_store:
            seconds["store"] = round(time.perf_counter() - started, 3)
    return Outcome(stored, bool(why), scores, seconds, why, {"score_rows": rows, "models": models})
