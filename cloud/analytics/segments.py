"""Segments: named boolean expressions over tags and attributes, their sizes and overlaps, and a decision tree
that explains the behaviour clusters by demographics.

An expression is a small tree, like Apache Unomi's conditions::

    {"and": [{"tag": "night_driver", "min_score": 0.6},
             {"not": {"attr": "powertrain", "op": "=", "value": "ev"}}]}

- ``{"and": [...]}``, ``{"or": [...]}``, ``{"not": {...}}``;
- ``{"tag": NAME}`` (optionally ``"min_score"``): the customer carries the tag;
- ``{"attr": NAME, "op": OP, "value": V}`` with OP one of ``= != < <= > >= in``: a customer attribute
  (:data:`CUSTOMER_ATTRS`), an attribute of any of the customer's vehicles (:data:`VEHICLE_ATTRS`), or
  ``cluster``;
- ``{"churn_tier": TIER}`` (or a list of tiers): the tier of the customer's newest churn score
  (``churn_scores``, cloud/churn/);
- ``{"upgrade_intent": {"min": P, "max": P}}`` (either bound, or both): the probability of the customer's
  newest upgrade score (``upgrade_scores``, cloud/upgrade/), ``min`` inclusive, ``max`` exclusive.
- ``{"credit_score": {"min": S, "max": S}}``: the customer's newest credit score (``credit_scores``, 0-1000),
  as ``upgrade_intent``.
  A customer never scored matches neither (and so matches its ``not``).

Expressions compile to parameterized SQL (values are never pasted into the text); an unknown key, attribute
or operator is an error that says where it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg

from cloud.churn.config import TIERS

CUSTOMER_ATTRS = ("birth_year", "gender", "region", "city", "income_band", "education")
VEHICLE_ATTRS = ("model", "trim_level", "model_year", "powertrain")
OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
CHURN_TIERS = TIERS  # the churn job's: lapsed (gone already), high, medium, low


class SegmentError(ValueError):
    """An expression that cannot be compiled; the message gives its path."""


def compile_expression(expr: Any, params: list[object], path: str = "where") -> str:
    """SQL over ``customers c`` for ``expr``; parameters are appended to ``params``."""
    if not isinstance(expr, dict) or len(expr) == 0:
        raise SegmentError(f"{path}: expected an object such as {{'tag': ...}} or {{'and': [...]}}")
    if "and" in expr or "or" in expr:
        key = "and" if "and" in expr else "or"
        items = expr[key]
        if len(expr) != 1 or not isinstance(items, list) or not items:
            raise SegmentError(f"{path}.{key}: expected a non-empty list and nothing beside it")
        parts = [compile_expression(e, params, f"{path}.{key}[{i}]") for i, e in enumerate(items)]
        return "(" + f" {key.upper()} ".join(parts) + ")"
    if "not" in expr:
        if len(expr) != 1:
            raise SegmentError(f"{path}.not: nothing may stand beside 'not'")
        return f"NOT {compile_expression(expr['not'], params, path + '.not')}"
    if "tag" in expr:
        unknown = set(expr) - {"tag", "min_score"}
        if unknown:
            raise SegmentError(f"{path}: unknown key(s) {sorted(unknown)} beside 'tag'")
        params += [expr["tag"], float(expr.get("min_score", 0.0))]
        return (
            "EXISTS (SELECT 1 FROM customer_tags t WHERE t.customer_id = c.customer_id"
            " AND t.tag = %s AND t.score >= %s)"
        )
    if "attr" in expr:
        attr, op, value = expr.get("attr"), expr.get("op", "="), expr.get("value")
        if set(expr) - {"attr", "op", "value"} or "value" not in expr:
            raise SegmentError(f"{path}: an attribute condition is {{'attr', 'op', 'value'}}")
        if op == "in":
            if not isinstance(value, list):
                raise SegmentError(f"{path}: 'in' takes a list")
            sql_op, placeholder = "= ANY", "(%s)"
        elif op in OPS:
            sql_op, placeholder = OPS[op], "%s"
        else:
            raise SegmentError(f"{path}: unknown operator {op!r}; use one of {', '.join([*OPS, 'in'])}")
        params.append(value)
        if attr in CUSTOMER_ATTRS:
            return f"(c.{attr} {sql_op} {placeholder})"
        if attr in VEHICLE_ATTRS:
            return (
                "EXISTS (SELECT 1 FROM vehicles v WHERE v.customer_id = c.customer_id"
                f" AND v.{attr} {sql_op} {placeholder})"
            )
        if attr == "cluster":
            return (
                "EXISTS (SELECT 1 FROM customer_clusters k WHERE k.customer_id = c.customer_id"
                f" AND k.cluster {sql_op} {placeholder})"
            )
        raise SegmentError(
            f"{path}: unknown attribute {attr!r}; use one of {', '.join((*CUSTOMER_ATTRS, *VEHICLE_ATTRS))}"
            " or cluster"
        )
    if "churn_tier" in expr:
        return _churn_tier(expr, params, path)
    for key, leaf in _NEWEST.items():
        if key in expr:
            return _newest_in_range(expr, params, path, leaf)
    raise SegmentError(
        f"{path}: unknown condition {sorted(expr)}; use and, or, not, tag, attr, churn_tier or upgrade_intent"
    )


def _churn_tier(expr: dict[str, Any], params: list[object], path: str) -> str:
    """``{"churn_tier": TIER or [TIER, ...]}``: the tier of the customer's newest churn score."""
    if len(expr) != 1:
        raise SegmentError(f"{path}: nothing may stand beside 'churn_tier'")
    value = expr["churn_tier"]
    tiers = value if isinstance(value, list) else [value]
    if not tiers or not all(isinstance(t, str) and t in CHURN_TIERS for t in tiers):
        raise SegmentError(
            f"{path}.churn_tier: expected one of {', '.join(CHURN_TIERS)} or a non-empty list of them,"
            f" got {value!r}"
        )
    params.append(tiers)
    # the newest day's row through the (customer_id, day) key: one index probe per customer
    return (
        "coalesce((SELECT s.tier = ANY(%s) FROM churn_scores s WHERE s.customer_id = c.customer_id"
        " ORDER BY s.day DESC LIMIT 1), false)"
    )


@dataclass(frozen=True, slots=True)
class _Newest:
    """A leaf on the customer's newest stored value: its key, table, column and order, and its range."""

    key: str
    table: str
    column: str
    newest: str
    top: float
    what: str  # "P a probability", "S a score"


#: ``{"upgrade_intent": {...}}``: the probability of the customer's newest upgrade score (cloud/upgrade/);
#: ``{"credit_score": {...}}``: the customer's newest credit score (0-1000, ``credit_scores``)
_NEWEST = {
    "upgrade_intent": _Newest("upgrade_intent", "upgrade_scores", "probability", "day", 1.0, "a probability"),
    "credit_score": _Newest("credit_score", "credit_scores", "score", "scored_at", 1000.0, "a score"),
}


def _newest_in_range(expr: dict[str, Any], params: list[object], path: str, leaf: _Newest) -> str:
    """``{KEY: {"min": X, "max": X}}`` (either bound, or both): the customer's newest value of the leaf's
    table, at least ``min`` and below ``max``; a customer without one matches neither."""
    if len(expr) != 1:
        raise SegmentError(f"{path}: nothing may stand beside '{leaf.key}'")
    bounds = expr[leaf.key]
    where = f"{path}.{leaf.key}"
    span = f"from 0 to {leaf.top:g}"
    if not isinstance(bounds, dict) or not bounds or set(bounds) - {"min", "max"}:
        raise SegmentError(f"{where}: expected {{'min': X}}, {{'max': X}} or both, X {leaf.what} {span}")
    for name, value in bounds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= leaf.top:
            raise SegmentError(f"{where}.{name}: expected {leaf.what} {span}, got {value!r}")
    lo, hi = float(bounds.get("min", 0.0)), float(bounds.get("max", leaf.top + 1))
    if lo >= hi:
        raise SegmentError(f"{where}: min ({lo}) must be below max ({hi})")
    params += [lo, hi]
    return (
        f"coalesce((SELECT s.{leaf.column} >= %s AND s.{leaf.column} < %s FROM {leaf.table} s"
        f" WHERE s.customer_id = c.customer_id ORDER BY s.{leaf.newest} DESC LIMIT 1), false)"
    )


def refresh_segments(
    cur: psycopg.Cursor[tuple[object, ...]], segments: dict[str, dict[str, Any]], at: object
) -> dict[str, Any]:
    """Recompute every segment's members; return sizes and pairwise overlaps (shared members)."""
    import json

    compiled = {}
    for name, expression in segments.items():
        params: list[object] = []
        compiled[name] = (compile_expression(expression, params, f"segments.{name}.where"), params)
    cur.execute("DELETE FROM segments")  # members go with them (ON DELETE CASCADE)
    sizes = {}
    for name, (where, params) in compiled.items():
        cur.execute(
            "INSERT INTO segments (name, expression, size, computed_at) VALUES (%s, %s, 0, %s)",
            (name, json.dumps(segments[name]), at),
        )
        cur.execute(
            f"INSERT INTO segment_members (segment, customer_id) SELECT %s, c.customer_id FROM customers c"
            f" WHERE {where}",
            [name, *params],
        )
        sizes[name] = cur.rowcount
        cur.execute("UPDATE segments SET size = %s WHERE name = %s", (sizes[name], name))
    overlaps = {
        f"{a}&{b}": int(str(n))
        for a, b, n in cur.execute(
            "SELECT a.segment, b.segment, count(*) FROM segment_members a JOIN segment_members b"
            " ON a.customer_id = b.customer_id AND a.segment < b.segment GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    }
    return {"sizes": sizes, "overlaps": overlaps}


def age_band(birth_year: float, year: int) -> str:
    """Ten-year age bands: 18-29, 30-39, ... 60+."""
    age = year - birth_year
    if age < 30:
        return "18-29"
    if age >= 60:
        return "60+"
    lo = int(age // 10 * 10)
    return f"{lo}-{lo + 9}"


def demographic_tree(
    conn: psycopg.Connection[tuple[object, ...]], year: int, *, max_depth: int = 3, seed: int = 0
) -> dict[str, Any]:
    """A decision tree predicting each customer's behaviour cluster from age band, education and income band;
    returns its accuracy on the customers it was fitted on and its rules in words, largest leaves first."""
    from sklearn.tree import DecisionTreeClassifier

    rows = conn.execute(
        "SELECT c.birth_year, c.education, c.income_band, k.cluster FROM customers c"
        " JOIN customer_clusters k USING (customer_id) WHERE c.birth_year IS NOT NULL"
    ).fetchall()
    if len(rows) < 10:
        return {"customers": len(rows), "rules": []}
    columns = [
        [age_band(float(str(r[0])), year) for r in rows],
        [str(r[1]) for r in rows],
        [str(r[2]) for r in rows],
    ]
    names = ("age_band", "education", "income_band")
    levels = [sorted(set(c)) for c in columns]
    features = [f"{n}={v}" for n, lv in zip(names, levels, strict=True) for v in lv]
    x = np.column_stack(
        [np.asarray(col) == v for col, lv in zip(columns, levels, strict=True) for v in lv]
    ).astype(float)
    y = np.asarray([int(str(r[3])) for r in rows])
    tree = DecisionTreeClassifier(
        max_depth=max_depth, min_samples_leaf=max(5, len(y) // 100), random_state=seed
    )
    tree.fit(x, y)
    t = tree.tree_
    rules: list[dict[str, Any]] = []

    def walk(node: int, conditions: list[str]) -> None:
        if t.children_left[node] == -1:
            counts = t.value[node][0]
            share = counts / counts.sum()
            best = int(np.argmax(share))
            rules.append(
                {
                    "if": " and ".join(conditions) or "everyone",
                    "cluster": int(tree.classes_[best]),
                    "share": round(float(share[best]), 3),
                    "customers": int(t.n_node_samples[node]),
                }
            )
            return
        feature = features[t.feature[node]]
        walk(t.children_left[node], [*conditions, f"not {feature}"])
        walk(t.children_right[node], [*conditions, feature])

    walk(0, [])
    rules.sort(key=lambda r: -r["customers"])
    return {"customers": len(y), "accuracy": round(float(tree.score(x, y)), 4), "rules": rules}
