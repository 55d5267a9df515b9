"""Call records and their inspections in PostgreSQL (migration 0023), and the aggregates read back.

Storing is idempotent: a record id imported again replaces the record and its inspection (one inspection a
record, the latest), so re-running a batch changes nothing and a corrected export overwrites the old one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from .inspect import Aggregate
from .model import CallRecord, Inspection

_UPSERT_RECORD = """
INSERT INTO qa_call_records
    (record_id, dealer_id, consultant_id, channel, started_at, language, turns, customer_id)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (record_id) DO UPDATE SET
    dealer_id = EXCLUDED.dealer_id, consultant_id = EXCLUDED.consultant_id, channel = EXCLUDED.channel,
    started_at = EXCLUDED.started_at, language = EXCLUDED.language, turns = EXCLUDED.turns,
    customer_id = EXCLUDED.customer_id, imported_at = now()
"""

_UPSERT_INSPECTION = """
INSERT INTO qa_inspections (record_id, rules_version, rules_hash, score, violations, steps, inspected_at)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (record_id) DO UPDATE SET
    rules_version = EXCLUDED.rules_version, rules_hash = EXCLUDED.rules_hash, score = EXCLUDED.score,
    violations = EXCLUDED.violations, steps = EXCLUDED.steps, inspected_at = EXCLUDED.inspected_at
"""

# per consultant and per dealer in one pass: GROUPING SETS, where a NULL consultant is the dealer's row
# (consultant_id is NOT NULL in the table, so the NULL cannot be a consultant's)
_SCORES = """
SELECT r.dealer_id, r.consultant_id, count(*), round(avg(i.score)::numeric, 1)::float8
FROM qa_inspections i JOIN qa_call_records r USING (record_id)
WHERE (%(dealer)s::text IS NULL OR r.dealer_id = %(dealer)s)
  AND (%(consultant)s::text IS NULL OR r.consultant_id = %(consultant)s)
GROUP BY GROUPING SETS ((r.dealer_id, r.consultant_id), (r.dealer_id))
"""

_VIOLATIONS = """
SELECT r.dealer_id, r.consultant_id, v ->> 'rule', count(*)
FROM qa_inspections i JOIN qa_call_records r USING (record_id), jsonb_array_elements(i.violations) v
WHERE (%(dealer)s::text IS NULL OR r.dealer_id = %(dealer)s)
  AND (%(consultant)s::text IS NULL OR r.consultant_id = %(consultant)s)
GROUP BY GROUPING SETS ((r.dealer_id, r.consultant_id, v ->> 'rule'), (r.dealer_id, v ->> 'rule'))
"""


def known_dealers(conn: psycopg.Connection[Any]) -> set[str]:
    """The dealer ids in the dealers table (a rule set or record for any other dealer is refused)."""
    return {str(row[0]) for row in conn.execute("SELECT dealer_id FROM dealers")}


def store(
    conn: psycopg.Connection[Any],
    records: Sequence[CallRecord],
    inspections: Sequence[Inspection],
    *,
    inspected_at: datetime,
) -> int:
    """Upsert ``records`` and their ``inspections`` (same order) in one transaction; the number stored.
    Every record's dealer must be in the dealers table (see ``known_dealers``)."""
    record_rows = [
        (
            r.record_id, r.dealer_id, r.consultant_id, r.channel.value, r.started_at, r.language.value,
            Jsonb([asdict(t) | {"speaker": t.speaker.value} for t in r.turns]), r.customer_id,
        )
        for r in records
    ]  # fmt: skip
    inspection_rows = [
        (
            i.record_id, i.rules_version, i.rules_hash, i.score,
            Jsonb([asdict(v) for v in i.violations]), Jsonb(i.steps), inspected_at,
        )
        for i in inspections
    ]  # fmt: skip
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(_UPSERT_RECORD, record_rows)
        cur.executemany(_UPSERT_INSPECTION, inspection_rows)
    return len(record_rows)


def report(
    conn: psycopg.Connection[Any], *, dealer_id: str | None = None, consultant_id: str | None = None
) -> tuple[list[Aggregate], list[Aggregate]]:
    """The stored inspections' aggregates per consultant and per dealer (optionally of one dealer or one
    consultant), sorted by dealer then consultant, as ``inspect.aggregate`` gives them for a batch."""
    params = {"dealer": dealer_id, "consultant": consultant_id}
    rows: dict[tuple[str, str | None], Aggregate] = {}
    for dealer, consultant, records, mean in conn.execute(_SCORES, params):
        rows[(dealer, consultant)] = Aggregate(dealer, consultant, int(records), float(mean))
    for dealer, consultant, rule, n in conn.execute(_VIOLATIONS, params):
        rows[(dealer, consultant)].violations[rule] = int(n)
    for row in rows.values():
        row.violations = dict(sorted(row.violations.items()))
    ordered = [rows[key] for key in sorted(rows, key=str)]
    consultants = [a for a in ordered if a.consultant_id is not None]
    return consultants, [a for a in ordered if a.consultant_id is None]
