"""Reading transcript files: JSON lines (a record a line) or CSV (a turn a row, grouped by ``record_id``).

A file is decoded as UTF-8, UTF-8 with a BOM, UTF-16 with a BOM or GB18030 (Chinese call-centre exports);
anything else is an ``InputError`` naming the file. Within a readable file, a broken line or an inconsistent
record is a ``Problem`` with its line number and reason, and the good records are still returned: nothing
is dropped without a word. A record's turns must be in order of their start and none may end before it
starts; a record id seen before in the batch is refused (the first one stays).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from edge_agent.protocol import format_validation_error

from . import InputError
from .model import CallRecord, Channel, Language, Problem, Speaker, Turn
from .text import detect_language

#: the columns a CSV of turns must have (``language`` and ``customer_id`` may be added)
CSV_COLUMNS = (
    "record_id", "dealer_id", "consultant_id", "channel", "started_at", "speaker", "start_s", "end_s", "text",
)  # fmt: skip
_RECORD_COLUMNS = (
    "record_id", "dealer_id", "consultant_id", "channel", "started_at", "language", "customer_id",
)  # fmt: skip
# NUL and other C0 controls do not occur in transcripts: they mean the bytes were decoded with the wrong
# encoding (UTF-16 without a BOM decodes "successfully" as UTF-8 with a NUL after every letter)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


class _TurnIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    speaker: Speaker
    start_s: float = Field(ge=0, allow_inf_nan=False)
    end_s: float = Field(ge=0, allow_inf_nan=False)
    text: str


class _RecordIn(BaseModel):
    # exports carry more fields than these (call ids of the telephony system, ...): ignored, not refused
    model_config = ConfigDict(extra="ignore")

    record_id: str = Field(min_length=1, max_length=200)
    dealer_id: str = Field(min_length=1, max_length=200)
    consultant_id: str = Field(min_length=1, max_length=200)
    channel: Channel
    started_at: AwareDatetime
    language: Language | None = None
    # the CRM's customer the call was with, when the export knows (blank: none)
    customer_id: str | None = Field(default=None, max_length=200)
    turns: list[_TurnIn] = Field(min_length=1)

    @field_validator("customer_id", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if isinstance(value, str):
            return value.strip() or None
        return value


@dataclass(slots=True)
class ReadResult:
    """The records read (``files`` and ``lines``: where each began), and the lines or records that were
    not."""

    records: list[CallRecord] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


def read_files(paths: Iterable[Path]) -> ReadResult:
    """Every record of ``paths`` (CSV by the ``.csv`` suffix, else JSON lines); ``InputError`` for a file that
    cannot be read or decoded, or a CSV without the needed columns."""
    result = ReadResult()
    seen: dict[str, str] = {}
    for path in paths:
        text = decode(path)
        part = parse_csv(text, str(path)) if path.suffix.lower() == ".csv" else parse_jsonl(text, str(path))
        result.problems += part.problems
        for record, line in zip(part.records, part.lines, strict=True):
            if record.record_id in seen:
                result.problems.append(
                    Problem(str(path), line, f"record {record.record_id!r} repeated (first at "
                            f"{seen[record.record_id]}); the first one is kept", record.record_id)
                )  # fmt: skip
                continue
            seen[record.record_id] = f"{path}:{line}"
            result.records.append(record)
            result.files.append(str(path))
            result.lines.append(line)
    return result


def decode(path: Path) -> str:
    """The text of ``path``; ``InputError`` naming the file when it is not in an encoding we accept."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        if data.startswith(codecs.BOM_UTF8):
            text = data[len(codecs.BOM_UTF8) :].decode("utf-8")
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            text = data.decode("utf-16")
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                text = data.decode("gb18030")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{path}: cannot decode (byte {exc.start}): not UTF-8, UTF-8 with BOM, UTF-16 with BOM or"
            " GB18030; convert the file to UTF-8"
        ) from exc
    bad = _CONTROL.search(text)
    if bad is not None:
        raise InputError(
            f"{path}: control character U+{ord(bad.group()):04X} at character {bad.start()}: not text in"
            " UTF-8, UTF-16 with BOM or GB18030 (UTF-16 without a BOM?); convert the file to UTF-8"
        )
    return text


def parse_jsonl(text: str, name: str) -> ReadResult:
    """The records of JSON-lines ``text`` (``name`` for the problems); blank lines are skipped."""
    result = ReadResult()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            result.problems.append(Problem(name, number, f"not JSON: {exc.msg} at column {exc.colno}"))
            continue
        record_id = raw.get("record_id") if isinstance(raw, dict) else None
        record_id = record_id if isinstance(record_id, str) else None
        record, reason = _record(raw)
        if record is None:
            result.problems.append(Problem(name, number, reason, record_id))
            continue
        result.records.append(record)
        result.files.append(name)
        result.lines.append(number)
    return result


def parse_csv(text: str, name: str) -> ReadResult:
    """The records of a CSV of turns (a header row naming ``CSV_COLUMNS``), grouped by ``record_id`` in the
    order they first appear; a broken row refuses its whole record (a missing turn would skew the score)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise InputError(f"{name}: not a CSV of turns: missing columns {', '.join(missing)}")
    groups: dict[str, dict[str, Any]] = {}
    broken: dict[str, str] = {}
    result = ReadResult()
    for row in reader:
        line = reader.line_num
        record_id = (row.get("record_id") or "").strip()
        if not record_id:
            result.problems.append(Problem(name, line, "record_id is empty"))
            continue
        if None in row or any(row[c] is None for c in CSV_COLUMNS):
            reason = "too many fields" if None in row else "too few fields"
            result.problems.append(Problem(name, line, reason, record_id))
            broken.setdefault(record_id, f"line {line} is broken")
            continue
        group = groups.setdefault(
            record_id, {"line": line, "raw": {c: row.get(c) or None for c in _RECORD_COLUMNS}, "turns": []}
        )
        differing = [c for c in _RECORD_COLUMNS if (row.get(c) or None) != group["raw"][c]]
        if differing:
            reason = f"{', '.join(differing)} differ from the record's first row (line {group['line']})"
            result.problems.append(Problem(name, line, reason, record_id))
            broken.setdefault(record_id, f"line {line} is inconsistent")
            continue
        group["turns"].append(
            {"speaker": row["speaker"], "start_s": row["start_s"], "end_s": row["end_s"], "text": row["text"]}
        )
    for record_id, group in groups.items():
        if record_id in broken:
            reason = f"record refused: {broken[record_id]}"
            result.problems.append(Problem(name, group["line"], reason, record_id))
            continue
        record, reason = _record({**group["raw"], "turns": group["turns"]})
        if record is None:
            result.problems.append(Problem(name, group["line"], reason, record_id))
            continue
        result.records.append(record)
        result.files.append(name)
        result.lines.append(group["line"])
    for record_id in broken.keys() - groups.keys():  # every row of the record was broken
        result.problems.append(Problem(name, 0, f"record refused: {broken[record_id]}", record_id))
    return result


def _record(raw: Any) -> tuple[CallRecord | None, str]:
    """A checked record, or None and why not."""
    try:
        parsed = _RecordIn.model_validate(raw)
    except ValidationError as exc:
        return None, format_validation_error(exc)
    turns = tuple(Turn(t.speaker, t.start_s, t.end_s, t.text) for t in parsed.turns)
    for index, turn in enumerate(turns):
        if turn.end_s < turn.start_s:
            return None, f"turn {index}: ends ({turn.end_s} s) before it starts ({turn.start_s} s)"
        if index and turn.start_s < turns[index - 1].start_s:
            return None, (
                f"turn {index}: out of order (starts at {turn.start_s} s, before turn {index - 1} at "
                f"{turns[index - 1].start_s} s)"
            )
    language = parsed.language or detect_language(t.text for t in turns)
    record = CallRecord(
        parsed.record_id, parsed.dealer_id, parsed.consultant_id, parsed.channel, parsed.started_at,
        language, turns, parsed.customer_id,
    )  # fmt: skip
    return record, ""
