"""Lead files (online forms, events, purchased lists, a CRM export) read line by line into :class:`RawLead` s.

Unlike the master-data imports (cloud/analytics/imports.py: a file with one bad line is refused whole), a lead
file is imported **line by line**: leads are perishable, and a form export with a few broken lines must not
hold back the others. Every bad line is reported with its number and reason and none is lost silently.

Columns (CSV header, or keys of a JSON object per line; only ``created_at`` and one of ``source``/``--source``
are required)::

    external_id, source, channel, activity, created_at, name, phone, email, city, region, model_interest,
    intent, message, customer_id, vehicle_id, consent_contact

``created_at`` is ISO 8601 with its UTC offset; ``consent_contact`` true/false/yes/no/1/0 or empty;
``intent`` one of :data:`cloud.leads.model.INTENTS` (empty: unknown). What cleaning makes of the contact
fields is not judged here (cloud/leads/clean.py): a line is refused only when it cannot be a lead at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from cloud.analytics.imports import read_records
from edge_agent.protocol import format_validation_error

from .model import INTENTS, SOURCES, Intent, RawLead, Source

COLUMNS = (
    "external_id", "source", "channel", "activity", "created_at", "name", "phone", "email", "city", "region",
    "model_interest", "intent", "message", "customer_id", "vehicle_id", "consent_contact",
)  # fmt: skip

_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


class LeadLine(BaseModel):
    """One line of a lead file."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: str | None = Field(default=None, max_length=128)
    source: str | None = None
    channel: str = Field(default="import", min_length=1, max_length=64)
    activity: str | None = Field(default=None, max_length=128)
    created_at: datetime
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=64)
    email: str | None = Field(default=None, max_length=254)
    city: str | None = Field(default=None, max_length=64)
    region: str | None = Field(default=None, max_length=64)
    model_interest: str | None = Field(default=None, max_length=64)
    intent: str | None = None
    message: str | None = Field(default=None, max_length=2000)
    customer_id: str | None = Field(default=None, max_length=64)
    vehicle_id: str | None = Field(default=None, max_length=64)
    consent_contact: bool | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        # a CSV cell left empty means "not given", not an empty string
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("consent_contact", mode="before")
    @classmethod
    def _yes_no(cls, value: Any) -> Any:
        if isinstance(value, str):
            word = value.strip().lower()
            if not word:
                return None
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        return value

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("give the time with its UTC offset, e.g. 2026-11-20T10:00:00+08:00")
        return value

    @field_validator("source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and value not in SOURCES:
            raise ValueError(f"expected one of {', '.join(SOURCES)}")
        return value

    @field_validator("intent")
    @classmethod
    def _intent(cls, value: str | None) -> str | None:
        if value is not None and value not in INTENTS:
            raise ValueError(f"expected one of {', '.join(INTENTS)}")
        return value


@dataclass(slots=True)
class FileLeads:
    """A file's leads and its refused lines (line number, reason)."""

    leads: list[RawLead] = field(default_factory=list)
    refused: list[tuple[int, str]] = field(default_factory=list)


def read_lead_file(path: Path, *, source: Source | None = None) -> FileLeads:
    """Every lead of ``path`` (``.csv``, ``.json``, ``.jsonl``) and every line that cannot be one, with why;
    ``source`` is the source of lines that do not name one. A file that cannot be read at all raises
    :class:`cloud.analytics.imports.ImportError_` naming it."""
    out = FileLeads()
    for line, record in read_records(path):
        if not isinstance(record, dict):
            out.refused.append((line, "expected an object of fields"))
            continue
        if "__json_error__" in record:
            out.refused.append((line, f"not valid JSON: {record['__json_error__']}"))
            continue
        if "__extra_values__" in record:
            out.refused.append((line, "more values than the header has columns"))
            continue
        try:
            row = LeadLine.model_validate(record)
        except ValidationError as exc:
            out.refused.append((line, format_validation_error(exc)))
            continue
        chosen = row.source or source
        if chosen is None:
            out.refused.append((line, "no source: give the column or --source"))
            continue
        out.leads.append(
            RawLead(
                source=cast(Source, chosen),
                channel=row.channel,
                created_at=row.created_at,
                external_id=row.external_id,
                activity=row.activity,
                name=row.name,
                phone=row.phone,
                email=row.email,
                city=row.city,
                region=row.region,
                model_interest=row.model_interest,
                intent=cast(Intent, row.intent or "unknown"),
                message=row.message,
                customer_id=row.customer_id,
                vehicle_id=row.vehicle_id,
                consent_contact=row.consent_contact,
                line=line,
            )
        )
    return out
