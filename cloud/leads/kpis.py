"""Dealer KPIs and lead statistics: what happened to the leads, per dealer against its targets, per channel
and per activity.

A lead counts for the dealer it is with now, in the month it was assigned (UTC); a lead escalated away counts
for the dealer that got it (the first dealer's miss shows as ``escalated_away``). A step is **reached** when a
follow-up event of it or of a later step exists (a dealer may skip steps: an order reached the test drive).
Rates come with their Wilson 95 % interval (cloud/push/measure.py): 40 leads say little, and the interval
says how little. Times to the first contact are in hours from the assignment (p50, p90), over the leads
contacted; a lead ``lost`` as ``no_answer`` was not contacted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from cloud.push.measure import rate

#: the funnel's steps after the lead itself, in order
FUNNEL = ("contacted", "appointment", "test_drive", "order")

_REACHED = """
WITH reached AS (
    SELECT lead_id, max(CASE status WHEN 'contacted' THEN 1 WHEN 'appointment' THEN 2 WHEN 'test_drive' THEN 3
                                    WHEN 'order' THEN 4 ELSE 0 END) AS step
    FROM lead_events GROUP BY lead_id
)
"""


def _month_bounds(month: date) -> tuple[date, date]:
    first = month.replace(day=1)
    after = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, after


def _utc(day: date) -> datetime:
    """The first instant of ``day`` in UTC (a date compared with a timestamptz takes the session's zone)."""
    return datetime.combine(day, time(), tzinfo=UTC)


def _interval(successes: int, trials: int) -> dict[str, float | None]:
    if trials == 0:
        return {"rate": None, "ci_low": None, "ci_high": None}
    r = rate(successes, trials)
    return {
        "rate": None if r.value is None else round(r.value, 4),
        "ci_low": None if r.ci_low is None else round(r.ci_low, 4),
        "ci_high": None if r.ci_high is None else round(r.ci_high, 4),
    }


@dataclass(frozen=True, slots=True)
class DealerKpis:
    """One dealer's month."""

    dealer_id: str
    name: str
    month: date
    assigned: int
    contacted: int
    appointments: int
    test_drives: int
    orders: int
    lost: int
    escalated_away: int
    contact_rate: dict[str, float | None]
    conversion: dict[str, float | None]
    hours_to_first_contact_p50: float | None
    hours_to_first_contact_p90: float | None
    targets: dict[str, int | None]
    attainment: dict[str, float | None]  # actual / target per target given

    def as_json(self) -> dict[str, Any]:
        """Plain JSON data."""
        out = asdict(self)
        out["month"] = self.month.isoformat()
        return out


def dealer_kpis(conn: psycopg.Connection[Any], month: date, dealer_id: str | None = None) -> list[DealerKpis]:
    """Every dealer's KPIs for ``month`` (any day of it), or only ``dealer_id``'s; dealers without leads that
    month are listed too (a target with nothing against it is news)."""
    first, after = _month_bounds(month)
    cur = conn.cursor(row_factory=tuple_row)
    rows = cur.execute(
        _REACHED
        + """
SELECT d.dealer_id, d.name,
       count(l.lead_id),
       count(l.lead_id) FILTER (WHERE r.step >= 1 OR l.first_contact_at IS NOT NULL),
       count(l.lead_id) FILTER (WHERE r.step >= 2),
       count(l.lead_id) FILTER (WHERE r.step >= 3),
       count(l.lead_id) FILTER (WHERE r.step >= 4),
       count(l.lead_id) FILTER (WHERE l.status = 'lost'),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM l.first_contact_at - l.assigned_at))
           FILTER (WHERE l.first_contact_at IS NOT NULL) / 3600,
       percentile_cont(0.9) WITHIN GROUP (ORDER BY extract(epoch FROM l.first_contact_at - l.assigned_at))
           FILTER (WHERE l.first_contact_at IS NOT NULL) / 3600,
       (SELECT count(*) FROM lead_assignments a WHERE a.dealer_id = d.dealer_id AND a.end_reason = 'escalated'
          AND a.assigned_at >= %(first)s AND a.assigned_at < %(after)s),
       t.leads, t.contacts, t.test_drives, t.orders
FROM dealers d
LEFT JOIN leads l ON l.dealer_id = d.dealer_id AND l.assigned_at >= %(first)s AND l.assigned_at < %(after)s
LEFT JOIN reached r ON r.lead_id = l.lead_id
LEFT JOIN dealer_targets t ON t.dealer_id = d.dealer_id AND t.month = %(month)s
WHERE %(dealer)s::text IS NULL OR d.dealer_id = %(dealer)s
GROUP BY d.dealer_id, d.name, t.leads, t.contacts, t.test_drives, t.orders
ORDER BY d.dealer_id
""",
        {"first": _utc(first), "after": _utc(after), "month": first, "dealer": dealer_id},
    ).fetchall()
    out = []
    for (
        dealer, name, assigned, contacted, appointments, test_drives, orders, lost, p50, p90, escalated,
        t_leads, t_contacts, t_drives, t_orders,
    ) in rows:  # fmt: skip
        targets = {"leads": t_leads, "contacts": t_contacts, "test_drives": t_drives, "orders": t_orders}
        actual = {"leads": assigned, "contacts": contacted, "test_drives": test_drives, "orders": orders}
        attainment = {k: (round(actual[k] / v, 3) if v else None) for k, v in targets.items()}
        out.append(
            DealerKpis(
                str(dealer), str(name), first, int(assigned), int(contacted), int(appointments),
                int(test_drives), int(orders), int(lost), int(escalated),
                _interval(int(contacted), int(assigned)), _interval(int(orders), int(assigned)),
                None if p50 is None else round(float(p50), 2), None if p90 is None else round(float(p90), 2),
                targets, attainment,
            )
        )  # fmt: skip
    return out


def lead_stats(
    conn: psycopg.Connection[Any], since: date, until: date, *, by: str = "channel"
) -> list[dict[str, Any]]:
    """Per channel (or ``by="activity"``) the leads created in ``since <= day < until`` (UTC): captured,
    rejected, duplicates, grades, assigned, the funnel steps reached and the conversion of the assigned ones
    with its interval."""
    if by not in ("channel", "activity", "source"):
        raise ValueError(f"by channel, activity or source, not {by!r}")
    rows = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            _REACHED
            + f"""
SELECT coalesce(l.{by}, '(none)'), count(*),
       count(*) FILTER (WHERE l.status = 'rejected'),
       count(*) FILTER (WHERE l.status = 'duplicate'),
       count(*) FILTER (WHERE l.grade = 'A'), count(*) FILTER (WHERE l.grade = 'B'),
       count(*) FILTER (WHERE l.grade = 'C'),
       count(*) FILTER (WHERE l.assigned_at IS NOT NULL),
       count(*) FILTER (WHERE r.step >= 1), count(*) FILTER (WHERE r.step >= 2),
       count(*) FILTER (WHERE r.step >= 3), count(*) FILTER (WHERE r.step >= 4)
FROM leads l LEFT JOIN reached r USING (lead_id)
WHERE l.created_at >= %s AND l.created_at < %s
GROUP BY 1 ORDER BY 2 DESC, 1
""",
            (_utc(since), _utc(until)),
        )
        .fetchall()
    )
    out = []
    for key, n, rejected, dupes, a, b, c, assigned, contacted, appointment, drive, order in rows:
        out.append(
            {
                by: str(key),
                "captured": int(n),
                "rejected": int(rejected),
                "duplicates": int(dupes),
                "grades": {"A": int(a), "B": int(b), "C": int(c)},
                "assigned": int(assigned),
                "funnel": dict(
                    zip(FUNNEL, (int(contacted), int(appointment), int(drive), int(order)), strict=True)
                ),
                "conversion": _interval(int(order), int(assigned)),
            }
        )
    return out
