"""Which ids belong to one person: the keys export and erasure look their rows up by."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import tuple_row


@dataclass(frozen=True, slots=True)
class PersonIds:
    """A customer, the vehicles they own and the online accounts that are theirs."""

    customer_id: str
    vehicle_ids: tuple[str, ...]
    account_ids: tuple[str, ...]


def exists(conn: psycopg.Connection[Any], customer_id: str) -> bool:
    """Whether ``customer_id`` is a customer."""
    cur = conn.cursor(row_factory=tuple_row)
    return (
        cur.execute("SELECT 1 FROM customers WHERE customer_id = %s", (customer_id,)).fetchone() is not None
    )


def person_ids(conn: psycopg.Connection[Any], customer_id: str) -> PersonIds:
    """The person's ids: vehicles they own (master data or purchase record); accounts linked to them now, or
    carrying their phone or email (an account of theirs the identification left unlinked is still theirs; one
    whose link was undone and that shares neither is taken to be someone else's)."""
    cur = conn.cursor(row_factory=tuple_row)
    vehicles = cur.execute(
        "SELECT vehicle_id FROM vehicles WHERE customer_id = %(c)s"
        " UNION SELECT vehicle_id FROM purchases WHERE customer_id = %(c)s ORDER BY 1",
        {"c": customer_id},
    ).fetchall()
    accounts = cur.execute(
        "SELECT account_id FROM identity_links WHERE customer_id = %(c)s AND undone_at IS NULL"
        " UNION SELECT o.account_id FROM online_accounts o JOIN customers k ON k.customer_id = %(c)s"
        "  WHERE (k.phone IS NOT NULL AND o.phone = k.phone) OR (k.email IS NOT NULL AND o.email = k.email)"
        " ORDER BY 1",
        {"c": customer_id},
    ).fetchall()
    return PersonIds(customer_id, tuple(str(v) for (v,) in vehicles), tuple(str(a) for (a,) in accounts))
