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

import numpy as np
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
    docstring), summed per customer and item: one row per pair with the weights added, the latest time and
    the number of events (``Interactions.counts``; the recommenders add a pair's repeats up anyway, and
    popularity counts the events).

    The database codes customers and items to integers (small code tables, joined by hash) and sends the
    events by binary COPY as fixed-width rows, read into numpy a block at a time and summed per pair there: no
    Python object per event (5.5 million at 100,000 customers, which as tuples took tens of seconds and
    gigabytes). Summing in the database was measured slower (a hash aggregate of 5.5 million text pairs:
    11 s)."""
    since = now - timedelta(days=window_days)
    params = {
        **ONLINE_WEIGHTS,
        "displayed": PUSH_WEIGHTS["displayed"],
        "opened": PUSH_WEIGHTS["opened"],
        "converted": PUSH_WEIGHTS["converted"],
        "conversion": CONVERSION_WEIGHT,
        "since": since,
        "now": now,
    }
    tables = ", ".join(f"pg_temp.recommend_{t}" for t in ("events", "users", "items", "accounts"))
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SET LOCAL jit = off")  # compiling the expressions costs more than it saves here
        cur.execute(f"DROP TABLE IF EXISTS {tables}")
        # the push outcomes and CRM conversions (few) with their ids; the online interactions (many) are coded
        # through the customer's account
        cur.execute(
            "CREATE TEMP TABLE recommend_events AS"
            " SELECT d.customer_id, d.item_id, (CASE f.action WHEN 'displayed' THEN %(displayed)s"
            "  WHEN 'converted' THEN %(converted)s ELSE %(opened)s END)::float8 AS weight,"
            "  extract(epoch FROM f.at)::float8 AS at"
            " FROM push_feedback f JOIN campaign_decisions d ON d.push_id = f.push_id"
            " WHERE f.action IN ('displayed', 'opened', 'clicked', 'converted') AND d.item_id IS NOT NULL"
            " AND f.at >= %(since)s AND f.at < %(now)s"
            " UNION ALL"
            " SELECT customer_id, item_id, %(conversion)s::float8, extract(epoch FROM at)::float8"
            " FROM conversions WHERE at >= %(since)s AND at < %(now)s",
            params,
        )
        # codes in the order of the ids, bytewise ("C": no locale rules per comparison)
        cur.execute(
            "CREATE TEMP TABLE recommend_users AS SELECT customer_id,"
            ' (row_number() OVER (ORDER BY customer_id COLLATE "C") - 1)::int4 AS u FROM'
            " (SELECT customer_id FROM identity_links WHERE undone_at IS NULL"
            "  UNION SELECT customer_id FROM recommend_events) ids"
        )
        cur.execute(
            "CREATE TEMP TABLE recommend_items AS SELECT item_id,"
            ' (row_number() OVER (ORDER BY item_id COLLATE "C") - 1)::int4 AS i FROM'
            " (SELECT item_id FROM content_items UNION SELECT item_id FROM recommend_events) ids"
        )
        cur.execute(
            "CREATE TEMP TABLE recommend_accounts AS SELECT l.account_id, u.u FROM identity_links l"
            " JOIN recommend_users u USING (customer_id) WHERE l.undone_at IS NULL"
        )
        cur.execute("ANALYZE recommend_users, recommend_items, recommend_accounts")
        users = np.array(
            [str(r[0]) for r in cur.execute("SELECT customer_id FROM recommend_users ORDER BY u")]
        )
        items = np.array([str(r[0]) for r in cur.execute("SELECT item_id FROM recommend_items ORDER BY i")])
        reader = _EventReader()
        with cur.copy(
            "COPY (SELECT a.u, c.i, (CASE e.kind WHEN 'view' THEN %(view)s WHEN 'rate' THEN %(rate)s"
            "  WHEN 'comment' THEN %(comment)s ELSE %(collect)s END)::float8,"
            " extract(epoch FROM e.at)::float8 FROM interactions e"
            " JOIN recommend_accounts a USING (account_id) JOIN recommend_items c USING (item_id)"
            " WHERE e.at >= %(since)s AND e.at < %(now)s"
            " UNION ALL SELECT u.u, c.i, r.weight, r.at FROM recommend_events r"
            " JOIN recommend_users u USING (customer_id) JOIN recommend_items c USING (item_id)"
            ") TO STDOUT (FORMAT binary)",
            params,
        ) as copy:
            for chunk in copy:
                reader.feed(chunk)
        cur.execute(f"DROP TABLE {tables}")
    u, i, weight, at = reader.columns()
    return _summed(users, items, u, i, weight, at)


def _summed(
    users: np.ndarray, items: np.ndarray, u: np.ndarray, i: np.ndarray, weight: np.ndarray, at: np.ndarray
) -> Interactions:
    """One row per (user, item) code pair: weights added, the latest time, the number of events; only the
    users and items that occur keep a code (in the order of the given ids)."""
    key = u.astype(np.int64) * max(len(items), 1) + i
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    pair_u, pair_i = u[order][starts], i[order][starts]
    summed = np.add.reduceat(weight[order], starts) if len(key) else np.zeros(0)
    latest = np.maximum.reduceat(at[order], starts) if len(key) else np.zeros(0)
    counts = np.diff(np.r_[starts, len(key)])
    used_u, user_codes = np.unique(pair_u, return_inverse=True)
    used_i, item_codes = np.unique(pair_i, return_inverse=True)
    return Interactions(
        tuple(users[used_u].tolist()),
        tuple(items[used_i].tolist()),
        user_codes.astype(np.int64),
        item_codes.astype(np.int64),
        summed.astype(np.float64),
        latest.astype(np.float64),
        counts.astype(np.int64),
    )


class _EventReader:
    """Binary COPY rows (user code int4, item code int4, weight float8, time float8) into numpy, parsed every
    :data:`_PARSE_BYTES` so that the raw bytes never pile up."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._header = False
        self._parts: list[np.ndarray] = []

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        """One chunk of the COPY stream."""
        self._pending += chunk
        if len(self._pending) >= _PARSE_BYTES:
            self._parse()

    def _parse(self) -> None:
        data = self._pending
        start = 0
        if not self._header:
            if len(data) < _COPY_HEADER:
                return
            if data[:11] != b"PGCOPY\n\xff\r\n\x00" or data[15:19] != bytes(4):
                raise RuntimeError("not a PostgreSQL binary COPY stream")
            self._header, start = True, _COPY_HEADER
        rows = (len(data) - start) // _EVENT.itemsize
        if rows:
            block = np.frombuffer(data, dtype=_EVENT, count=rows, offset=start)
            if not (block["fields"] == 4).all():
                raise RuntimeError("unexpected COPY row (a NULL, or the trailer mid-stream)")
            self._parts.append(block[["u", "i", "weight", "at"]].astype(_NATIVE))
            del block  # the view pins the buffer, which is cut next
        del data[: start + rows * _EVENT.itemsize]

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """User codes, item codes, weights, times (after the stream's end)."""
        if self._pending.endswith(b"\xff\xff"):
            del self._pending[-2:]  # the trailer
        self._parse()
        if self._pending:
            raise RuntimeError(f"{len(self._pending)} bytes left over in the COPY stream")
        rows = np.concatenate(self._parts) if self._parts else np.zeros(0, dtype=_NATIVE)
        return rows["u"], rows["i"], rows["weight"], rows["at"]


#: PostgreSQL's binary COPY header: an 11-byte signature, 4 bytes of flags, 4 of header extension length (0)
_COPY_HEADER = 19
#: one event as binary COPY sends it: the field count, then each field's length and value (big-endian); never
#: NULL (codes of joined ids, a weight from the table above, a NOT NULL time)
_EVENT = np.dtype(
    [
        ("fields", ">i2"),
        ("u_len", ">i4"),
        ("u", ">i4"),
        ("i_len", ">i4"),
        ("i", ">i4"),
        ("weight_len", ">i4"),
        ("weight", ">f8"),
        ("at_len", ">i4"),
        ("at", ">f8"),
    ]
)
_NATIVE = np.dtype([("u", "=i4"), ("i", "=i4"), ("weight", "=f8"), ("at", "=f8")])
#: parse the COPY stream every 16 MB (some 400,000 events)
_PARSE_BYTES = 16 << 20


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
