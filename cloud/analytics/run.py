"""The analytics batch job: identification, features, tags, preferences, clusters, segments.

A full run recomputes every customer. An incremental run recomputes only the customers with something new
since the last finished run began (minus a five-minute overlap, so that a transaction that committed late is
not missed; recomputing a customer twice is harmless): trips stored, CRM rows imported, online interactions
imported, identity links made or undone. Every per-customer result is a function of that customer's data
alone, computed from all of it, so an incremental run leaves the same tables a full run would (tested).
Clusters are the exception by nature: the cluster model is fitted on the first run and on ``refit``; other
runs assign customers to its centroids, which is also per customer. A run under another configuration
version than the last one recomputes everyone (tags record the version they were computed with); one run at
a time per database (an advisory lock; a second is refused with :class:`RunInProgress`). Segments are
recomputed whole each run (they are SQL over the results, cheap next to the rest).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import psycopg

from .clusters import assign, fit_clusters
from .config import PortraitConfig, check_sql
from .identify import link_accounts
from .portraits import FeatureMatrix, compute_features, compute_tags, feature_rows, replace_rows, tag_rows
from .preferences import refresh_preferences
from .segments import demographic_tree, refresh_segments

log = logging.getLogger(__name__)

OVERLAP = timedelta(minutes=5)


class RunInProgress(RuntimeError):
    """Another analytics run is working on the same database."""


_CHANGED = """
SELECT v.customer_id FROM trips t JOIN vehicles v USING (vehicle_id)
 WHERE t.stored_at >= %(since)s AND v.customer_id IS NOT NULL
UNION SELECT customer_id FROM customers WHERE updated_at >= %(since)s
UNION SELECT customer_id FROM complaints WHERE imported_at >= %(since)s
UNION SELECT v.customer_id FROM service_visits s JOIN vehicles v USING (vehicle_id)
 WHERE s.imported_at >= %(since)s AND v.customer_id IS NOT NULL
UNION SELECT l.customer_id FROM interactions i JOIN identity_links l ON l.account_id = i.account_id
 AND l.undone_at IS NULL WHERE i.imported_at >= %(since)s
UNION SELECT l.customer_id FROM identity_links l JOIN identity_merges m USING (merge_id)
 WHERE m.at >= %(since)s OR l.undone_at >= %(since)s
"""


def _changed_customers(conn: psycopg.Connection[tuple[object, ...]], since: datetime) -> list[str]:
    return [str(r[0]) for r in conn.execute(_CHANGED, {"since": since})]


def _stored_features(conn: psycopg.Connection[tuple[object, ...]], names: list[str]) -> FeatureMatrix:
    """Every customer's stored features (for fitting clusters on everyone)."""
    rows = conn.execute("SELECT customer_id, features FROM customer_features ORDER BY customer_id").fetchall()
    values = np.array(
        [[float(r[1].get(n, np.nan)) for n in names] for r in rows],  # type: ignore[attr-defined]
        dtype=np.float64,
    ).reshape(len(rows), len(names))
    return FeatureMatrix([str(r[0]) for r in rows], names, values)


def _eligible(matrix: FeatureMatrix, config: PortraitConfig) -> tuple[np.ndarray, np.ndarray]:
    names = config.clustering.features
    x = np.column_stack([matrix.column(n) for n in names])
    ok = ~np.isnan(x).any(axis=1) & (np.nan_to_num(matrix.column("trips")) >= config.clustering.min_trips)
    return np.flatnonzero(ok), x[ok]


def _cluster(
    conn: psycopg.Connection[tuple[object, ...]],
    config: PortraitConfig,
    matrix: FeatureMatrix,
    scope: list[str] | None,
    model_row: tuple[object, ...] | None,
    *,
    refit: bool,
    seed: int,
) -> dict[str, Any]:
    """Fit the cluster model when there is none (or on ``refit``) and assign customers to it."""
    if model_row is None or refit:
        everyone = (
            _stored_features(conn, [*config.clustering.features, "trips"]) if scope is not None else matrix
        )
        rows, x = _eligible(everyone, config)
        need = config.clustering.k_range[0]
        if len(x) <= need:
            return {"skipped": f"{len(x)} customers can be clustered; more than {need} needed"}
        model = fit_clusters(x, config.clustering.features, config.clustering, seed)
        version_row = conn.execute(
            "INSERT INTO cluster_models (model) VALUES (%s) RETURNING version", (json.dumps(model),)
        ).fetchone()
        assert version_row is not None
        version = int(str(version_row[0]))
        target, target_rows, target_x, clear = everyone, rows, x, None
    else:
        version, stored = int(str(model_row[0])), model_row[1]
        assert isinstance(stored, dict)
        model = stored
        target_rows, target_x = _eligible(matrix, config)
        target, clear = matrix, scope
    labels = assign(model, target_x) if len(target_x) else np.zeros(0, dtype=int)
    with conn.transaction(), conn.cursor() as cur:
        replace_rows(
            cur,
            "customer_clusters",
            ("customer_id", "cluster", "model_version"),
            clear,
            ((target.customers[i], int(c), version) for i, c in zip(target_rows, labels, strict=True)),
        )
    return {
        "model_version": version,
        "k": model["k"],
        "descriptions": {c["cluster"]: c["description"] for c in model["clusters"]},
    }


def run_analytics(
    database_url: str,
    config: PortraitConfig,
    *,
    full: bool = False,
    refit: bool = False,
    seed: int = 0,
    overlap: timedelta = OVERLAP,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the job once; return a report (scope, counts per step, clusters, segments, seconds per step).

    ``overlap``: how far before the last run's start an incremental run looks for new data.
    """
    say = progress or log.info
    timings: dict[str, float] = {}
    report: dict[str, Any] = {}

    def step(name: str, started: float) -> None:
        timings[name] = round(time.perf_counter() - started, 3)
        say(f"{name}: {timings[name]:.1f} s")

    with psycopg.connect(database_url, autocommit=True) as conn:
        locked = conn.execute("SELECT pg_try_advisory_lock(hashtext('drivesight-analytics'))").fetchone()
        if not locked or not locked[0]:
            raise RunInProgress(
                "another analytics run holds the lock on this database; try again when it ends"
            )
        check_sql(conn, config)
        t = time.perf_counter()
        report["identification"] = [asdict(r) for r in link_accounts(conn)]
        step("identification", t)
        # the run's data horizon: after its own links (so the next run does not take them for news), before
        # it looks for what is new; everything committed before this instant is visible to what follows
        started_at = conn.execute("SELECT clock_timestamp()").fetchone()[0]  # type: ignore[index]
        assert isinstance(started_at, datetime)
        last = conn.execute(
            "SELECT started_at, config_version FROM analytics_runs WHERE finished_at IS NOT NULL"
            " ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        previous = last[0] if last else None
        if last is not None and last[1] != config.version and not full:
            say(f"configuration version {last[1]} -> {config.version}: recomputing every customer")
            full = True
        model_row = conn.execute(
            "SELECT version, model FROM cluster_models ORDER BY version DESC LIMIT 1"
        ).fetchone()
        incremental = not full and isinstance(previous, datetime) and not refit
        t = time.perf_counter()
        scope: list[str] | None = None
        if incremental:
            assert isinstance(previous, datetime)
            scope = _changed_customers(conn, previous - overlap)
        report["mode"] = "incremental" if incremental else "full"
        step("scope", t)
        t = time.perf_counter()
        matrix = compute_features(conn, config, scope)
        report["customers"] = len(matrix.customers)
        step("features", t)
        say(f"{report['mode']} run over {len(matrix.customers)} customers")
        t = time.perf_counter()
        tags = compute_tags(matrix, config)
        report["tags"] = {tr.tag: len(tr.rows) for tr in tags}
        with conn.transaction(), conn.cursor() as cur:
            replace_rows(
                cur,
                "customer_features",
                ("customer_id", "features", "computed_at"),
                scope,
                feature_rows(matrix, started_at),
            )
            replace_rows(
                cur,
                "customer_tags",
                ("customer_id", "tag", "score", "evidence", "config_version"),
                scope,
                tag_rows(matrix, tags, config.version),
            )
        step("tags", t)
        t = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            report["preference_rows"] = refresh_preferences(cur, config.preferences, scope)
        step("preferences", t)
        t = time.perf_counter()
        report["clusters"] = _cluster(conn, config, matrix, scope, model_row, refit=refit, seed=seed)
        step("clusters", t)
        t = time.perf_counter()
        with conn.transaction(), conn.cursor() as cur:
            report["segments"] = refresh_segments(
                cur, {n: s.where for n, s in config.segments.items()}, started_at
            )
        report["segments"]["tree"] = demographic_tree(conn, started_at.year, seed=seed)
        step("segments", t)
        conn.execute(
            "INSERT INTO analytics_runs (started_at, finished_at, mode, since, customers, config_version)"
            " VALUES (%s, now(), %s, %s, %s, %s)",
            (
                started_at,
                report["mode"],
                previous if incremental else None,
                report["customers"],
                config.version,
            ),
        )
        conn.execute("SELECT pg_advisory_unlock(hashtext('drivesight-analytics'))")
    report["seconds"] = timings
    return report
