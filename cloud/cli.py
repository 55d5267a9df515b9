"""``drivesight-cloud``: migrations, the ingest worker, the HTTP API, analytics, dead letters and model
rollout (also ``drivesight cloud ...`` in the developer's umbrella command).

The cloud image runs this entry point; it imports no simulator or training code (the layering contract in
pyproject.toml). Heavy imports (psycopg, FastAPI) happen inside the handlers, so ``--help`` stays fast.
Results go to stdout (with ``--json``, only JSON); logs, progress and errors go to stderr, and an error exits
non-zero.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from edge_agent.protocol.conventions import command_parser, configure_logging

from .access import cli as access_cli
from .churn import cli as churn_cli
from .forecast import cli as forecast_cli
from .leads import cli as leads_cli
from .privacy import cli as privacy_cli
from .push import cli as campaigns_cli
from .qa import cli as qa_cli
from .recommend import cli as recommend_cli
from .service import cli as service_cli
from .upgrade import cli as upgrade_cli

log = logging.getLogger(__name__)

MODEL_NAMES = ("driving_style", "vehicle_health", "churn_risk")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``cloud`` command and its subcommands (the umbrella ``drivesight`` command)."""
    cloud = subparsers.add_parser("cloud", help="cloud services: database, ingest, API")
    add_commands(cloud)


def add_commands(parser: argparse.ArgumentParser) -> None:
    """The cloud subcommands on ``parser``."""
    sub = parser.add_subparsers(dest="cloud_command", required=True)
    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    mig = db_sub.add_parser("migrate", help="apply pending SQL migrations")
    mig.add_argument("--json", action="store_true", help="one JSON document on stdout")
    mig.set_defaults(handler=_migrate)
    maintain = db_sub.add_parser(
        "maintain",
        help="telemetry partitions ahead, retention per stream, rollups refreshed (run hourly)",
    )
    maintain.add_argument(
        "--retention",
        type=Path,
        help="TOML retention policy per stream (default: DRIVESIGHT_RETENTION_FILE, else built-in defaults)",
    )
    maintain.add_argument("--retention-days", type=int, help="keep raw telemetry this many days (overrides)")
    maintain.add_argument("--json", action="store_true", help="one JSON document on stdout")
    maintain.set_defaults(handler=_maintain)
    privacy_cli.register_db(db_sub)
    analytics = sub.add_parser("analytics", help="portraits, segments and R&D insights")
    an_sub = analytics.add_subparsers(dest="analytics_command", required=True)
    imp = an_sub.add_parser(
        "import", help="import CRM or online data files (validated; bad files refused whole)"
    )
    imp.add_argument(
        "kind",
        help="dealers, customers, vehicles, service_visits, complaints, accounts, items, interactions,"
        " consent",
    )
    imp.add_argument("files", nargs="+", type=Path, help=".csv, .json or .jsonl")
    imp.add_argument("--json", action="store_true", help="one JSON document on stdout")
    imp.set_defaults(handler=_analytics_import)
    run = an_sub.add_parser("run", help="the analytics job: incremental over new data, or --full")
    run.add_argument("--full", action="store_true", help="recompute every customer")
    run.add_argument(
        "--refit", action="store_true", help="fit the cluster model again (implies every customer)"
    )
    run.add_argument(
        "--config", type=Path, help="portrait configuration (default: the shipped portrait.toml)"
    )
    run.add_argument("--json", action="store_true", help="print the run's report as JSON")
    run.set_defaults(handler=_analytics_run)
    ins = an_sub.add_parser("insights", help="R&D insights per vehicle group over a time window")
    ins.add_argument(
        "--by", default="model", help="comma-separated: model, trim_level, model_year, region, powertrain"
    )
    ins.add_argument("--since", type=_aware, required=True, help="ISO 8601 start (trips started at or after)")
    ins.add_argument("--until", type=_aware, required=True, help="ISO 8601 end (trips started before)")
    ins.add_argument("--min-vehicles", type=int, default=30, help="smaller groups are marked small_sample")
    ins.add_argument("--json", action="store_true", help="one JSON document on stdout (default: a line each)")
    ins.set_defaults(handler=_analytics_insights)
    undo = an_sub.add_parser("undo-merge", help="undo an identity merge (its links are never made again)")
    undo.add_argument("merge_id", type=int)
    undo.add_argument("--json", action="store_true", help="one JSON document on stdout")
    undo.set_defaults(handler=_analytics_undo)
    dead = sub.add_parser("deadletters", help="refused payloads: list, show, replay after a fix")
    dead_sub = dead.add_subparsers(dest="deadletters_command", required=True)
    dl_list = dead_sub.add_parser("list", help="the newest dead letters, and counts per reason")
    dl_list.add_argument("--reason", help="only this reason (e.g. invalid, store_failed)")
    dl_list.add_argument("--since", type=_aware, help="received at or after this ISO 8601 time")
    dl_list.add_argument("--limit", type=int, default=50)
    dl_list.add_argument("--json", action="store_true", help="one JSON document on stdout")
    dl_list.set_defaults(handler=_deadletters_list)
    dl_show = dead_sub.add_parser("show", help="one dead letter with its payload")
    dl_show.add_argument("id", type=int)
    dl_show.add_argument(
        "--json", action="store_true", help="one JSON document on stdout (payload in base64)"
    )
    dl_show.set_defaults(handler=_deadletters_show)
    dl_replay = dead_sub.add_parser(
        "replay", help="send stored payloads through the normal path again (exactly once)"
    )
    dl_replay.add_argument("ids", nargs="*", type=int, help="dead letter ids")
    dl_replay.add_argument("--reason", help="every not yet stored dead letter of this reason")
    dl_replay.add_argument("--json", action="store_true", help="one JSON document on stdout")
    dl_replay.set_defaults(handler=_deadletters_replay)
    ingest = sub.add_parser("ingest", help="run an ingest worker until interrupted")
    ingest.set_defaults(handler=_ingest)
    models = sub.add_parser("models", help="send exported models to cars")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    publish = models_sub.add_parser("publish", help="send an exported model to cars over the model downlink")
    publish.add_argument("name", choices=MODEL_NAMES)
    publish.add_argument("--dir", type=Path, help="default: the shipped models/artifacts/NAME")
    publish.add_argument("--vehicle", action="append", default=[], help="a vehicle id (repeatable)")
    publish.add_argument("--online", action="store_true", help="every vehicle whose last status is online")
    publish.add_argument(
        "--segment", action="append", default=[], help="the vehicles of a segment's customers (repeatable)"
    )
    publish.add_argument("--key", type=Path, help="Ed25519 private key (PEM) to sign the model with")
    publish.set_defaults(handler=_models_publish)
    access_cli.register(sub)
    privacy_cli.register(sub)
    campaigns_cli.register(sub)
    recommend_cli.register(sub)
    service_cli.register(sub)
    churn_cli.register(sub)
    upgrade_cli.register(sub)
    leads_cli.register(sub)
    qa_cli.register(sub)
    forecast_cli.register(sub)
    api = sub.add_parser(
        "api",
        help="serve the HTTP API",
        description="Serve the HTTP API with uvicorn. With --workers N above 1, N processes share the port;"
        " each has its own connection pools, key cache and rate-limit buckets, so the per-key rate"
        " (DRIVESIGHT_API_RATE_PER_S) is per worker: a key may get up to N times it.",
    )
    api.add_argument("--host", default=None, help="bind address (default: DRIVESIGHT_API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="port (default: DRIVESIGHT_API_PORT, 8000)")
    api.add_argument(
        "--workers",
        type=_positive,
        default=None,
        help="worker processes (default: DRIVESIGHT_API_WORKERS, 1)",
    )
    api.set_defaults(handler=_api)


def _migrate(args: argparse.Namespace) -> int:
    from .config import CloudSettings
    from .db.migrate import migrate

    applied = migrate(CloudSettings().require_database_url())
    log.info("applied %d migrations: %s", len(applied), ", ".join(applied) or "none pending")
    if args.json:
        print(json.dumps({"applied": applied}))
    return 0


def _maintain(args: argparse.Namespace) -> int:
    from .config import CloudSettings
    from .db.partitions import ensure_partitions
    from .db.retention import RetentionError, RetentionPolicy, apply_retention
    from .db.rollups import refresh

    settings = CloudSettings()
    url = settings.require_database_url()
    path = args.retention or settings.retention_file
    try:
        if path is not None:
            policy = RetentionPolicy.from_file(path, telemetry_days=args.retention_days)
        else:
            days = args.retention_days
            policy = RetentionPolicy({} if days is None else {"telemetry": days})
    except RetentionError as exc:
        log.error("retention policy refused: %s", exc)
        return 2
    raw_days = policy.keep_days["telemetry"]
    not_before = None if raw_days is None else datetime.now(UTC).date() - timedelta(days=raw_days)
    created = ensure_partitions(url, not_before=not_before)
    log.info("telemetry partitions created: %s", ", ".join(created) or "none needed")
    retention = apply_retention(url, policy)
    for stream, what in retention.items():
        log.info("retention %-18s %s", stream, what)
    days = refresh(url)
    log.info("rollups: %d days recomputed", days)
    if args.json:
        document = {"partitions_created": created, "retention": retention, "rollup_days_recomputed": days}
        print(json.dumps(document))
    return 0


def _analytics_import(args: argparse.Namespace) -> int:
    import psycopg

    from .analytics.imports import ImportError_, import_file
    from .config import CloudSettings

    settings = CloudSettings()
    imported: dict[str, int] = {}
    erased: dict[str, list[int]] = {}
    with psycopg.connect(settings.require_database_url(), autocommit=True) as conn:
        for path in args.files:
            try:
                result = import_file(conn, args.kind, path, ledger_key=settings.ledger_key_if_set())
            except ImportError_ as exc:
                log.error("%s", exc)  # files before this one stay imported: each file is one transaction
                return 2
            imported[str(path)], erased[str(path)] = result.imported, list(result.erased_lines)
            if result.erased_lines:
                log.warning(
                    "%s: %d lines of erased people skipped (lines %s)",
                    path,
                    len(result.erased_lines),
                    ", ".join(map(str, result.erased_lines[:20])),
                )
            if not args.json:
                print(f"{path}: {result.imported} {args.kind} rows imported")
    if args.json:
        print(json.dumps({"kind": args.kind, "rows_imported": imported, "erased_lines_skipped": erased}))
    return 0


def _analytics_run(args: argparse.Namespace) -> int:

    from .analytics.config import ConfigError, load_config
    from .analytics.run import RunInProgress, run_analytics
    from .config import CloudSettings

    url = CloudSettings().require_database_url()
    try:
        config = load_config(args.config)
        report = run_analytics(url, config, full=args.full or args.refit, refit=args.refit, progress=log.info)
    except ConfigError as exc:
        log.error("configuration refused: %s", exc)
        return 2
    except RunInProgress as exc:
        log.error("%s", exc)
        return 3
    if args.json:
        print(json.dumps(report, default=str))
        return 0
    print(f"{report['mode']} run: {report['customers']} customers in {sum(report['seconds'].values()):.1f} s")
    for rule in report["identification"]:
        print(f"  identity rule {rule['rule']}: {rule['linked']} linked, {rule['ambiguous']} ambiguous")
    print("  tags: " + ", ".join(f"{t} {n}" for t, n in report["tags"].items()))
    if "skipped" in report["clusters"]:
        print(f"  clusters skipped: {report['clusters']['skipped']}")
    for cluster, words in report["clusters"].get("descriptions", {}).items():
        print(f"  cluster {cluster}: {words}")
    print("  segments: " + ", ".join(f"{s} {n}" for s, n in report["segments"]["sizes"].items()))
    return 0


def _aware(text: str) -> datetime:
    """An ISO 8601 time; without an offset it is taken as UTC."""
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _analytics_insights(args: argparse.Namespace) -> int:

    import psycopg

    from .analytics.insights import insights
    from .config import CloudSettings

    with psycopg.connect(CloudSettings().require_database_url()) as conn:
        try:
            groups = insights(
                conn, tuple(args.by.split(",")), args.since, args.until, min_vehicles=args.min_vehicles
            )
        except ValueError as exc:
            log.error("%s", exc)
            return 2
    if args.json:
        print(json.dumps({"groups": groups}, default=str))
        return 0
    for group in groups:
        print(json.dumps(group, default=str))
    return 0


def _analytics_undo(args: argparse.Namespace) -> int:
    import psycopg

    from .analytics.identify import undo_merge
    from .config import CloudSettings

    with psycopg.connect(CloudSettings().require_database_url(), autocommit=True) as conn:
        try:
            links = undo_merge(conn, args.merge_id)
        except ValueError as exc:
            log.error("%s", exc)
            return 2
    if args.json:
        print(json.dumps({"merge_id": args.merge_id, "links_undone": links}))
        return 0
    print(
        f"merge {args.merge_id} undone: {links} links no longer count; run the analytics to update portraits"
    )
    return 0


def _deadletters_list(args: argparse.Namespace) -> int:
    import dataclasses

    import psycopg

    from .config import CloudSettings
    from .ingest.deadletters import list_dead_letters, reason_counts

    with psycopg.connect(CloudSettings().require_database_url()) as conn:
        rows = list_dead_letters(conn, reason=args.reason, since=args.since, limit=args.limit)
        counts = reason_counts(conn)
    if args.json:
        listed = [dataclasses.asdict(r) | {"payload": None} for r in rows]
        print(json.dumps({"not_stored_by_reason": counts, "dead_letters": listed}, default=str))
        return 0
    print("not yet stored, by reason: " + (", ".join(f"{k} {v}" for k, v in counts.items()) or "none"))
    for r in rows:
        replay = f"  [replayed: {r.replay_result}]" if r.replayed_at else ""
        print(
            f"{r.id:>8}  {r.received_at:%Y-%m-%d %H:%M:%S}  {r.reason:<18} {r.topic}  {r.size_bytes} B"
            + replay
        )
        print(f"          {r.detail[:200]}")
    return 0


def _deadletters_show(args: argparse.Namespace) -> int:
    import base64
    import dataclasses

    import psycopg

    from .config import CloudSettings
    from .ingest.deadletters import get_dead_letter

    with psycopg.connect(CloudSettings().require_database_url()) as conn:
        row = get_dead_letter(conn, args.id)
    if row is None:
        log.error("no dead letter %d", args.id)
        return 2
    payload = row.payload or b""
    if args.json:
        doc = dataclasses.asdict(row) | {"payload": base64.b64encode(payload).decode("ascii")}
        print(json.dumps(doc, default=str))
        return 0
    for name in ("id", "received_at", "topic", "reason", "detail", "size_bytes", "sha256", "truncated"):
        print(f"{name}: {getattr(row, name)}")
    if row.replayed_at:
        print(f"replayed_at: {row.replayed_at}  result: {row.replay_result}")
    print("payload:" + (" (truncated)" if row.truncated else ""))
    print(payload.decode("utf-8", "backslashreplace"))
    return 0


def _deadletters_replay(args: argparse.Namespace) -> int:
    import dataclasses
    import sys

    import psycopg

    from .config import CloudSettings
    from .ingest.deadletters import replay

    if not args.ids and args.reason is None:
        log.error("name dead letters to replay: ids, or --reason REASON")
        return 2
    with psycopg.connect(CloudSettings().require_database_url(), autocommit=True) as conn:
        outcomes = replay(conn, ids=args.ids, reason=args.reason)
    if args.json:
        print(json.dumps([dataclasses.asdict(o) for o in outcomes]))
    else:
        for o in outcomes:
            print(f"{o.id:>8}  {o.outcome:<15} {o.detail[:200]}")
    print(
        f"replayed {len(outcomes)}: "
        + ", ".join(
            f"{k} {sum(o.outcome == k for o in outcomes)}"
            for k in ("stored", "already_stored", "refused", "not_replayable")
        ),
        file=sys.stderr,
    )
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from .config import CloudSettings
    from .ingest.worker import IngestWorker

    settings = CloudSettings()
    worker = IngestWorker(
        settings.require_database_url(),
        settings.broker_address(),
        ledger_key=settings.ledger_key_if_set(),
        group=settings.ingest_group or None,
        client_id=settings.ingest_client_id,
        batch_size=settings.ingest_batch_size,
        linger_s=settings.ingest_linger_s,
        queue_size=settings.ingest_queue_size,
        ca_file=settings.mqtt_ca_file,
        cert_file=settings.mqtt_cert_file,
        key_file=settings.mqtt_key_file,
        max_clock_skew=timedelta(seconds=settings.ingest_max_clock_skew_s),
        stall_timeout_s=settings.ingest_stall_timeout_s,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker.start()
    log.info("ingest subscribed at %s", worker.broker.url())
    if settings.ingest_metrics_port:
        from .ingest.metrics_server import serve_metrics

        serve_metrics(worker, host=settings.ingest_metrics_host, port=settings.ingest_metrics_port)
        log.info(
            "metrics and health at http://%s:%d/metrics, /healthz",
            settings.ingest_metrics_host,
            settings.ingest_metrics_port,
        )
    last = time.monotonic()
    while not stop.wait(1.0):
        healthy, reason = worker.health()
        if not healthy:
            # a silent zombie is worse than a restart: the broker keeps the unacknowledged messages
            log.critical("ingest worker unhealthy, exiting to be restarted: %s", reason)
            return 1
        if time.monotonic() - last >= 30:
            m = worker.metrics
            log.info(
                "received=%d stored=%d duplicates=%d dead_letters=%d lag=%.1fs",
                m.received,
                m.stored,
                m.duplicates,
                m.dead_letters,
                m.lag_s,
            )
            last = time.monotonic()
    worker.stop()
    return 0


def _positive(text: str) -> int:
    """An integer of at least 1 (for argparse)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from .config import CloudSettings

    settings = CloudSettings()
    settings.require_database_url()  # a clear error here, not one per worker process
    workers = args.workers if args.workers is not None else settings.api_workers
    # an import string and a factory, because worker processes cannot be handed an app object: each worker
    # imports it and builds its own app, pools, key cache and rate buckets (1 worker: built in this process)
    uvicorn.run(
        "cloud.api.app:app_from_environment",
        factory=True,
        workers=workers,
        host=args.host or settings.api_host,
        port=args.port if args.port is not None else settings.api_port,
        access_log=settings.api_access_log,
    )
    return 0


def _models_publish(args: argparse.Namespace) -> int:
    from edge_agent.protocol.manifest import shipped_models

    from .model_rollout import publish

    shipped = shipped_models()
    if args.dir is None and shipped is None:
        log.error("no shipped models in this install: pass --dir")
        return 2
    directory = args.dir or shipped / args.name
    return publish(args.name, directory, args.vehicle, args.online, args.key, args.segment)


def build_parser() -> argparse.ArgumentParser:
    """The ``drivesight-cloud`` argument parser."""
    parser = command_parser("drivesight-cloud", "drivesight cloud services")
    add_commands(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``drivesight-cloud``: logs on stderr, results on stdout."""
    args = build_parser().parse_args(argv)
    configure_logging(verbose=args.verbose)
    return run_handler(args)


def run_handler(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; a database or broker that cannot be reached is a one-line error and exit
    status 1, not a traceback."""
    import psycopg

    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except psycopg.OperationalError as exc:
        log.error("database unreachable: %s", (str(exc).strip().splitlines() or ["?"])[0])
        return 1


if __name__ == "__main__":
    sys.exit(main())
