"""Reading leads: a page of leads (every dealer's, or one dealer's), newest first, for the CLI and the API."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

#: the columns a lead is shown with (contact fields included: a dealer needs them to call)
COLUMNS = (
    "lead_id, source, channel, activity, created_at, name, phone, email, city, region, model_interest,"
    " intent, message, customer_id, status, status_reason, grade, score, reasons, duplicate_of_lead,"
    " dealer_id, assigned_at, contact_due_at, first_contact_at, updated_at"
)


def list_leads(
    conn: psycopg.Connection[Any],
    *,
    limit: int,
    before: int | None = None,
    dealer_id: str | None = None,
    status: str | None = None,
    grade: str | None = None,
    channel: str | None = None,
) -> list[dict[str, Any]]:
    """Leads newest first (by id), after the keyset ``before``, filtered by what is given."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(
        f"SELECT {COLUMNS} FROM leads WHERE (%(before)s::bigint IS NULL OR lead_id < %(before)s)"
        " AND (%(dealer)s::text IS NULL OR dealer_id = %(dealer)s)"
        " AND (%(status)s::text IS NULL OR status = %(status)s)"
        " AND (%(grade)s::text IS NULL OR grade = %(grade)s)"
        " AND (%(channel)s::text IS NULL OR channel = %(channel)s)"
        " ORDER BY lead_id DESC LIMIT %(limit)s",
        {
            "before": before,
            "dealer": dealer_id,
            "status": status,
            "grade": grade,
            "channel": channel,
            "limit": limit,
        },
    ).fetchall()


def dealer_name(conn: psycopg.Connection[Any], dealer_id: str) -> str | None:
    """The dealer's name (None: no such dealer)."""
    row = (
        conn.cursor(row_factory=tuple_row)
        .execute("SELECT name FROM dealers WHERE dealer_id = %s", (dealer_id,))
        .fetchone()
    )
    return None if row is None else str(row[0])
