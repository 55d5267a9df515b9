"""A retention campaign's effect on churn: churn in each treated arm against the holdout, with its interval.

Intention-to-treat, as every campaign result (cloud/push/results.py): an arm counts every customer assigned to
it, sent or not, against the holdout drawn from the same eligible customers. As the churn label of
cloud/churn/ (read from the same tables), churn is counted among the customers **active** when assigned (a
trip or a service visit in the ``active_days`` before): a customer silent already had left before any offer
(a high tier holds many such: cloud/churn/ gives them probability 1), in both groups alike, and would only
dilute the difference. An active customer **churned** when neither a trip of any of their cars nor a service
visit falls in the last ``silent_days`` of the ``days`` after their assignment. Per arm:

- ``active``: assigned customers active when assigned; ``churn``: churned / active with its Wilson interval
  (cloud.push.measure.rate);
- ``reduction``: the holdout's churn minus the arm's, in percentage points, with Newcombe's hybrid score
  interval and the score test's p-value (cloud.push.measure.uplift with the groups swapped): above 0, the
  offer kept customers;
- ``retained_per_1000``: the reduction times 1,000 treated customers (with its interval);
- ``money`` when the campaign names ``cost_per_offer`` and ``value_per_retained``: cost = offers sent x
  cost per offer, value = reduction x active x value per retained customer, ROI = (value - cost) / cost.

``complete`` is false while the last assignment's window is still open: churn counted before the window ends
is too low in every group alike, so the reduction is already unbiased but noisier.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import psycopg

from . import measure
from .assign import GLOBAL_CONTROL, HOLDOUT
from .spec import CampaignSpec

_CHURNED = """
WITH d AS (
    SELECT customer_id, arm, decision, decided_at,
           decided_at + make_interval(days => %(days)s - %(silent)s) AS silent_from,
           decided_at + make_interval(days => %(days)s) AS window_end
    FROM campaign_decisions WHERE campaign_id = %(c)s AND arm <> 'ineligible'
), m AS (
    SELECT d.*,
           EXISTS (SELECT 1 FROM trips t JOIN vehicles v ON v.vehicle_id = t.vehicle_id
                   WHERE v.customer_id = d.customer_id
                     AND t.started_at >= d.decided_at - make_interval(days => %(active)s)
                     AND t.started_at < d.decided_at)
           OR EXISTS (SELECT 1 FROM service_visits s JOIN vehicles v ON v.vehicle_id = s.vehicle_id
                      WHERE v.customer_id = d.customer_id
                        AND s.visited_at >= (d.decided_at - make_interval(days => %(active)s))::date
                        AND s.visited_at <= d.decided_at::date) AS active,
           NOT EXISTS (SELECT 1 FROM trips t JOIN vehicles v ON v.vehicle_id = t.vehicle_id
                       WHERE v.customer_id = d.customer_id AND t.started_at >= d.silent_from
                         AND t.started_at < d.window_end)
           AND NOT EXISTS (SELECT 1 FROM service_visits s JOIN vehicles v ON v.vehicle_id = s.vehicle_id
                           WHERE v.customer_id = d.customer_id AND s.visited_at >= d.silent_from::date
                             AND s.visited_at < d.window_end::date) AS silent
    FROM d
)
SELECT arm, count(*) AS assigned,
       count(*) FILTER (WHERE decision = 'sent') AS sent,
       count(*) FILTER (WHERE active) AS active,
       count(*) FILTER (WHERE active AND silent) AS churned,
       max(window_end) AS window_end
FROM m GROUP BY arm ORDER BY arm
"""


def retention_results(
    conn: psycopg.Connection[Any], spec: CampaignSpec, *, now: datetime | None = None
) -> dict[str, Any] | None:
    """The ``retention`` block of a campaign's results (see the module docstring); None unless its
    objective is retention."""
    settings = spec.retention_settings()
    if settings is None:
        return None
    now = now or datetime.now(UTC)
    rows = conn.execute(
        _CHURNED,
        {
            "c": spec.campaign_id,
            "days": settings.days,
            "silent": settings.silent_days,
            "active": settings.active_days,
        },
    ).fetchall()
    groups = {str(r[0]): r for r in rows}
    holdout = groups.get(HOLDOUT)
    ends = [r[5] for r in rows if r[5] is not None]
    arms: list[dict[str, Any]] = []
    for name in [*(a.name for a in spec.arms), HOLDOUT, GLOBAL_CONTROL]:
        r = groups.get(name)
        if r is None:
            continue
        _, assigned, sent, active, churned, _ = r
        arm: dict[str, Any] = {
            "arm": name,
            "assigned": assigned,
            "sent": sent,
            "active": active,
            "churned": churned,
            "churn": asdict(measure.rate(churned, active)),
        }
        if name not in (HOLDOUT, GLOBAL_CONTROL) and holdout is not None:
            # the holdout's churn minus the arm's: a reduction is a positive difference
            up = measure.uplift(int(holdout[4]), int(holdout[3]), churned, active)
            arm["reduction_pp"] = {
                "difference": _pp(up.difference),
                "ci_low": _pp(up.ci_low),
                "ci_high": _pp(up.ci_high),
                "p_value": up.p_value,
                "significant": up.significant,
            }
            arm["retained_per_1000"] = {
                "value": _per_1000(up.difference),
                "ci_low": _per_1000(up.ci_low),
                "ci_high": _per_1000(up.ci_high),
            }
            if settings.cost_per_offer is not None and settings.value_per_retained is not None:
                arm["money"] = asdict(
                    measure.money(sent, settings.cost_per_offer, active, up.difference,
                                  settings.value_per_retained)
                )  # fmt: skip
        arms.append(arm)
    window_end = max(ends) if ends else None
    return {
        "days": settings.days,
        "silent_days": settings.silent_days,
        "definition": (
            f"of the customers active when assigned (a trip or service visit in the {settings.active_days}"
            f" days before), churned: no trip and no service visit in the last {settings.silent_days} of"
            f" the {settings.days} days after; reduction = holdout churn - arm churn (percentage points,"
            " Newcombe 95% interval); intention-to-treat"
        ),
        "complete": window_end is not None and now >= window_end,
        "window_end": window_end.isoformat() if window_end is not None else None,
        "arms": arms,
    }


def _pp(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 3)


def _per_1000(x: float | None) -> float | None:
    return None if x is None else round(1000 * x, 1)
