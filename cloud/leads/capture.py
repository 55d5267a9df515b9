"""Leads from what the system knows (no form filled in), captured as new leads for :func:`process`:

- ``campaign``: a driver clicked an in-car push offering a test drive (a catalogue item of kind
  ``test_drive``): intent ``test_drive``, the campaign as the activity, the car's owner as the customer;
- ``upgrade``: a customer whose newest upgrade-intent probability (cloud/upgrade/) is at least
  ``min_upgrade``: intent ``quote``, one lead per customer and month at most;
- ``service``: a car reminded in the car of a due service or a fault (cloud/service/) at least
  ``service_after_days`` ago and still not booked: intent ``service``, one lead per car and episode, so that
  the dealer calls where the reminders did not work.

Each lead's ``external_id`` says what made it (``push:<id>``, ``upgrade:<customer>:<YYYY-MM>``,
``service:<vehicle>:<episode>``), so capturing
again finds nothing new. The contact fields come from the customer's CRM record. Whether a dealer may call
is decided when the lead is processed: a lead the system made needs the customer's ``dealer_sharing`` consent
(cloud/leads/pipeline.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
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


_UNBOOKED_SERVICE = """
SELECT r.vehicle_id, r.episode, r.customer_id, min(r.sent_at), max(r.why), c.name, c.phone, c.email, c.city,
       c.region, v.model
FROM service_reminders r
JOIN customers c ON c.customer_id = r.customer_id
LEFT JOIN vehicles v ON v.vehicle_id = r.vehicle_id
WHERE r.channel = 'push' AND r.outcome = 'sent'
  AND NOT EXISTS (SELECT 1 FROM service_reminders s
                  WHERE s.vehicle_id = r.vehicle_id AND s.episode = r.episode
                    AND s.outcome = 'stopped_by_booking')
  AND NOT EXISTS (SELECT 1 FROM leads l WHERE l.source = 'service'
                  AND l.external_id = 'service:' || r.vehicle_id || ':' || r.episode)
GROUP BY r.vehicle_id, r.episode, r.customer_id, c.name, c.phone, c.email, c.city, c.region, v.model
HAVING min(r.sent_at) <= %(since)s
"""


def capture_from_system(
    conn: psycopg.Connection[Any], *, now: datetime, min_upgrade: float, service_after_days: int = 7
) -> dict[str, int]:
    """Capture the test-drive clicks, the high upgrade intents and the unbooked service reminders not
    captured yet; how many of each."""
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
    upgrades = len(raws) - clicks
    for vehicle, episode, customer, sent, why, name, phone, email, city, region, model in cur.execute(
        _UNBOOKED_SERVICE, {"since": now - timedelta(days=service_after_days)}
    ):
        raws.append(
            RawLead(
                source="service", channel="in_car", created_at=now,
                external_id=f"service:{vehicle}:{episode}", activity="service-reminder", name=name,
                phone=phone, email=email, city=city, region=region,
                model_interest=model, intent="service", customer_id=str(customer), vehicle_id=str(vehicle),
                message=f"reminded in the car since {sent:%Y-%m-%d}, not booked: {why}",
            )
        )  # fmt: skip
    report = capture(conn, raws)
    return {
        "test_drive_clicks": clicks,
        "upgrade_intents": upgrades,
        "unbooked_services": len(raws) - clicks - upgrades,
        "captured": report.captured,
        "already": report.already,
    }
