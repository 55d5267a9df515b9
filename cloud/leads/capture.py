"""Leads from what the system knows (no form filled in), captured as new leads for :func:`process`:

- ``campaign``: a driver clicked an in-car push offering a test drive (a catalogue item of kind
  ``test_drive``): intent ``test_drive``, the campaign as the activity, the car's owner as the customer;
- ``upgrade``: a customer whose newest upgrade-intent probability (cloud/upgrade/) is at least
  ``min_upgrade``: intent ``quote``, one lead per customer and month at most.

Each lead's ``external_id`` says what made it (``push:<id>``, ``upgrade:<customer>:<YYYY-MM>``), so capturing
again finds nothing new. The contact fields come from the customer's CRM record. Whether a dealer may call
is decided when the lead is processed: a lead the system made needs the customer's ``dealer_sharing`` consent
(cloud/leads/pipeline.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .model import RawLead
from .pipeline import capture

_CLICKED_TEST_DRIVES = """
SELECT d.push_id, d.campaign_id, d.customer_id, d.vehicle_id, min(f.at), c.name, c.phone, c.email, c.city,
       c.region, v.model
FROM push_feedback f
JOIN campaign_decisions d ON d.push_id = f.push_id
JOIN content_items i ON i.item_id = d.item_id AND i.kind = 'test_drive'
JOIN customers c ON c.customer_id = d.customer_id
LEFT JOIN vehicles v ON v.vehicle_id = d.vehicle_id
WHERE f.action = 'clicked' AND f.at <= %(now)s
  AND NOT EXISTS (SELECT 1 FROM leads l WHERE l.source = 'campaign' AND l.external_id = 'push:' || d.push_id)
GROUP BY d.push_id, d.campaign_id, d.customer_id, d.vehicle_id, c.name, c.phone, c.email, c.city, c.region,
         v.model
"""

_UPGRADE_INTENT = """
SELECT s.customer_id, s.probability, s.day, c.name, c.phone, c.email, c.city, c.region
FROM (SELECT DISTINCT ON (customer_id) customer_id, probability, day FROM upgrade_scores
      ORDER BY customer_id, day DESC) s
JOIN customers c ON c.customer_id = s.customer_id
WHERE s.probability >= %(min)s
  AND NOT EXISTS (SELECT 1 FROM leads l WHERE l.source = 'upgrade'
                  AND l.external_id = 'upgrade:' || s.customer_id || ':' || to_char(%(now)s::date, 'YYYY-MM'))
"""


def capture_from_system(
    conn: psycopg.Connection[Any], *, now: datetime, min_upgrade: float
) -> dict[str, int]:
    """Capture the test-drive clicks and the high upgrade intents not captured yet; how many of each."""
    if not 0 < min_upgrade <= 1:
        raise ValueError(f"--min-upgrade must be in (0, 1], not {min_upgrade}")
    cur = conn.cursor(row_factory=tuple_row)
    month = now.strftime("%Y-%m")
    raws: list[RawLead] = []
    for push, campaign, customer, vehicle, at, name, phone, email, city, region, model in cur.execute(
        _CLICKED_TEST_DRIVES, {"now": now}
    ):
        raws.append(
            RawLead(
                source="campaign", channel="in_car", created_at=at, external_id=f"push:{push}",
                activity=str(campaign), name=name, phone=phone, email=email, city=city, region=region,
                model_interest=model, intent="test_drive", customer_id=str(customer),
                vehicle_id=None if vehicle is None else str(vehicle),
            )
        )  # fmt: skip
    clicks = len(raws)
    for customer, probability, day, name, phone, email, city, region in cur.execute(
        _UPGRADE_INTENT, {"min": min_upgrade, "now": now}
    ):
        raws.append(
            RawLead(
                source="upgrade", channel="score", created_at=now, external_id=f"upgrade:{customer}:{month}",
                activity=f"upgrade-intent {day}", name=name, phone=phone, email=email, city=city,
                region=region, intent="quote", customer_id=str(customer),
                message=f"upgrade intent {float(probability):.0%} on {day}",
            )
        )  # fmt: skip
    report = capture(conn, raws)
    return {
        "test_drive_clicks": clicks,
        "upgrade_intents": len(raws) - clicks,
        "captured": report.captured,
        "already": report.already,
    }
