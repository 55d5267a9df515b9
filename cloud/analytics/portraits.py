"""Features and tags per customer: aggregation in SQL (one query per source), one row per customer in numpy.

Values are stored at full precision: a float aggregate depends on the order PostgreSQL sums in, which differs
between a full run and one scoped to some customers, so two runs agree to about 1e-12, not to the last bit,
and rounding would turn that into visible differences at rounding ties (found with trip distances that have
four decimals, whose means often end exactly on a tie).

:func:`compute_features` returns a matrix with a row per customer and a column per configured feature (NaN:
no value). :func:`compute_tags` scores every tag over that matrix at once. :func:`replace_rows` writes results
for a set of customers (all of them, or those an incremental run touched) by delete and COPY.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import psycopg

from .config import SOURCES, PortraitConfig


@dataclass(frozen=True, slots=True)
class FeatureMatrix:
    """Customers (row order), feature names (column order) and values (NaN where a customer has none)."""

    customers: list[str]
    names: list[str]
    values: np.ndarray

    def column(self, name: str) -> np.ndarray:
        """One feature's values for every customer."""
        return self.values[:, self.names.index(name)]


def compute_features(
    conn: psycopg.Connection[tuple[object, ...]],
    config: PortraitConfig,
    customers: Sequence[str] | None = None,
) -> FeatureMatrix:
    """Every configured feature for ``customers`` (None: every customer in the CRM)."""
    if customers is None:
        ids = [str(r[0]) for r in conn.execute("SELECT customer_id FROM customers ORDER BY customer_id")]
    else:
        ids = sorted(set(customers))
    names = list(config.features)
    values = np.full((len(ids), len(names)), np.nan)
    row_of = {c: i for i, c in enumerate(ids)}
    for j, name in enumerate(names):
        default = config.features[name].default
        if default is not None:
            values[:, j] = default
    by_source: dict[str, list[str]] = {}
    for name, feature in config.features.items():
        by_source.setdefault(feature.source, []).append(name)
    for source, members in by_source.items():
        select = ", ".join(f"({config.features[n].sql})::float8" for n in members)
        where = "" if customers is None else " WHERE v.customer_id = ANY(%s)"
        params = () if customers is None else (ids,)
        cursor = conn.execute(
            f"SELECT v.customer_id, {select} FROM {SOURCES[source]}{where} GROUP BY v.customer_id",
            params,
        )
        columns = [names.index(n) for n in members]
        for row in cursor:
            i = row_of.get(str(row[0]))
            if i is None:
                continue  # a vehicle whose customer is not in the CRM: nothing to attach the portrait to
            values[i, columns] = [np.nan if v is None else float(str(v)) for v in row[1:]]
    return FeatureMatrix(ids, names, values)


@dataclass(frozen=True, slots=True)
class TagRows:
    """Per tag, which customers (row indexes) carry it, with their scores and evidence."""

    tag: str
    rows: np.ndarray
    scores: np.ndarray
    evidence: list[dict[str, float]]


def compute_tags(matrix: FeatureMatrix, config: PortraitConfig) -> list[TagRows]:
    """Score every configured tag for every customer of ``matrix`` (vectorized per condition)."""
    trips = np.nan_to_num(matrix.column("trips"))
    out = []
    for name, tag in config.tags.items():
        holds = trips >= tag.min_trips
        score = np.ones(len(trips))
        for c in tag.conditions:
            x = matrix.column(c.feature)
            with np.errstate(invalid="ignore"):
                ok = (x >= c.threshold) if c.op == ">=" else (x <= c.threshold)
            holds &= ok & ~np.isnan(x)
            ramp = np.clip((x - c.threshold) / (c.full - c.threshold), 0, 1)
            score = np.minimum(score, 0.5 + 0.5 * np.nan_to_num(ramp))
        rows = np.flatnonzero(holds)
        feats = [c.feature for c in tag.conditions]
        evidence = [
            {"trips": float(trips[i]), **{f: float(matrix.column(f)[i]) for f in feats}} for i in rows
        ]
        out.append(TagRows(name, rows, score[rows], evidence))
    return out


def replace_rows(
    cur: psycopg.Cursor[tuple[object, ...]],
    table: str,
    columns: Sequence[str],
    customers: Sequence[str] | None,
    rows: Iterable[Sequence[object]],
) -> None:
    """Replace ``table``'s rows of ``customers`` (None: all rows) with ``rows`` (COPY)."""
    if customers is None:
        cur.execute(f"DELETE FROM {table}")
    else:
        cur.execute(f"DELETE FROM {table} WHERE customer_id = ANY(%s)", (list(customers),))
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def feature_rows(matrix: FeatureMatrix, computed_at: object) -> Iterable[tuple[object, ...]]:
    """``customer_features`` rows: the values as a JSON object without the empty ones."""
    for i, customer in enumerate(matrix.customers):
        values = {n: float(v) for n, v in zip(matrix.names, matrix.values[i], strict=True) if v == v}
        yield customer, json.dumps(values), computed_at


def tag_rows(matrix: FeatureMatrix, tags: list[TagRows], version: int) -> Iterable[tuple[object, ...]]:
    """``customer_tags`` rows."""
    for t in tags:
        for i, score, evidence in zip(t.rows, t.scores, t.evidence, strict=True):
            yield matrix.customers[i], t.tag, float(score), json.dumps(evidence), version
