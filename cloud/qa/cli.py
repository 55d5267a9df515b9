"""``drivesight cloud qa inspect|report``: score call transcripts against the dealers' rules, and read the
stored aggregates back.

Results on stdout (with ``--json`` exactly one JSON document), progress, problems and errors on stderr.
Exit codes: 1 for a database that cannot be reached, 2 for refused input (a file that cannot be read or
decoded, a CSV without the needed columns, a rule set refused). Broken lines and records do not stop a
batch: each is reported on stderr (and under ``problems`` in the JSON) with its file, line and reason, the
rest is inspected, and the exit status stays 0. ``--store`` and ``report`` use ``DRIVESIGHT_DATABASE_URL``.
Heavy imports happen inside the handlers, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``qa`` command to the cloud command's subparsers."""
    qa = subparsers.add_parser("qa", help="call-record quality inspection: score dealer conversations")
    sub = qa.add_subparsers(dest="qa_command", required=True)
    inspect = sub.add_parser("inspect", help="score transcripts (JSON lines or CSV) against the rules")
    inspect.add_argument("files", nargs="+", type=Path, help=".jsonl (a record a line), .csv (a turn a row)")
    inspect.add_argument("--rules", type=Path, help="a rules TOML laid over the shipped cloud/qa/rules.toml")
    inspect.add_argument("--store", action="store_true", help="upsert records and inspections (database)")
    report = sub.add_parser("report", help="stored inspections per consultant and dealer")
    report.add_argument("--dealer", help="only this dealer")
    report.add_argument("--consultant", help="only this consultant")
    for p in (inspect, report):
        p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    qa.set_defaults(handler=_dispatch)


def _dispatch(args: argparse.Namespace) -> int:
    from . import QaError

    try:
        document, text = _inspect(args) if args.qa_command == "inspect" else _report(args)
    except QaError as exc:
        log.error("%s", exc)
        return 2
    print(json.dumps(document, ensure_ascii=False) if args.json else text)
    return 0


def _inspect(args: argparse.Namespace) -> tuple[Any, str]:
    from .inspect import aggregate, inspect_all
    from .model import Problem
    from .read import read_files
    from .rules import load_rules

    started = time.perf_counter()
    read = read_files(args.files)
    records = read.records
    problems = list(read.problems)
    stored: int | None = None
    if args.store:
        import psycopg

        from cloud.config import CloudSettings

        from .store import known_dealers, store

        with psycopg.connect(CloudSettings().require_database_url(), autocommit=True) as conn:
            dealers = known_dealers(conn)
            book = load_rules(args.rules, known_dealers=dealers)
            for r, file, line in zip(records, read.files, read.lines, strict=True):
                if r.dealer_id not in dealers:
                    reason = f"dealer {r.dealer_id!r} unknown (not in the dealers table): not stored"
                    problems.append(Problem(file, line, reason, r.record_id))
            records = [r for r in records if r.dealer_id in dealers]
            inspections = inspect_all(records, book)
            stored = store(conn, records, inspections, inspected_at=datetime.now(UTC))
    else:
        book = load_rules(args.rules)
        inspections = inspect_all(records, book)
    for p in problems:
        where = f"{p.file}:{p.line}: " if p.file else ""
        log.warning("%s%s%s", where, f"record {p.record_id}: " if p.record_id else "", p.reason)
    consultants, dealers_ = aggregate(inspections)
    seconds = time.perf_counter() - started
    log.info(
        "%d records inspected in %.2f s, %d problems%s",
        len(inspections), seconds, len(problems), "" if stored is None else f", {stored} stored",
    )  # fmt: skip
    document = {
        "rules_version": book.default.version,
        "records": [_inspection_json(i) for i in inspections],
        "consultants": [asdict(a) for a in consultants],
        "dealers": [asdict(a) for a in dealers_],
        "problems": [asdict(p) for p in problems],
        "stored": stored,
    }
    lines = []
    for i in inspections:
        broken = ", ".join(dict.fromkeys(v.rule for v in i.violations)) or "none"
        lines.append(f"{i.record_id:<20} {i.dealer_id}/{i.consultant_id} {i.language.value} {i.score:5.1f}"
                     f"  broken: {broken}")  # fmt: skip
    lines += _aggregate_lines(consultants, dealers_)
    if problems:
        lines.append(f"{len(problems)} lines or records not inspected (see stderr)")
    return document, "\n".join(lines)


def _report(args: argparse.Namespace) -> tuple[Any, str]:
    import psycopg

    from cloud.config import CloudSettings

    from .store import report

    with psycopg.connect(CloudSettings().require_database_url()) as conn:
        consultants, dealers = report(conn, dealer_id=args.dealer, consultant_id=args.consultant)
    document = {"consultants": [asdict(a) for a in consultants], "dealers": [asdict(a) for a in dealers]}
    return document, "\n".join(_aggregate_lines(consultants, dealers)) or "no inspections stored"


def _inspection_json(inspection: Any) -> dict[str, Any]:
    return {
        "record_id": inspection.record_id,
        "dealer_id": inspection.dealer_id,
        "consultant_id": inspection.consultant_id,
        "language": inspection.language.value,
        "score": inspection.score,
        "rules_hash": inspection.rules_hash,
        "violations": [asdict(v) for v in inspection.violations],
        "steps": inspection.steps,
    }


def _aggregate_lines(consultants: list[Any], dealers: list[Any]) -> list[str]:
    lines = []
    for title, rows in (("per consultant", consultants), ("per dealer", dealers)):
        if rows:
            lines.append(f"{title}:")
        for a in rows:
            who = a.dealer_id if a.consultant_id is None else f"{a.dealer_id}/{a.consultant_id}"
            counts = ", ".join(f"{rule} {n}" for rule, n in a.violations.items()) or "no violations"
            lines.append(f"  {who:<24} {a.records:>6} records  mean {a.mean_score:5.1f}  {counts}")
    return lines
