"""Category preference per customer, computed in SQL.

    P(u, j) = sum_i r(u, i) * m_j(i) / sum_i r(u, i)

over the items i the customer's linked online accounts interacted with; r(u, i) sums the configured weight of
each interaction (view, comment, collect, rate) with item i, and m_j(i) is item i's membership degree in
category j (``item_categories``). Categories an item does not belong to count as 0, so the scores of one
customer need not add up to 1 when memberships do not.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from .config import Preferences


def refresh_preferences(
    cur: psycopg.Cursor[tuple[object, ...]], settings: Preferences, customers: Sequence[str] | None
) -> int:
    """Recompute ``customer_preferences`` for ``customers`` (None: everyone); return the rows written."""
    kinds = list(settings.weights)
    weights = [settings.weights[k] for k in kinds]
    scope = "" if customers is None else " AND l.customer_id = ANY(%(customers)s)"
    if customers is None:
        cur.execute("DELETE FROM customer_preferences")
    else:
        cur.execute("DELETE FROM customer_preferences WHERE customer_id = ANY(%s)", (list(customers),))
    cur.execute(
        "WITH w AS (SELECT * FROM unnest(%(kinds)s::text[], %(weights)s::float8[]) AS w(kind, weight)),"
        " r AS (SELECT l.customer_id, i.item_id, sum(w.weight) AS r"
        "       FROM interactions i JOIN w USING (kind)"
        "       JOIN identity_links l ON l.account_id = i.account_id AND l.undone_at IS NULL"
        f"      WHERE true{scope} GROUP BY l.customer_id, i.item_id),"
        " total AS (SELECT customer_id, sum(r) AS r FROM r GROUP BY customer_id)"
        " INSERT INTO customer_preferences (customer_id, category, score)"
        " SELECT r.customer_id, m.category, sum(r.r * m.membership) / total.r"
        " FROM r JOIN item_categories m USING (item_id) JOIN total USING (customer_id)"
        " WHERE total.r > 0 GROUP BY r.customer_id, m.category, total.r",
        {"kinds": kinds, "weights": weights, "customers": list(customers or [])},
    )
    return cur.rowcount
