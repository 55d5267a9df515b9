"""The records the inspection works on: plain frozen dataclasses, since the inspection is the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Speaker(StrEnum):
    """Who speaks a turn."""

    CONSULTANT = "consultant"
    CUSTOMER = "customer"


class Channel(StrEnum):
    """Where the conversation took place."""

    PHONE = "phone"
    SHOWROOM = "showroom"
    CHAT = "chat"


class Language(StrEnum):
    """The language a record's rules are matched in."""

    ZH = "zh"
    EN = "en"


@dataclass(frozen=True, slots=True)
class Turn:
    """One speaker's turn: seconds from the start of the conversation, and what was said."""

    speaker: Speaker
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One conversation between a consultant and a customer (``customer_id``: the CRM's customer, when the
    export names them; erasure and export of a person find their records by it)."""

    record_id: str
    dealer_id: str
    consultant_id: str
    channel: Channel
    started_at: datetime
    language: Language
    turns: tuple[Turn, ...]
    customer_id: str | None = None


@dataclass(frozen=True, slots=True)
class Problem:
    """An input line or record that was not inspected, and why (``line`` 0: the record as a whole)."""

    file: str
    line: int
    reason: str
    record_id: str | None = None


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule a record broke; ``turn`` and ``start_s`` say where (None: the conversation as a whole)."""

    rule: str
    kind: str
    message: str
    turn: int | None = None
    start_s: float | None = None


@dataclass(frozen=True, slots=True)
class Inspection:
    """A record's score (0-100), the rules it broke and the required steps found (rule id -> turn index)."""

    record_id: str
    dealer_id: str
    consultant_id: str
    language: Language
    score: float
    rules_version: str
    rules_hash: str
    violations: tuple[Violation, ...]
    steps: dict[str, int] = field(default_factory=dict)
