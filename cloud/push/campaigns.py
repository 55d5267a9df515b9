"""Campaigns' life: create (validated, stored as a draft), preview (what a run would decide, nothing written
or sent), launch (running, then a first run), pause, resume by launching again, and the MQTT sender.

Status: ``draft`` → ``running`` ⇄ ``paused``; ``finished`` once a run finds the schedule over. A paused
campaign sends nothing; its decisions and results stay.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import psycopg

from cloud.downlink import DownlinkPublisher

from .engine import (
    DEFAULT_GLOBAL_CONTROL_SHARE,
    CampaignError,
    Outgoing,
    RunReport,
    Sender,
    WebhookChannel,
    decide,
    load_campaign,
    run_campaign,
)
from .spec import CampaignSpec, SpecError, check_against_database

log = logging.getLogger(__name__)


class CampaignExists(CampaignError):
    """A campaign with this id exists already."""


def create(
    conn: psycopg.Connection[Any],
    spec: CampaignSpec,
    *,
    key_id: int | None = None,
    now: datetime | None = None,
) -> None:
    """Store a validated campaign as a draft; refused (:class:`SpecError`) when the database says it cannot
    run."""
    check_against_database(conn, spec, now)
    row = conn.execute(
        "INSERT INTO campaigns (campaign_id, name, spec, priority, starts_at, ends_at, created_by_key)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (campaign_id) DO NOTHING RETURNING campaign_id",
        (
            spec.campaign_id,
            spec.name,
            json.dumps(spec.model_dump(mode="json", by_alias=True)),
            spec.priority,
            spec.starts_at,
            spec.ends_at,
            key_id,
        ),
    ).fetchone()
    if row is None:
        raise CampaignExists(f"campaign {spec.campaign_id!r} exists already")


def preview(
    conn: psycopg.Connection[Any],
    campaign_id: str,
    *,
    now: datetime | None = None,
    global_control_share: float = DEFAULT_GLOBAL_CONTROL_SHARE,
    sample: int = 10,
) -> dict[str, Any]:
    """What a run now would decide — counts per decision and arm, and a sample of decisions with their
    reasons — without writing or sending anything."""
    now = now or datetime.now(UTC)
    spec, status = load_campaign(conn, campaign_id)
    check_against_database(conn, spec, now)
    with conn.transaction(force_rollback=True):
        decisions = decide(conn, spec, now, global_control_share=global_control_share)
    by_arm: Counter[str] = Counter(d.arm for d in decisions)
    return {
        "campaign_id": campaign_id,
        "status": status,
        "audience_open": len(decisions),
        # "sent" here: what a launch now would send
        "decisions": dict(
            Counter("sent" if d.decision == "sending" else d.decision for d in decisions).most_common()
        ),
        "arms": dict(sorted(by_arm.items())),
        "items": dict(Counter(d.item_id for d in decisions if d.item_id).most_common(10)),
        "sample": [
            {
                "customer_id": d.customer_id,
                "arm": d.arm,
                "decision": "sent" if d.decision == "sending" else d.decision,
                "reason": d.reason,
                "item_id": d.item_id,
            }
            for d in _spread(decisions, sample)
        ],
    }


def _spread(decisions: Sequence[Any], n: int) -> list[Any]:
    """Up to ``n`` decisions, the first of each kind before the second of any (a sample that shows every
    reason a run would give)."""
    by_kind: dict[str, list[Any]] = {}
    for d in decisions:
        by_kind.setdefault(d.decision, []).append(d)
    out: list[Any] = []
    depth = 0
    while len(out) < n and any(len(v) > depth for v in by_kind.values()):
        out += [v[depth] for v in by_kind.values() if len(v) > depth][: n - len(out)]
        depth += 1
    return out


def set_status(conn: psycopg.Connection[Any], campaign_id: str, status: str) -> str:
    """Move a campaign to ``running`` or ``paused``; return its status before."""
    _, before = load_campaign(conn, campaign_id)
    if before == "finished":
        raise CampaignError(f"campaign {campaign_id!r} is finished")
    conn.execute(
        "UPDATE campaigns SET status = %s, updated_at = now() WHERE campaign_id = %s", (status, campaign_id)
    )
    return before


def launch(
    conn: psycopg.Connection[Any],
    campaign_id: str,
    sender: Sender,
    *,
    now: datetime | None = None,
    global_control_share: float = DEFAULT_GLOBAL_CONTROL_SHARE,
    webhook: WebhookChannel | None = None,
) -> RunReport:
    """Set the campaign running (checked against the database again) and run it once; run it again to send
    to whoever became sendable (quiet hours over, caps renewed) — nothing is ever sent twice."""
    spec, status = load_campaign(conn, campaign_id)
    if "webhook" in spec.channels and webhook is None:
        raise CampaignError(
            f"campaign {campaign_id!r} has the webhook channel: set DRIVESIGHT_PUSH_WEBHOOK_SECRET_FILE (its"
            " signing secret) to run it"
        )
    if status != "running":
        check_against_database(conn, spec, now)
        set_status(conn, campaign_id, "running")
    return run_campaign(
        conn, campaign_id, sender, now=now, global_control_share=global_control_share, webhook=webhook
    )


def list_campaigns(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every campaign with its status, schedule and decision counts."""
    rows = conn.execute(
        "SELECT c.campaign_id, c.name, c.status, c.priority, c.starts_at, c.ends_at,"
        " count(d.customer_id), count(d.sent_at)"
        " FROM campaigns c LEFT JOIN campaign_decisions d USING (campaign_id)"
        " GROUP BY c.campaign_id ORDER BY c.priority DESC, c.starts_at, c.campaign_id"
    ).fetchall()
    return [
        {
            "campaign_id": r[0],
            "name": r[1],
            "status": r[2],
            "priority": r[3],
            "starts_at": r[4].isoformat(),
            "ends_at": r[5].isoformat(),
            "decided": r[6],
            "sent": r[7],
        }
        for r in rows
    ]


def mqtt_sender(publisher: DownlinkPublisher, *, timeout_s: float = 60.0) -> Sender:
    """A sender publishing pushes QoS 1 through ``publisher``; it returns the push ids acknowledged."""

    def send(outgoing: Sequence[Outgoing]) -> set[str]:
        acked = publisher.send_many([(o.vehicle_id, o.push) for o in outgoing], timeout_s=timeout_s)
        missing = acked.count(False)
        if missing:
            log.warning(
                "%d of %d pushes were not acknowledged; the next run sends them again", missing, len(acked)
            )
        return {o.push.push_id for o, ok in zip(outgoing, acked, strict=True) if ok}

    return send


__all__ = [
    "CampaignError",
    "CampaignExists",
    "SpecError",
    "create",
    "launch",
    "list_campaigns",
    "mqtt_sender",
    "preview",
    "set_status",
]
