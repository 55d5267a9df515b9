"""What the score routes (churn, upgrade) share: the audit of a personal read, the consent-gated read of one
customer's scores (404 alike for unknown, unscored or not consenting), keyset pages of a day's scores and a
stored score's common fields."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, Protocol, TypeVar

from fastapi import Request
from pydantic import BaseModel

from cloud.privacy.audit import AuditUnavailable, AuditWriter, personal_subject

from .auth import Principal
from .errors import ApiError
from .pagination import Page, decode_cursor, encode_cursor


class StoredScore(Protocol):
    """A stored score as the read modules return it."""

    @property
    def customer_id(self) -> str: ...
    @property
    def day(self) -> date: ...
    @property
    def probability(self) -> float: ...
    @property
    def reasons(self) -> list[dict[str, Any]]: ...
    @property
    def model_version(self) -> int: ...


S = TypeVar("S", bound=StoredScore)
T = TypeVar("T")
Item = TypeVar("Item", bound=BaseModel)


def audit(request: Request, principal: Principal, action: str, subject: str | None, **detail: Any) -> None:
    """One audit row of a personal read (``outcome`` in ``detail``, default ok); 503 when it cannot be
    written."""
    writer: AuditWriter = request.app.state.audit
    try:
        writer.record(
            key_id=principal.key_id,
            action=action,
            subject=subject,
            outcome=str(detail.pop("outcome", "ok")),
            detail=detail or None,
        )
    except AuditUnavailable as exc:
        raise ApiError(503, "cannot answer now: the audit log cannot be written") from exc


def score_fields(s: StoredScore, reason: type[BaseModel], **extra: Any) -> dict[str, Any]:
    """A stored score as the fields of its response (``extra``: the score's own, such as its tier)."""
    return {
        "customer_id": s.customer_id,
        "day": s.day,
        "probability": s.probability,
        **extra,
        "reasons": [reason.model_validate(r) for r in s.reasons],
        "model_version": s.model_version,
    }


def after_key(cursor: str | None, kind: str) -> tuple[float, str] | None:
    """The (probability, customer) key a ``kind`` page's cursor continues after (None: the first page)."""
    if not cursor:
        return None
    p, c = decode_cursor(cursor, kind, (float, str))
    return (p, c)


def page(scores: list[S], limit: int, kind: str, item: Callable[[S], Item]) -> tuple[Page[Item], int]:
    """The first ``limit`` of ``scores`` (read with one more, to know whether there is a next page) as a page
    of ``item``; and how many it shows."""
    shown = scores[:limit]
    more = len(scores) > limit and bool(shown)
    next_cursor = encode_cursor(kind, shown[-1].probability, shown[-1].customer_id) if more else None
    return Page(items=[item(s) for s in shown], next_cursor=next_cursor), len(shown)


def customer_read(request: Request, principal: Principal, name: str, customer_id: str, found: T | None) -> T:
    """``found`` (a customer's scores that marketing may see), audited as ``<name>.read`` under the
    pseudonymous subject; a 404 (audited ``not_found``) when there are none."""
    subject = personal_subject("customer", customer_id)
    if found is None:
        audit(request, principal, f"{name}.read", subject, outcome="not_found")
        raise ApiError(404, f"no {name} score of customer {customer_id!r} that marketing may see")
    audit(request, principal, f"{name}.read", subject)
    return found
