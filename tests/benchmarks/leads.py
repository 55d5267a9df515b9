"""Dealer leads at scale (issue 17): one processing run over a simulated month of leads, its duplicate and
junk decisions against the hidden truth, call-inspection speed, and what routing and speed do to orders.

The world (simulators/leads_world.py, ``--leads`` leads over 30 days, 40 dealers, half as many known
customers as leads) is loaded into a private database: the dealers and customers through
cloud/analytics/imports.py (``import_file`` on the world's CSV writers' files), every lead through
``cloud.leads.pipeline.capture``; then ONE ``process(conn, load_routing(), now=<the world's end>)`` runs.

Printed (one JSON line on stdout; progress goes to stderr):

- ``leads``: leads simulated; ``captured``: leads ``capture`` stored;
- ``process_s``: wall time of the one ``process`` call (target <= 60 s at 100,000 leads);
  ``process_steps_s``: its own breakdown (``clean``, ``dedupe``, ``rate_route``, ``write``);
- ``rejected`` (by reason), ``duplicates``, ``linked_to_customers``, ``grades``, ``assigned`` (by rule),
  ``unassigned`` (by reason): the run's report, as returned;
- ``duplicates_found_precision`` / ``duplicates_found_recall`` (targets >= 0.95). A lead is **found** when
  the run made it a duplicate (``status = 'duplicate'``, pointing at ``duplicate_of_lead``) or linked it to a
  known customer by a merge (a ``lead_merges`` row with ``customer_id``, not undone; a link to the very
  customer the lead's source named finds nothing and is left out: ``duplicate_detail`` counts those as
  ``linked_to_the_customer_the_source_named``, a link to another one is found and wrong). DB leads map back to
  the world's indexes by ``raw->>'external_id'`` (the world's ids end in the lead index + 1). A found lead is
  **correct** when what it points at is the same true person (``world.person``, never junk's -1): the lead
  it duplicates has the same person, or the customer it was linked to is its ``true_customer``. Precision =
  correct found / found. Recall = the world's duplicates (``is_duplicate``: a person's repeat lead, or a
  known customer's lead whose source did not name them; no source that names the customer makes those)
  that are found and correct / all ``is_duplicate`` leads. A found lead that is not an ``is_duplicate``
  but points at its own person (a known customer's second named lead, made a duplicate of the first) counts
  as correct in the precision and is left out of the recall (``duplicate_detail`` gives those counts);
- ``junk_rejected_precision`` / ``junk_rejected_recall``: leads ``rejected`` that are ``is_junk`` /
  rejected, and / ``is_junk``;
- ``qa_records_per_s``: ``cloud.qa.inspect.inspect_all`` over 5,000 synthetic transcripts (made here: no
  shared generator exists; 70 % Chinese, 8 to 30 turns, steps left out, forbidden phrases, slow answers and
  interruptions at random) against the shipped rules, after a 50-record warm-up (jieba's dictionary load is
  not counted); null with ``qa_note`` saying why when cloud/qa cannot be imported;
- ``orders_per_1000``: ``simulate_follow_up`` (seed ``--seed``, common random numbers: every lead's fate
  comes from its own draws) over the leads the run assigned, orders per 1,000 of them: ``rules``: each to
  the dealer the pipeline chose, first contact 1 hour after the lead; ``random``: each to a uniformly random
  dealer of the world (numpy seeded with ``--seed``), 1 hour; ``slow``: the pipeline's dealers, 48 hours;
- ``rules_vs_random``: orders per 1,000, rules minus random, with a 95 % Newcombe hybrid score interval
  (method 10, Wilson intervals of each arm) for two independent proportions. The arms share the leads and
  their draws, so the independent-samples interval is conservative (wider than a paired one would be);
- ``rules_vs_random_paired``: the same difference with the paired 95 % Wald interval (difference of paired
  proportions: ``(b - c) / n`` with ``se = sqrt(b + c - (b - c)^2 / n) / n``, ``b``/``c`` the leads that
  order under rules only / random only, given as ``rules_only`` / ``random_only``);
- ``assigned_leads_followed``: how many assigned leads the follow-up played;
- ``load_avg`` (the 1-minute load average before and after the run) and ``cpus``: timings on a shared
  machine swing with its load, read ``process_s`` next to them;
- ``duplicate_detail``: the counts behind the duplicate figures (truth, found, found wrong, missed by
  variant and by status).

    python tests/benchmarks/leads.py                  # 100,000 leads
    python tests/benchmarks/leads.py --leads 5000     # smoke size
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.analytics.imports import import_file
from cloud.db.migrate import migrate
from cloud.leads.pipeline import capture, process
from cloud.leads.routing import load_routing
from simulators.leads_world import (
    LeadsWorld,
    simulate_follow_up,
    simulate_leads_world,
    write_customers_csv,
    write_dealers_csv,
)
from tests.helpers import scratch_database

QA_RECORDS = 5000
Z = 1.959963984540054


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ratio(a: int, b: int) -> float | None:
    return round(a / b, 4) if b else None


def _wilson(x: int, n: int) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = x / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return centre - half, centre + half


def newcombe(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float, float]:
    """p1 - p2 and its 95 % Newcombe hybrid score interval (method 10)."""
    p1, p2 = (x1 / n1 if n1 else 0.0), (x2 / n2 if n2 else 0.0)
    l1, u1 = _wilson(x1, n1)
    l2, u2 = _wilson(x2, n2)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, low, high


def _index(external_id: str) -> int:
    """The world's lead index from its external id ("FOR-0000042" is lead 41)."""
    return int(external_id.rsplit("-", 1)[1]) - 1


def duplicate_quality(conn: psycopg.Connection[Any], world: LeadsWorld) -> dict[str, Any]:
    """Found duplicates and customer links against the world's truth (see the module docstring)."""
    n = len(world.leads)
    index_of: dict[int, int] = {}
    status = np.full(n, "", dtype=object)
    points_at = np.full(n, -1, dtype=np.int64)  # the world index of the lead a duplicate points at
    for lead_id, ext, st in conn.execute("SELECT lead_id, raw->>'external_id', status FROM leads"):
        i = _index(str(ext))
        index_of[int(lead_id)] = i
        status[i] = st
    for lead_id, dup_of in conn.execute(
        "SELECT lead_id, duplicate_of_lead FROM leads WHERE duplicate_of_lead IS NOT NULL"
    ):
        points_at[index_of[int(lead_id)]] = index_of[int(dup_of)]
    linked: dict[int, str] = {}
    for lead_id, customer in conn.execute(
        "SELECT lead_id, customer_id FROM lead_merges WHERE customer_id IS NOT NULL AND undone_at IS NULL"
    ):
        linked[index_of[int(lead_id)]] = str(customer)
    found = np.zeros(n, dtype=bool)
    correct = np.zeros(n, dtype=bool)
    person = world.person
    named = 0
    for i in range(n):
        if status[i] == "duplicate" and points_at[i] >= 0:
            found[i] = True
            correct[i] = person[i] >= 0 and person[points_at[i]] == person[i]
        elif i in linked:
            if world.leads[i].customer_id == linked[i]:
                named += 1  # the source named this customer: the merge confirms it, finds nothing
                continue
            found[i] = True
            correct[i] = world.true_customer[i] is not None and world.true_customer[i] == linked[i]
    truth = world.is_duplicate
    rejected = status == "rejected"
    junk = world.is_junk
    missed = truth & ~(found & correct)
    missed_by_variant: dict[str, int] = {}
    for v in world.variant[missed]:
        missed_by_variant[str(v)] = missed_by_variant.get(str(v), 0) + 1
    missed_status: dict[str, int] = {}
    for s in status[missed]:
        missed_status[str(s)] = missed_status.get(str(s), 0) + 1
    return {
        "duplicates_found_precision": _ratio(int((found & correct).sum()), int(found.sum())),
        "duplicates_found_recall": _ratio(int((truth & found & correct).sum()), int(truth.sum())),
        "junk_rejected_precision": _ratio(int((rejected & junk).sum()), int(rejected.sum())),
        "junk_rejected_recall": _ratio(int((rejected & junk).sum()), int(junk.sum())),
        "duplicate_detail": {
            "truth_duplicates": int(truth.sum()),
            "found": int(found.sum()),
            "found_wrong_person": int((found & ~correct).sum()),
            "found_same_person_not_truth_duplicate": int((found & correct & ~truth).sum()),
            "missed_by_variant": missed_by_variant,
            "missed_by_status": missed_status,
            "linked_to_the_customer_the_source_named": named,
            "truth_junk": int(junk.sum()),
            "rejected": int(rejected.sum()),
        },
    }


# --- call inspection ---------------------------------------------------------------------------------

_ZH = {
    "greeting": ["您好,欢迎光临{d}。", "你好,这里是{d}。", "下午好,欢迎致电{d}。"],
    "intro": ["我是销售顾问小王。", "我叫李娜,是您的顾问。", "我姓陈,负责这款车。"],
    "needs": ["请问您的预算大概是多少?", "您主要用途是上下班还是出游?", "您最看重哪方面?"],
    "drive": ["要不要来店里试驾一下?", "周末可以安排试乘。", "建议您来店体验一下。"],
    "next": ["我们约个时间吧。", "明天再联系您。", "我帮您预约周六上午。"],
    "bad": ["这个我不知道。", "这不归我管。", "保证最低价。"],
    "filler": ["这款车续航有六百公里。", "现在有置换补贴。", "内饰是真皮的。", "油耗大概百公里六升。"],
    "customer": ["我想了解一下电动车。", "价格能便宜点吗?", "好的,谢谢。", "家里四口人。", "嗯,我考虑一下。"],
}
_EN = {
    "greeting": ["Hello, welcome to {d}.", "Good morning, thanks for calling {d}.", "Hi there!"],
    "intro": ["My name is Anna.", "I am Tom, your sales consultant.", "I'm Grace from the showroom."],
    "needs": ["What is your budget?", "What matters most to you?", "How will you use the car?"],
    "drive": [
        "Would you like a test drive?",
        "You can take it for a drive this weekend.",
        "Come and drive it yourself.",
    ],
    "next": [
        "Shall I book you in for Saturday?",
        "I will call you back tomorrow.",
        "Let's schedule a visit next week.",
    ],
    "bad": ["I don't know.", "That's not my problem.", "It never breaks down."],
    "filler": [
        "The range is 600 km.",
        "There is a trade-in bonus now.",
        "The seats are leather.",
        "It seats five.",
    ],
    "customer": [
        "I'm interested in the EV.",
        "Can you lower the price?",
        "OK, thanks.",
        "We are a family of four.",
        "Let me think.",
    ],
}


def synthetic_calls(n: int, seed: int) -> list[Any]:
    """``n`` call records as cloud/qa reads them: varied language, length, steps, faults and timing."""
    from cloud.qa.model import CallRecord, Channel, Language, Speaker, Turn

    rng = np.random.default_rng([seed, 17])
    start = datetime.fromisoformat("2026-11-02T09:00:00+08:00")
    out = []
    for k in range(n):
        zh = rng.random() < 0.7
        pool = _ZH if zh else _EN
        dealer = f"D{int(rng.integers(1, 41)):03d}"

        def say(kind: str, _pool: dict[str, list[str]] = pool, _dealer: str = dealer) -> str:
            options = _pool[kind]
            return options[int(rng.integers(0, len(options)))].format(d=_dealer)

        length = int(rng.integers(8, 31))
        consultant: list[str] = []
        first = say("greeting") + (say("intro") if rng.random() < 0.85 else "")
        if rng.random() < 0.1:
            first = say("filler")
        consultant.append(first)
        for _ in range((length - 1) // 2):
            consultant.append(say("filler"))
        middle = max(1, len(consultant) - 1)
        for kind, p in (("needs", 0.8), ("drive", 0.7), ("next", 0.75), ("bad", 0.15)):
            if rng.random() < p:
                at = 1 + int(rng.integers(0, middle))
                if at < len(consultant):
                    consultant[at] += say(kind)
                else:
                    consultant.append(say(kind))
        turns = []
        t = 0.0
        for i, text in enumerate(consultant):
            duration = 2 + 6 * float(rng.random())
            turns.append(Turn(Speaker.CONSULTANT, round(t, 1), round(t + duration, 1), text))
            t += duration
            if i == len(consultant) - 1 and rng.random() < 0.5:
                break
            cut = rng.random() < 0.05  # the consultant cuts in later
            reply = 1.5 + 5 * float(rng.random())
            turns.append(
                Turn(Speaker.CUSTOMER, round(t + 0.4, 1), round(t + 0.4 + reply, 1), say("customer"))
            )
            t += 0.4 + reply
            gap = 12.0 if rng.random() < 0.05 else 0.5 + float(rng.random())
            t += -1.0 if cut else gap
        out.append(
            CallRecord(
                record_id=f"R{k + 1:06d}",
                dealer_id=dealer,
                consultant_id=f"{dealer}-C{int(rng.integers(1, 9))}",
                channel=(Channel.PHONE, Channel.SHOWROOM, Channel.CHAT)[int(rng.integers(0, 3))],
                started_at=start + timedelta(minutes=17 * k),
                language=Language.ZH if zh else Language.EN,
                turns=tuple(turns),
            )
        )
    return out


def qa_speed(seed: int) -> tuple[float | None, str | None]:
    """Records per second of the call inspection (see the module docstring), or None and why not."""
    try:
        from cloud.qa.inspect import inspect_all
        from cloud.qa.rules import load_rules
    except ImportError as e:  # the module is not there (yet)
        return None, f"cloud.qa is not importable: {e}"
    records = synthetic_calls(QA_RECORDS, seed)
    book = load_rules()
    inspect_all(synthetic_calls(50, seed + 1), book)  # warm-up: jieba's dictionary, regexes
    started = time.perf_counter()
    inspections = inspect_all(records, book)
    seconds = time.perf_counter() - started
    scores = [i.score for i in inspections]
    _say(
        f"qa: {len(records)} records in {seconds:.2f} s, mean score {sum(scores) / len(scores):.1f}, "
        f"{sum(len(i.violations) for i in inspections)} violations"
    )
    return round(len(records) / seconds, 1), None


# --- follow-up -------------------------------------------------------------------------------------------


def conversion(
    conn: psycopg.Connection[Any], world: LeadsWorld, seed: int
) -> tuple[dict[str, float | None], dict[str, float | None], dict[str, float | None], int]:
    """Orders per 1,000 assigned leads under the pipeline's routing, random dealers and slow contact."""
    routed: dict[int, str] = {}
    for ext, dealer in conn.execute(
        "SELECT raw->>'external_id', dealer_id FROM leads WHERE status = 'assigned' AND dealer_id IS NOT NULL"
    ):
        routed[_index(str(ext))] = str(dealer)
    order = sorted(routed)  # lead index = time order: dealers work through them as they came
    rng = np.random.default_rng([seed, 29])
    ids = [d.dealer_id for d in world.dealers]
    pick = rng.integers(0, len(ids), len(order))
    plans = {
        "rules": {i: (routed[i], 1.0) for i in order},
        "random": {i: (ids[int(p)], 1.0) for i, p in zip(order, pick, strict=True)},
        "slow": {i: (routed[i], 48.0) for i in order},
    }
    orders: dict[str, int] = {}
    ordered: dict[str, np.ndarray] = {}
    for name, plan in plans.items():
        started = time.perf_counter()
        f = simulate_follow_up(world, plan, seed)
        orders[name] = f.count("order")
        ordered[name] = np.array([f.status[i] == "order" for i in order], dtype=bool)
        _say(
            f"follow-up {name}: {orders[name]} orders of {len(plan)} in {time.perf_counter() - started:.1f} s"
        )
    n = len(order)
    per_1000: dict[str, float | None] = {
        k: (round(1000 * v / n, 2) if n else None) for k, v in orders.items()
    }
    if n:
        d, low, high = newcombe(orders["rules"], n, orders["random"], n)
        diff: dict[str, float | None] = {
            "difference": round(1000 * d, 2),
            "ci_low": round(1000 * low, 2),
            "ci_high": round(1000 * high, 2),
        }
        # paired: the same leads with the same draws; only the discordant leads carry the difference
        b = int((ordered["rules"] & ~ordered["random"]).sum())
        c = int((~ordered["rules"] & ordered["random"]).sum())
        se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
        paired: dict[str, float | None] = {
            "difference": round(1000 * (b - c) / n, 2),
            "ci_low": round(1000 * ((b - c) / n - Z * se), 2),
            "ci_high": round(1000 * ((b - c) / n + Z * se), 2),
            "rules_only": b,
            "random_only": c,
        }
    else:
        diff = {"difference": None, "ci_low": None, "ci_high": None}
        paired = dict(diff)
    return per_1000, diff, paired, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    started = time.perf_counter()
    world = simulate_leads_world(args.leads, args.seed)
    now = world.start + timedelta(days=world.days)
    _say(
        f"world: {len(world.leads):,} leads, {len(world.customers):,} customers, {len(world.dealers)} dealers"
        f" in {time.perf_counter() - started:.1f} s"
    )
    routing = load_routing()
    with (
        scratch_database(args.admin_url, "drivesight_leads_bench") as url,
        tempfile.TemporaryDirectory() as tmp,
    ):
        migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            write_dealers_csv(world, Path(tmp) / "dealers.csv")
            write_customers_csv(world, Path(tmp) / "customers.csv")
            import_file(conn, "dealers", Path(tmp) / "dealers.csv")
            import_file(conn, "customers", Path(tmp) / "customers.csv")
            captured = capture(conn, world.leads)
            conn.execute("ANALYZE")
            _say(f"loaded and captured {captured.captured:,} leads in {time.perf_counter() - started:.1f} s")
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            report = process(conn, routing, now=now, progress=_say)
            process_s = time.perf_counter() - started
            load = [round(load_before, 2), round(os.getloadavg()[0], 2)]
            _say(f"process in {process_s:.1f} s: {report.seconds}")
            quality = duplicate_quality(conn, world)
            _say(f"quality: {quality}")
            per_1000, diff, paired, n_assigned = conversion(conn, world, args.seed)
    qa_per_s, qa_note = qa_speed(args.seed)
    out: dict[str, Any] = {
        "leads": args.leads,
        "process_s": round(process_s, 2),
        "process_steps_s": report.seconds,
        "load_avg": load,
        "cpus": os.cpu_count(),
        "captured": captured.captured,
        "rejected": report.rejected,
        "duplicates": report.duplicates,
        "linked_to_customers": report.linked_to_customers,
        "grades": report.grades,
        "assigned": report.assigned,
        "unassigned": report.unassigned,
        "duplicates_found_precision": quality["duplicates_found_precision"],
        "duplicates_found_recall": quality["duplicates_found_recall"],
        "junk_rejected_precision": quality["junk_rejected_precision"],
        "junk_rejected_recall": quality["junk_rejected_recall"],
        "qa_records_per_s": qa_per_s,
        "orders_per_1000": per_1000,
        "rules_vs_random": diff,
        "rules_vs_random_paired": paired,
        "assigned_leads_followed": n_assigned,
        "duplicate_detail": quality["duplicate_detail"],
    }
    if qa_note is not None:
        out["qa_note"] = qa_note
    print(json.dumps(out, ensure_ascii=False))


if __name__ == "__main__":
    main()
