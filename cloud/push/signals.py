"""What the recommenders learn from, read from the database: every interaction keyed by customer, and the
features of customers (portrait) and catalogue items.

Interactions, with their weight (an implicit-feedback strength; the learned models read it as confidence):

| source | weight |
| --- | --- |
| online view / rate / comment / collect (of an account linked to the customer) | 1 / 2 / 2 / 3 |
| push outcome from the car: displayed / opened or clicked / converted | 0.5 / 2 / 5 |
| conversion from the CRM (``conversions``) | 5 |

A dismissed push is not a signal of interest and is left out (implicit-feedback models take no negatives);
unlinked accounts have no customer yet and are left out too. Only the last ``window_days`` count.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from cloud.recommend.data import Interactions, ItemAttributes, ItemFeatures, UserAttributes, UserFeatures

#: how strongly each online interaction kind says "interested"
ONLINE_WEIGHTS = {"view": 1.0, "rate": 2.0, "comment": 2.0, "collect": 3.0}
#: how strongly each push outcome says it
PUSH_WEIGHTS = {"displayed": 0.5, "opened": 2.0, "clicked": 2.0, "converted": 5.0}
CONVERSION_WEIGHT = 5.0


def load_interactions(conn: psycopg.Connection[Any], now: datetime, window_days: float = 365) -> Interactions:
    """Every interaction of the last ``window_days`` before ``now``, by customer (see the module
    docstring)."""
    since = now - timedelta(days=window_days)
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            "SELECT l.customer_id, i.item_id, CASE i.kind WHEN 'view' THEN %(view)s WHEN 'rate' THEN %(rate)s"
            "  WHEN 'comment' THEN %(comment)s ELSE %(collect)s END, extract(epoch FROM i.at)"
            " FROM interactions i"
            " JOIN identity_links l ON l.account_id = i.account_id AND l.undone_at IS NULL"
            " WHERE i.at >= %(since)s AND i.at < %(now)s"
            " UNION ALL"
            " SELECT d.customer_id, d.item_id, CASE f.action WHEN 'displayed' THEN %(displayed)s"
            "  WHEN 'converted' THEN %(converted)s ELSE %(opened)s END, extract(epoch FROM f.at)"
            " FROM push_feedback f JOIN campaign_decisions d ON d.push_id = f.push_id"
            " WHERE f.action IN ('displayed', 'opened', 'clicked', 'converted') AND d.item_id IS NOT NULL"
            " AND f.at >= %(since)s AND f.at < %(now)s"
            " UNION ALL"
            " SELECT customer_id, item_id, %(conversion)s, extract(epoch FROM at) FROM conversions"
            " WHERE at >= %(since)s AND at < %(now)s",
            {
                **ONLINE_WEIGHTS,
                "displayed": PUSH_WEIGHTS["displayed"],
                "opened": PUSH_WEIGHTS["opened"],
                "converted": PUSH_WEIGHTS["converted"],
                "conversion": CONVERSION_WEIGHT,
                "since": since,
                "now": now,
            },
        )
        .fetchall()
    )
    return Interactions.from_arrays(
        [r[0] for r in rows], [r[1] for r in rows], [float(r[2]) for r in rows], [float(r[3]) for r in rows]
    )


def load_user_features(conn: psycopg.Connection[Any]) -> UserFeatures:
    """Every customer's portrait tags and category preferences, region and (most recently seen) car model."""
    cur = conn.cursor(row_factory=tuple_row)
    tags: dict[str, dict[str, float]] = {}
    for customer, tag, score in cur.execute("SELECT customer_id, tag, score FROM customer_tags"):
        tags.setdefault(customer, {})[tag] = float(score)
    prefs: dict[str, dict[str, float]] = {}
    for customer, category, score in cur.execute(
        "SELECT customer_id, category, score FROM customer_preferences"
    ):
        prefs.setdefault(customer, {})[category] = float(score)
    users = {}
    for customer, region, model in cur.execute(
        "SELECT c.customer_id, coalesce(v.region, c.region), v.model FROM customers c"
        " LEFT JOIN LATERAL (SELECT region, model FROM vehicles WHERE customer_id = c.customer_id"
        "  ORDER BY last_seen DESC NULLS LAST, vehicle_id LIMIT 1) v ON true"
    ):
        users[customer] = UserAttributes(tags.get(customer, {}), prefs.get(customer, {}), region, model)
    return UserFeatures(users)


def load_item_features(conn: psycopg.Connection[Any]) -> ItemFeatures:
    """Every catalogue item's tags, categories, targets and validity."""
    cur = conn.cursor(row_factory=tuple_row)
    categories: dict[str, dict[str, float]] = {}
    for item, category, membership in cur.execute(
        "SELECT item_id, category, membership FROM item_categories"
    ):
        categories.setdefault(item, {})[category] = float(membership)
    items = {}
    for item, tags, models, regions, valid_from, valid_until in cur.execute(
        "SELECT item_id, tags, target_models, target_regions, extract(epoch FROM valid_from),"
        " extract(epoch FROM valid_until) FROM content_items"
    ):
        items[item] = ItemAttributes(
            {t: 1.0 for t in tags},
            categories.get(item, {}),
            frozenset(regions),
            frozenset(models),
            None if valid_from is None else float(valid_from),
            None if valid_until is None else float(valid_until),
        )
    return ItemFeatures(items)
