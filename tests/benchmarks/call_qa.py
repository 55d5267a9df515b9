"""Call-record quality inspection throughput: synthetic dealer conversations, half Chinese and half English,
of 20-40 turns each, generated in memory and inspected against the shipped rules (cloud/qa/rules.toml) on one
core. Prints one JSON line: ``records``, ``qa_records_per_s`` (inspection only: phrase matching, timing
rules, score) and ``seconds``; progress on stderr. Reading files is not measured (pydantic per record and
JSON decoding are the same for any rule set).

    python tests/benchmarks/call_qa.py                   # 20,000 records
    python tests/benchmarks/call_qa.py --records 2000    # smoke size
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.qa.inspect import aggregate, inspect_record
from cloud.qa.model import CallRecord, Channel, Language, Speaker, Turn
from cloud.qa.rules import load_rules
from cloud.qa.text import segment

# what consultants and customers say, by language, a sentence a line (speech recognition leaves clauses
# separated by spaces): the step phrases appear in some calls and not in others, so the matchers run both to a
# hit and through every phrase; 滚动 makes jieba check the single-character forbidden phrase 滚
_CONSULTANT_ZH = """您好 欢迎致电星辰汽车 我是销售顾问小王。
请问您的预算大概是多少 主要用途是什么
这款车空间很大 很适合家庭出行 油耗也很低。
您有空来店里试驾一下吗
我帮您预约周六上午十点。
这款车配备全景天窗和自适应巡航 中控屏幕滚动很流畅。
现在购车还有五千元的优惠和免费保养。
好的 我记下了 稍后把详细报价发给您。
这个配置我不知道 我问一下同事。
明白 您更看重安全性。"""
_CONSULTANT_EN = """Good morning, welcome to Star Motors, my name is Anna.
What matters most to you, and what is your budget?
This model has plenty of room for the family and low running costs.
Would you like to take a test drive?
I can book you in for an appointment on Saturday.
It comes with adaptive cruise control and a panoramic roof.
There is a discount this month and free servicing for three years.
Sure, I will send you the full quote.
I don't know, let me ask a colleague.
Understood, safety comes first for you."""
_CUSTOMER_ZH = """你好 我想了解一下新款SUV。
预算二十万左右。
主要是上下班用。
可以 周六吧。
好的 谢谢。
油耗怎么样"""
_CUSTOMER_EN = """Hi, I'm interested in the new SUV.
About thirty thousand.
Mostly commuting.
Saturday works.
Thanks.
What about fuel economy?"""
_SAID = {
    (Speaker.CONSULTANT, Language.ZH): _CONSULTANT_ZH.splitlines(),
    (Speaker.CONSULTANT, Language.EN): _CONSULTANT_EN.splitlines(),
    (Speaker.CUSTOMER, Language.ZH): _CUSTOMER_ZH.splitlines(),
    (Speaker.CUSTOMER, Language.EN): _CUSTOMER_EN.splitlines(),
}
#: the gap before the next turn: mostly short, now and then an interruption (-0.8) or a long pause (12 s)
_GAPS = (0.4, 0.6, 1.0, -0.8, 12.0)


def synthetic(n: int, seed: int) -> list[CallRecord]:
    """``n`` conversations of 20-40 alternating turns (some overlapping, some answered late)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        language = Language.ZH if i % 2 == 0 else Language.EN
        turns = []
        t = 0.0
        for k in range(rng.randint(20, 40)):
            speaker = Speaker.CONSULTANT if k % 2 == 0 else Speaker.CUSTOMER
            pool = _SAID[(speaker, language)]
            text = pool[0] if k == 0 and rng.random() < 0.8 else rng.choice(pool)
            length = rng.uniform(1.5, 9.0)
            turns.append(Turn(speaker, round(t, 2), round(t + length, 2), text))
            t += length + rng.choice(_GAPS)
            t = max(t, turns[-1].start_s)
        at = datetime(2026, 11, 1, tzinfo=UTC)
        dealer, consultant = f"D{i % 50:03d}", f"C{i % 400:04d}"
        records.append(CallRecord(f"R{i:07d}", dealer, consultant, Channel.PHONE, at, language, tuple(turns)))
    return records


def main() -> None:
    """Generate, inspect, print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    book = load_rules()
    records = synthetic(args.records, args.seed)
    turns = sum(len(r.turns) for r in records)
    print(f"{len(records)} records, {turns / len(records):.1f} turns each; inspecting", file=sys.stderr)
    segment("滚动")  # jieba loads its dictionary on first use (~1 s, once a process): not part of the rate
    started = time.perf_counter()
    inspections = [inspect_record(r, book.for_dealer(r.dealer_id)) for r in records]
    seconds = time.perf_counter() - started
    consultants, dealers = aggregate(inspections)
    mean = sum(i.score for i in inspections) / len(inspections)
    print(
        f"mean score {mean:.1f}; {len(consultants)} consultants, {len(dealers)} dealers aggregated",
        file=sys.stderr,
    )
    rate = len(records) / seconds
    print(
        json.dumps({"records": len(records), "qa_records_per_s": round(rate), "seconds": round(seconds, 3)})
    )


if __name__ == "__main__":
    main()
