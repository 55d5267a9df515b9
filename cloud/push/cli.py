"""``drivesight cloud campaigns create|list|preview|launch|run|pause|results|decisions``.

Results on stdout (with ``--json`` only JSON), progress and errors on stderr. Exit codes: 2 for a campaign
refused (invalid, unknown, cannot run), 3 for a conflict (exists, finished, paused), 4 when the broker cannot
be reached. ``run`` is the scheduler: every running campaign once, highest priority first (so that caps go to
it), and with ``--every`` again and again until interrupted. Heavy imports happen inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine import Sender, WebhookChannel

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``campaigns`` command to the cloud command's subparsers."""
    campaigns = subparsers.add_parser("campaigns", help="push campaigns: create, preview, launch, measure")
    sub = campaigns.add_subparsers(dest="campaigns_command", required=True)
    create = sub.add_parser("create", help="create a campaign from a JSON file (cloud/push/README.md)")
    create.add_argument("file", type=Path)
    _json(create)
    _json(sub.add_parser("list", help="every campaign with its status and counts"))
    for name, text in (
        ("preview", "what launching now would decide, by decision, arm and item; nothing written or sent"),
        ("launch", "set the campaign running and run it once; again: send to whoever became sendable"),
        ("pause", "stop sending; launch again to resume"),
        ("results", "per arm: funnel, CTR, conversion, uplift with its 95%% interval, ROI"),
    ):
        p = sub.add_parser(name, help=text)
        p.add_argument("campaign_id")
        _json(p)
    run = sub.add_parser("run", help="run every running campaign once, by priority (the scheduler)")
    run.add_argument("--every", type=float, metavar="SECONDS", help="repeat until interrupted")
    _json(run)
    decisions = sub.add_parser("decisions", help="each customer's decision with its reason")
    decisions.add_argument("campaign_id")
    decisions.add_argument("--decision", help="only this decision (sent, holdout, capped, quiet_hours, ...)")
    decisions.add_argument("--limit", type=int, default=50)
    _json(decisions)
    campaigns.set_defaults(handler=_dispatch)


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")


def _dispatch(args: argparse.Namespace) -> int:
    import psycopg

    from cloud.config import CloudSettings

    from .engine import CampaignError
    from .spec import SpecError

    settings = CloudSettings()
    handlers = {
        "create": _create,
        "list": _list,
        "preview": _preview,
        "launch": _launch,
        "run": _run,
        "pause": _pause,
        "results": _results,
        "decisions": _decisions,
    }
    with psycopg.connect(settings.require_database_url(), autocommit=True) as conn:
        try:
            out = handlers[args.campaigns_command](conn, args)
        except SpecError as exc:
            log.error("%s", exc)
            return 2
        except CampaignError as exc:
            log.error("%s", exc)
            return 2 if str(exc).startswith("unknown campaign") else 3
        except (ConnectionError, TimeoutError, OSError) as exc:
            log.error("the broker cannot be reached: %s", exc)
            return 4
    if out is not None:
        document, text = out
        print(json.dumps(document, default=str) if args.json else text)
    return 0


def _sender() -> Sender:
    from cloud.config import CloudSettings
    from cloud.downlink import DownlinkPublisher, connect_service

    from .campaigns import mqtt_sender

    settings = CloudSettings()
    client = connect_service(settings)
    return mqtt_sender(DownlinkPublisher(client))


def _webhook() -> WebhookChannel | None:
    """The webhook channel when its secret is configured (a campaign with the channel is refused without)."""
    from cloud.config import CloudSettings

    from .engine import WebhookChannel

    secret = CloudSettings().webhook_secret()
    return None if secret is None else WebhookChannel(secret)


def _control_share() -> float:
    from cloud.config import CloudSettings

    return CloudSettings().push_global_control_share


def _create(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .campaigns import create
    from .spec import SpecError, parse_spec

    try:
        document = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpecError(f"{args.file}: not a readable JSON file: {exc}") from exc
    spec = parse_spec(document)
    with conn.transaction():
        create(conn, spec)
        _audit(conn, "campaign.create", spec.campaign_id, {})
    return {
        "campaign_id": spec.campaign_id,
        "status": "draft",
    }, f"campaign {spec.campaign_id} created (draft)"


def _list(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .campaigns import list_campaigns

    rows = list_campaigns(conn)
    lines = [
        f"{c['campaign_id']:<24} {c['status']:<9} prio {c['priority']:>4}  {c['starts_at'][:16]} .. "
        f"{c['ends_at'][:16]}  decided {c['decided']}, sent {c['sent']}"
        for c in rows
    ]
    return rows, "\n".join(lines) or "no campaigns"


def _preview(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .campaigns import preview

    p = preview(conn, args.campaign_id, global_control_share=_control_share())
    text = [f"campaign {p['campaign_id']} ({p['status']}): {p['audience_open']} customers to decide"]
    text += [f"  {d:<15} {n}" for d, n in p["decisions"].items()]
    text += ["arms: " + ", ".join(f"{a} {n}" for a, n in p["arms"].items())]
    text += ["items: " + ", ".join(f"{i} {n}" for i, n in p["items"].items())]
    text += [f"  e.g. {s['customer_id']}: {s['decision']} ({s['reason']})" for s in p["sample"][:5]]
    return p, "\n".join(text)


def _report(report: Any) -> tuple[Any, str]:
    document = {
        "campaign_id": report.campaign_id,
        "audience": report.audience,
        "decided": report.decided,
        "published": report.published,
        "acknowledged": report.acknowledged,
        "seconds": round(report.seconds, 3),
    }
    decided = ", ".join(f"{d} {n}" for d, n in sorted(report.decided.items())) or "nothing new"
    return document, (
        f"campaign {report.campaign_id}: {decided}; {report.acknowledged}/{report.published} pushes"
        f" acknowledged by the broker in {report.seconds:.1f} s"
    )


def _launch(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .campaigns import launch
    from .engine import load_campaign

    load_campaign(conn, args.campaign_id)  # an unknown campaign fails before the broker is involved
    out = _report(
        launch(conn, args.campaign_id, _sender(), global_control_share=_control_share(), webhook=_webhook())
    )
    _audit(conn, "campaign.launch", args.campaign_id, out[0]["decided"])
    return out


def _run(conn: Any, args: argparse.Namespace) -> tuple[Any, str] | None:
    from .campaigns import list_campaigns
    from .engine import run_campaign

    sender = _sender()
    while True:
        reports = []
        for c in list_campaigns(conn):  # highest priority first: it takes the caps
            if c["status"] == "running":
                run = run_campaign(
                    conn, c["campaign_id"], sender, global_control_share=_control_share(), webhook=_webhook()
                )
                reports.append(_report(run))
        if args.every is None:
            return [r[0] for r in reports], "\n".join(r[1] for r in reports) or "no running campaign"
        for document, text in reports:
            print(json.dumps(document) if args.json else text, flush=True)
        time.sleep(args.every)


def _pause(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .campaigns import set_status

    with conn.transaction():
        before = set_status(conn, args.campaign_id, "paused")
        _audit(conn, "campaign.pause", args.campaign_id, {})
    return {"campaign_id": args.campaign_id, "status": "paused", "was": before}, f"{args.campaign_id} paused"


def _results(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .results import campaign_results

    r = campaign_results(conn, args.campaign_id, global_control_share=_control_share())
    text = [f"campaign {r['campaign_id']} ({r['status']}): {r['name']}"]
    text.append(
        f"{'arm':<16}{'assigned':>9}{'sent':>7}{'deliv':>7}{'opened':>7}{'conv':>6}"
        "  ctr     conversion  uplift [95% CI] p"
    )
    for a in r["arms"]:
        line = (
            f"{a['arm']:<16}{a['assigned']:>9}{a['sent']:>7}{a['delivered']:>7}{a['opened']:>7}"
            f"{a['converted']:>6}  {_pct(a['ctr']['value']):<7} {_pct(a['conversion']['value']):<11}"
        )
        up = a.get("uplift")
        if up and up["difference"] is not None:
            line += (
                f" {up['difference'] * 100:+.2f} pp [{up['ci_low'] * 100:+.2f}, {up['ci_high'] * 100:+.2f}]"
                f" p={up['p_value']:.3g}"
            )
            money = a["money"]
            if money["roi"] is not None:
                line += f"  ROI {money['roi']:+.2f}"
        text.append(line)
    srm = r["sample_ratio"]
    if srm and srm["mismatch"]:
        text.append(f"WARNING: sample-ratio mismatch (p = {srm['p_value']:.2g}): check assignment, delivery")
    if "retention" in r:
        text += _retention_lines(r["retention"])
    return r, "\n".join(text)


def _retention_lines(block: dict[str, Any]) -> list[str]:
    """The retention block as text: churn per arm, its reduction against the holdout, retained, ROI."""
    state = "complete" if block["complete"] else f"open until {block['window_end']}"
    out = [f"retention over {block['days']} days ({state}): {block['definition']}"]
    for a in block["arms"]:
        line = f"  {a['arm']:<16}{a['assigned']:>9} assigned {a['active']:>7} active"
        line += f" {a['churned']:>7} churned {_pct(a['churn']['value'])}"
        red = a.get("reduction_pp")
        if red and red["difference"] is not None:
            line += (
                f"  reduction {red['difference']:+.2f} pp [{red['ci_low']:+.2f}, {red['ci_high']:+.2f}]"
                f"  retained per 1,000 treated {a['retained_per_1000']['value']:+.1f}"
            )
            if a.get("money") and a["money"]["roi"] is not None:
                line += f"  ROI {a['money']['roi']:+.2f}"
        out.append(line)
    return out


def _audit(conn: Any, action: str, campaign_id: str, detail: dict[str, Any]) -> None:
    """The operator at the console changed a campaign: audited without a key, like the privacy commands."""
    from cloud.privacy.audit import record

    record(conn, key_id=None, action=action, subject=f"campaign:{campaign_id}", outcome="ok", detail=detail)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _decisions(conn: Any, args: argparse.Namespace) -> tuple[Any, str]:
    from .engine import load_campaign

    load_campaign(conn, args.campaign_id)
    rows = conn.execute(
        "SELECT customer_id, arm, decision, reason, item_id, push_id, sent_at FROM campaign_decisions"
        " WHERE campaign_id = %s AND (%s::text IS NULL OR decision = %s) ORDER BY customer_id LIMIT %s",
        (args.campaign_id, args.decision, args.decision, args.limit),
    ).fetchall()
    keys = ("customer_id", "arm", "decision", "reason", "item_id", "push_id", "sent_at")
    document = [dict(zip(keys, r, strict=True)) for r in rows]
    text = "\n".join(f"{r[0]:<20} {r[1]:<14} {r[2]:<14} {r[4] or '-':<14} {r[3]}" for r in rows)
    return document, text or "no decisions"
