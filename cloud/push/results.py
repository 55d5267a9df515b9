"""A campaign's results per arm: the funnel, CTR, conversion, uplift against the holdout with its interval,
sample-ratio mismatch, the minimum detectable effect, cost, incremental revenue and ROI.

Definitions (intention-to-treat, so that treated and holdout customers are compared alike):

- ``assigned``: customers the run put in the arm (eligible when assigned: marketing consent, a car);
- ``sent``: pushes the broker acknowledged; ``delivered``: the car reported receiving it (any feedback but
  ``expired``/``suppressed``); ``displayed``, ``opened`` (opened or clicked), ``dismissed``, ``expired``
  (the car was offline past the push's expiry), ``suppressed`` (the car's own consent gate);
- ``converted``: assigned customers with a conversion within ``attribution_days`` after their decision —
  reported by the car (``converted`` feedback) or imported from the CRM (``conversions``) — on an item the
  campaign could show (the arms' fixed items; any catalogue item when an arm recommends). Holdout customers
  convert by the CRM only, which is the point: what would have happened anyway;
- ``ctr`` = opened / delivered; ``conversion`` = converted / assigned (Wilson intervals);
- ``uplift`` = conversion - the holdout's conversion (Newcombe interval, score-test p-value);
- ``roi`` = (incremental conversions x value per conversion - cost of the sends) / cost, with the values of
  the items actually sent (cloud/push/measure.py);
- ``retention`` (campaigns whose objective is retention only): churn per arm and its reduction against the
  holdout with its interval, retained customers per 1,000 treated, ROI (cloud/push/retention.py).
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import psycopg

from . import measure
from .engine import DEFAULT_GLOBAL_CONTROL_SHARE, load_campaign
from .retention import retention_results


def campaign_results(
    conn: psycopg.Connection[Any],
    campaign_id: str,
    *,
    global_control_share: float = DEFAULT_GLOBAL_CONTROL_SHARE,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The results document of one campaign (see the module docstring); a retention campaign's carries
    a ``retention`` block (cloud/push/retention.py), measured as of ``now`` (default: the clock)."""
    spec, status = load_campaign(conn, campaign_id)
    fixed = [a.content.item for a in spec.arms if a.content.item is not None]
    any_item = any(a.content.recommended is not None for a in spec.arms)
    rows = conn.execute(
        """
        WITH d AS (
            SELECT * FROM campaign_decisions WHERE campaign_id = %(c)s
        ), fb AS (
            SELECT f.push_id, array_agg(DISTINCT f.action) AS actions
            FROM push_feedback f JOIN d USING (push_id) GROUP BY f.push_id
        ), conv AS (
            SELECT d.customer_id, max(x.value) AS value
            FROM d JOIN conversions x ON x.customer_id = d.customer_id
             AND x.at >= d.decided_at AND x.at < d.decided_at + make_interval(secs => %(window)s)
             AND (%(any)s OR x.item_id = ANY(%(items)s))
            GROUP BY d.customer_id
        )
        SELECT d.arm,
               count(*) AS assigned,
               count(*) FILTER (WHERE d.decision = 'sent') AS sent,
               count(*) FILTER (WHERE fb.actions && ARRAY['delivered', 'displayed', 'opened', 'clicked',
                                                          'dismissed', 'converted']) AS delivered,
               count(*) FILTER (WHERE fb.actions && ARRAY['displayed', 'opened', 'clicked',
                                                          'converted']) AS displayed,
               count(*) FILTER (WHERE fb.actions && ARRAY['opened', 'clicked', 'converted']) AS opened,
               count(*) FILTER (WHERE 'dismissed' = ANY(fb.actions)) AS dismissed,
               count(*) FILTER (WHERE 'expired' = ANY(fb.actions)) AS expired,
               count(*) FILTER (WHERE 'suppressed' = ANY(fb.actions)) AS suppressed,
               count(*) FILTER (WHERE 'converted' = ANY(fb.actions)
                                OR conv.customer_id IS NOT NULL) AS converted,
               coalesce(sum(i.cost_per_send) FILTER (WHERE d.decision = 'sent'), 0) AS cost,
               avg(i.value_per_conversion) FILTER (WHERE d.decision = 'sent') AS value
        FROM d LEFT JOIN fb USING (push_id) LEFT JOIN conv USING (customer_id)
             LEFT JOIN content_items i ON i.item_id = d.item_id
        WHERE d.arm <> 'ineligible'
        GROUP BY d.arm ORDER BY d.arm
        """,
        {"c": campaign_id, "window": spec.attribution_days * 86400, "any": any_item, "items": fixed},
    ).fetchall()
    decisions = dict(
        conn.execute(
            "SELECT decision, count(*) FROM campaign_decisions WHERE campaign_id = %s GROUP BY 1 ORDER BY 1",
            (campaign_id,),
        ).fetchall()
    )
    groups = {str(r[0]): r for r in rows}
    holdout = groups.get("holdout")
    arms_out = []
    for name in [*(a.name for a in spec.arms), "holdout", "global_control"]:
        r = groups.get(name)
        if r is None:
            continue
        (
            _,
            assigned,
            sent,
            delivered,
            displayed,
            opened,
            dismissed,
            expired,
            suppressed,
            converted,
            cost,
            value,
        ) = r
        arm: dict[str, Any] = {
            "arm": name,
            "assigned": assigned,
            "sent": sent,
            "delivered": delivered,
            "displayed": displayed,
            "opened": opened,
            "dismissed": dismissed,
            "expired": expired,
            "suppressed": suppressed,
            "converted": converted,
            "ctr": asdict(measure.rate(opened, delivered)),
            "conversion": asdict(measure.rate(converted, assigned)),
        }
        if name not in ("holdout", "global_control") and holdout is not None:
            up = measure.uplift(converted, assigned, int(holdout[9]), int(holdout[1]))
            arm["uplift"] = {**asdict(up), "significant": up.significant}
            baseline = holdout[9] / holdout[1] if holdout[1] else 0.0
            arm["minimum_detectable_effect"] = measure.minimum_detectable_effect(
                assigned, int(holdout[1]), baseline
            )
            per_send = float(cost) / sent if sent else 0.0
            arm["money"] = asdict(measure.money(sent, per_send, assigned, up.difference, float(value or 0.0)))
        arms_out.append(arm)
    # the sample ratio: treated arms and holdout against the shares they were drawn with
    observed = {a["arm"]: a["assigned"] for a in arms_out if a["arm"] != "global_control"}
    expected = {"holdout": spec.holdout_share} | {
        name: share * (1 - spec.holdout_share) for name, share in spec.arm_shares()
    }
    srm = None
    if spec.holdout_share > 0 or len(spec.arms) > 1:
        srm = asdict(measure.sample_ratio({g: observed.get(g, 0) for g in expected if expected[g] > 0},
                                          {g: s for g, s in expected.items() if s > 0}))  # fmt: skip
    document = {
        "campaign_id": campaign_id,
        "name": spec.name,
        "status": status,
        "decisions": decisions,
        "arms": arms_out,
        "sample_ratio": srm,
        "definitions": "intention-to-treat; see cloud/push/results.py",
        "global_control_share": global_control_share,
    }
    retention = retention_results(conn, spec, now=now)
    if retention is not None:
        document["retention"] = retention
    return document
