"""Call-record quality inspection (cloud/qa): labelled transcripts in Chinese and English scored against the
shipped rules, bad input reported line by line, files in unknown encodings and bad rule sets refused, the
database round trip, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cloud.privacy.person import PersonIds
from cloud.qa import InputError, RulesError
from cloud.qa.inspect import aggregate, inspect_all, inspect_record
from cloud.qa.model import Language
from cloud.qa.read import CSV_COLUMNS, decode, parse_csv, parse_jsonl, read_files
from cloud.qa.rules import load_rules
from cloud.qa.store import report, store
from cloud.qa.text import PhraseSet, PreparedTurn, detect_language

DATA = Path(__file__).resolve().parent / "data" / "transcripts"
FILES = [DATA / "calls.jsonl", DATA / "broken.jsonl", DATA / "showroom_gb18030.csv"]
LABELS: dict[str, Any] = {
    k: v for k, v in json.loads((DATA / "labels.json").read_text(encoding="utf-8")).items() if k != "_comment"
}


def _found(path: Path) -> dict[str, Any]:
    """What the shipped rules find in each record of ``path``, in the labels' form."""
    read = read_files([path])
    return {
        i.record_id: {
            "violations": [[v.rule, v.turn, v.start_s] for v in i.violations],
            "score": i.score,
            "steps": i.steps,
        }
        for i in inspect_all(read.records, load_rules())
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_each_labelled_record_has_exactly_its_labelled_violations_steps_and_score(path: Path) -> None:
    found = _found(path)
    assert found, path
    for record_id, got in found.items():
        assert got == LABELS[record_id], record_id


def test_every_labelled_record_is_read_and_the_broken_lines_are_reported_with_their_numbers() -> None:
    read = read_files(FILES)
    assert sorted(r.record_id for r in read.records) == sorted(LABELS)
    problems = [(p.file, p.line, p.record_id, p.reason.split(":")[0]) for p in read.problems]
    broken = str(DATA / "broken.jsonl")
    assert problems == [
        (broken, 2, None, "not JSON"),
        (broken, 3, "bad_end", "turn 1"),
        (broken, 4, "bad_order", "turn 2"),
    ]
    assert "ends (3.0 s) before it starts (5.0 s)" in read.problems[1].reason
    assert "out of order" in read.problems[2].reason
    # the good lines around them are inspected (lines 1 and 6; line 5 is blank)
    assert read.lines[read.records.index(next(r for r in read.records if r.record_id == "zh_talk90"))] == 6


def test_the_language_is_detected_from_the_text_when_the_record_does_not_say() -> None:
    by_id = {r.record_id: r for r in read_files(FILES).records}
    assert by_id["zh_no_test_drive"].language is Language.ZH  # no "language" field
    assert by_id["en_late_greeting"].language is Language.EN  # no "language" field
    assert by_id["zh_forbidden_gb"].language is Language.ZH  # a CSV has no language column
    assert detect_language(["我们可以预约试驾这款SUV OK吗"]) is Language.ZH
    assert detect_language(["Meet our consultant 王小明 at the showroom"]) is Language.EN


def test_phrases_match_whole_words_in_english_and_substrings_or_jieba_tokens_in_chinese() -> None:
    phrases = PhraseSet.compile(["hi", "test drive", "试驾", "滚"])
    assert phrases.first(PreparedTurn("Is this the showroom?")) is None  # "hi" is not a word of "this"
    assert phrases.first(PreparedTurn("HI! Welcome.")) == "hi"
    assert phrases.first(PreparedTurn("Book a test-drive now")) == "test drive"
    assert phrases.first(PreparedTurn("a test, drive")) == "test drive"  # punctuation is not a word
    # jieba (dictionary mode) cuts 预约试驾 into 预约/试/驾: a token match would miss it, a substring does not
    assert phrases.first(PreparedTurn("我帮您预约试驾")) == "试驾"
    assert phrases.first(PreparedTurn("屏幕 滚动 不流畅")) is None  # 滚 inside the word 滚动 (scroll)
    assert phrases.all(PreparedTurn("爱买不买 滚。试驾吗")) == ["试驾", "滚"]


def test_timing_rules_are_judged_on_the_turns_and_dealer_rules_override_the_defaults(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text(
        'version = "d1-2026-12"\n'
        "[dealers.D1.rules.response_delay]\nmax_s = 20.0\n"
        '[dealers.D2]\ndisable = ["interruptions"]\n'
        '[dealers.D2.rules.closing]\nkind = "required_step"\nweight = 5\nen = ["thank you"]\nzh = ["谢谢"]\n'
    )
    book = load_rules(rules)
    records = {r.record_id: r for r in read_files([DATA / "calls.jsonl"]).records}
    delay = inspect_record(records["zh_delay"], book.for_dealer("D1"))
    assert (delay.score, delay.violations, delay.rules_version) == (100.0, (), "d1-2026-12")
    interrupt = inspect_record(records["en_interrupt"], book.for_dealer("D2"))
    # Tom never says "thank you", and D2 has no interruption rule
    assert [v.rule for v in interrupt.violations] == ["closing"]
    assert interrupt.score == round(100 * (100 - 2) / (100 - 2 + 5), 1)  # interruptions (2) out, closing in
    assert inspect_record(records["en_good"], book.for_dealer("D2")).steps["closing"] == 8
    hashes = {book.default.hash, book.for_dealer("D1").hash, book.for_dealer("D2").hash}
    assert len(hashes) == 3 and book.for_dealer("D9") is book.default
    assert load_rules(rules).for_dealer("D1").hash == book.for_dealer("D1").hash  # stable across loads


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[rules.greeting]\ncolour = "red"\n', "rules.greeting.colour: Extra inputs are not permitted"),
        ('[rules.x]\nkind = "sentiment"\nweight = 1\n', "rules.x.kind: unknown kind 'sentiment'; one of"),
        ("[rules.talk_share]\nmin = 0.8\n", "rules.talk_share: Value error, min 0.8 is above max 0.7"),
        ("[dealers.D1.rules.new]\nweight = 1\n", "dealers.D1.rules.new.kind: missing"),
        ("[dealers.D1]\nfoo = 1\n", "dealers.D1.foo: Extra inputs are not permitted"),
        ("[dealers.D1.rules.greeting]\nwithin_s = -1\n", "dealers.D1.rules.greeting.within_s: Input should"),
        ('[dealers.D1]\ndisable = ["nope"]\n', "dealers.D1.disable: no rule 'nope'"),
        ("[dealers.D9.rules.talk_share]\nmax = 0.8\n", "dealers.D9: unknown dealer"),
        ('[rules.forbidden_phrases]\nen = ["..."]\n', "phrase '...' has no words to match"),
        ("rules = 3\n", "rules: Input should be a valid dictionary"),
        ("[rules\n", "not valid TOML"),
    ],
)
def test_a_bad_rule_set_is_refused_naming_the_file_and_the_entry(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "dealer_rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as caught:
        load_rules(path, known_dealers={"D1", "D2"})
    assert str(caught.value).startswith(f"{path}: "), caught.value
    assert message in str(caught.value)


def test_files_in_the_accepted_encodings_read_the_same_and_others_are_refused_by_name(tmp_path: Path) -> None:
    text = (DATA / "calls.jsonl").read_text(encoding="utf-8")
    for encoding in ("utf-8-sig", "utf-16", "gb18030"):  # utf-16 writes a BOM
        path = tmp_path / f"calls.{encoding}.jsonl"
        path.write_bytes(text.encode(encoding))
        assert decode(path) == text
    no_bom = tmp_path / "utf16_no_bom.jsonl"
    no_bom.write_bytes(text.encode("utf-16-le"))
    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"text": "Jos\u00e9"}\n'.encode("latin-1"))
    for path in (no_bom, latin1):
        with pytest.raises(InputError, match=f"^{path}: .*convert the file to UTF-8"):
            read_files([DATA / "calls.jsonl", path])
    with pytest.raises(InputError, match="cannot read"):
        read_files([tmp_path / "missing.jsonl"])


def test_a_csv_record_with_a_broken_or_inconsistent_row_is_refused_whole() -> None:
    header = "record_id,dealer_id,consultant_id,channel,started_at,speaker,start_s,end_s,text\n"
    rows = (
        "a,D1,C1,phone,2026-11-01T10:00:00+08:00,consultant,0,2,您好\n"
        "a,D1,C1,phone,2026-11-01T10:00:00+08:00,customer,2.5,4,你好\n"
        "b,D1,C1,phone,2026-11-01T11:00:00+08:00,consultant,0,2,Hello\n"
        "b,D1,C9,phone,2026-11-01T11:00:00+08:00,customer,2.5,4,Hi\n"
        "c,D1,C1,phone,2026-11-01T12:00:00+08:00,consultant,0,2,Hello,extra\n"
        "d,D1,C1,fax,2026-11-01T12:00:00+08:00,consultant,0,2,Hello\n"
        "e,D1,C1,phone,2026-11-01T12:00:00+08:00,consultant,zero,2,Hello\n"
    )
    result = parse_csv(header + rows, "turns.csv")
    assert [r.record_id for r in result.records] == ["a"] and result.lines == [2]
    assert [(p.line, p.record_id) for p in result.problems] == [
        (5, "b"), (6, "c"), (4, "b"), (7, "d"), (8, "e"), (0, "c"),
    ]  # fmt: skip
    assert "consultant_id differ from the record's first row (line 4)" in result.problems[0].reason
    assert "channel: Input should be 'phone', 'showroom' or 'chat'" in result.problems[3].reason
    assert "turns.0.start_s" in result.problems[4].reason
    with pytest.raises(InputError, match="missing columns speaker"):
        parse_csv("record_id,dealer_id,consultant_id,channel,started_at,start_s,end_s,text\n", "x.csv")


def _dealers(conn: psycopg.Connection[Any], *ids: str) -> None:
    for dealer_id in ids:
        name = f"Dealer {dealer_id}"
        conn.execute("INSERT INTO dealers (dealer_id, name) VALUES (%s, %s)", (dealer_id, name))


def test_stored_inspections_report_the_same_aggregates_and_a_reimport_changes_nothing(
    fresh_database: str,
) -> None:
    from datetime import UTC, datetime

    records = read_files(FILES).records
    inspections = inspect_all(records, load_rules())
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _dealers(conn, "D1", "D2")
        at = datetime(2026, 12, 1, tzinfo=UTC)
        assert store(conn, records, inspections, inspected_at=at) == len(LABELS)
        assert store(conn, records, inspections, inspected_at=at) == len(LABELS)  # the same batch again
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM qa_call_records), (SELECT count(*) FROM qa_inspections)"
        ).fetchone()
        assert counts == (len(LABELS), len(LABELS))
        assert report(conn) == aggregate(inspections)
        consultants, dealers = report(conn, dealer_id="D1", consultant_id="C1")
        assert [(a.consultant_id, a.records, a.mean_score, a.violations) for a in consultants] == [
            ("C1", 3, 94.0, {"forbidden_phrases": 2, "response_delay": 2})
        ]
        assert [(a.dealer_id, a.records) for a in dealers] == [("D1", 3)]
        row = conn.execute(
            "SELECT r.turns -> 8 ->> 'text', i.violations -> 1, i.steps FROM qa_call_records r"
            " JOIN qa_inspections i USING (record_id) WHERE record_id = 'zh_forbidden_gb'"
        ).fetchone()
        said = next(r for r in records if r.record_id == "zh_forbidden_gb").turns[8].text
        assert row is not None and row[0] == said
        assert row[1] == {
            "rule": "forbidden_phrases", "kind": "forbidden_phrases", "message": "said '滚'", "turn": 8,
            "start_s": 38.5,
        }  # fmt: skip
        assert row[2] == LABELS["zh_forbidden_gb"]["steps"]


def _drivesight(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "DRIVESIGHT_DATABASE_URL"}
    if url is not None:
        env["DRIVESIGHT_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "simulators.cli", "cloud", "qa", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def _only_json(result: subprocess.CompletedProcess[str]) -> Any:
    """--json: exit 0 and exactly one JSON document on stdout (progress and problems go to stderr)."""
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def _refused(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert (result.returncode, result.stdout) == (code, ""), result.stdout + result.stderr[-2000:]
    assert message in result.stderr, result.stderr[-2000:]


def test_cli_inspects_stores_and_reports(fresh_database: str, tmp_path: Path) -> None:
    files = [str(p) for p in FILES]
    document = _only_json(_drivesight("inspect", *files, "--json"))
    assert {r["record_id"]: r["score"] for r in document["records"]} == {
        k: v["score"] for k, v in LABELS.items()
    }
    problems = [(p["line"], p["record_id"]) for p in document["problems"]]
    assert problems == [(2, None), (3, "bad_end"), (4, "bad_order")]
    assert document["stored"] is None and document["rules_version"] == "2026-12-01"
    text = _drivesight("inspect", *files)
    assert text.returncode == 0 and "zh_forbidden_gb" in text.stdout
    assert "broken.jsonl:2: not JSON" in text.stderr

    latin1 = tmp_path / "latin1.jsonl"
    latin1.write_bytes('{"record_id": "Jos\u00e9"}\n'.encode("latin-1"))
    _refused(_drivesight("inspect", str(latin1), "--json"), 2, f"{latin1}: cannot decode")
    rules = tmp_path / "rules.toml"
    rules.write_text("[dealers.D7.rules.talk_share]\nmax = 0.9\n")

    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _dealers(conn, "D1")  # D2 is not a dealer of this database
    _refused(_drivesight("inspect", *files, "--rules", str(rules), "--store", url=fresh_database), 2,
             "dealers.D7: unknown dealer")  # fmt: skip
    stored = _only_json(_drivesight("inspect", *files, "--store", "--json", url=fresh_database))
    d1 = sorted(k for k in LABELS if k.startswith("zh"))
    assert stored["stored"] == len(d1)
    unknown = sorted((p["record_id"], p["line"]) for p in stored["problems"] if "unknown" in p["reason"])
    assert unknown == [("en_forbidden", 4), ("en_good", 2), ("en_interrupt", 6), ("en_late_greeting", 1)]
    reported = _only_json(_drivesight("report", "--dealer", "D1", "--json", url=fresh_database))
    assert reported["dealers"] == stored["dealers"]
    assert reported["consultants"] == stored["consultants"]
    assert [a["consultant_id"] for a in reported["consultants"]] == ["C1", "C2"]
    assert "D1/C2" in _drivesight("report", url=fresh_database).stdout
    _refused(_drivesight("report", "--json"), 1, "DRIVESIGHT_DATABASE_URL")


def test_the_benchmark_prints_one_json_line() -> None:
    script = Path(__file__).resolve().parent / "benchmarks" / "call_qa.py"
    result = subprocess.run(
        [sys.executable, str(script), "--records", "200"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    assert document["records"] == 200 and document["qa_records_per_s"] > 0 and document["seconds"] > 0


def _call(record_id: str, said: str, customer_id: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_id": record_id, "dealer_id": "D1", "consultant_id": "C1", "channel": "phone",
        "started_at": "2026-11-02T10:00:00+08:00",
        "turns": [
            {"speaker": "consultant", "start_s": 0, "end_s": 3, "text": "Hello, thank you for calling."},
            {"speaker": "customer", "start_s": 3.5, "end_s": 8, "text": said},
        ],
    }  # fmt: skip
    if customer_id is not None:
        record["customer_id"] = customer_id
    return record


def test_a_record_may_name_its_customer_in_json_lines_or_csv() -> None:
    lines = [_call("j1", "Hi", "cust-1"), _call("j2", "Hi"), _call("j3", "Hi", " ")]
    read = parse_jsonl("\n".join(json.dumps(r) for r in lines), "x.jsonl")
    assert read.problems == []
    assert [r.customer_id for r in read.records] == ["cust-1", None, None]  # blank: no customer
    header = ",".join((*CSV_COLUMNS, "customer_id"))
    row = "D1,C1,phone,2026-11-02T10:00:00+08:00,{},0,3,Hi,{}"
    text = "\n".join([
        header, "c1," + row.format("consultant", "cust-2"), "c1," + row.format("customer", "cust-2"),
        "c2," + row.format("consultant", ""),
        "c3," + row.format("consultant", "cust-3"), "c3," + row.format("customer", "cust-4"),
    ]) + "\n"  # fmt: skip
    csv_read = parse_csv(text, "x.csv")
    assert [(r.record_id, r.customer_id) for r in csv_read.records] == [("c1", "cust-2"), ("c2", None)]
    first = csv_read.problems[0]
    assert (first.record_id, first.line) == ("c3", 6) and "customer_id differ" in first.reason
    without = parse_csv(text.replace(",customer_id", "").replace(",cust-2", "").replace(",cust-3", ""), "y")
    assert all(r.customer_id is None for r in without.records)


def test_erasure_and_export_find_the_persons_calls_by_customer_id_phone_or_email(fresh_database: str) -> None:
    from cloud.privacy import erasure, export

    lines = [
        _call("by-id", "Hi there", "cust-a"),
        _call("by-phone", "Call me on 138 1234-5678 please"),  # the CRM holds 13812345678
        _call("by-email", "Write to Anna.Lee+cars@Mail.Example"),
        _call("by-account", "My other number is 139.8765.4321"),  # the phone of an account of theirs
        _call("someone-else", "Call me on 13812345670, or at anna.lee@mail.example.org.cn", "cust-b"),
        _call("a-prefix", "Call me on 1381234567"),  # a prefix of their number is not theirs
    ]
    records = parse_jsonl("\n".join(json.dumps(r) for r in lines), "x.jsonl").records
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        _dealers(conn, "D1")
        conn.execute(
            "INSERT INTO customers (customer_id, phone, email) VALUES"
            " ('cust-a', '13812345678', 'anna.lee+cars@mail.example'), ('cust-b', '0', 'n/a')"
        )
        conn.execute(
            "INSERT INTO online_accounts (account_id, channel, phone) VALUES ('acct-a', 'app', '13987654321')"
        )
        at = datetime(2026, 12, 1, tzinfo=UTC)
        store(conn, records, inspect_all(records, load_rules()), inspected_at=at)
        assert conn.execute(
            "SELECT customer_id FROM qa_call_records WHERE record_id = 'by-id'"
        ).fetchone() == ("cust-a",)

        ids = PersonIds("cust-a", (), ("acct-a",))
        theirs = ["by-id", "by-phone", "by-email", "by-account"]
        document = export.build_export(conn, ids)
        assert sorted(r["record_id"] for r in document["call_records"]) == sorted(theirs)
        stored = dict(
            conn.execute("SELECT record_id, score FROM qa_inspections WHERE record_id = ANY(%s)", (theirs,))
        )
        assert {r["record_id"]: r["inspection"]["score"] for r in document["call_records"]} == stored

        rows = erasure.erase(conn, customer_ids=["cust-a"], account_ids=["acct-a"])
        assert (rows["qa_call_records"], rows["qa_inspections"]) == (4, 4)
        left = conn.execute("SELECT record_id FROM qa_call_records ORDER BY 1").fetchall()
        assert left == [("a-prefix",), ("someone-else",)]
        assert conn.execute("SELECT count(*) FROM qa_inspections").fetchone() == (2,)
        # a CRM field too short to be a phone or an e-mail matches nothing
        assert "qa_call_records" not in erasure.erase(conn, customer_ids=["cust-b-unknown"])
        assert erasure.contact_pattern(conn, ["cust-b"], []) is None
