"""The time a command runs at: ``--now`` (ISO 8601 with its UTC offset), or the current time."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_now(text: str | None) -> datetime:
    """``text`` as an aware time (None: now, UTC); a time without its offset is refused, never guessed."""
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"--now {text!r} is not an ISO 8601 time") from exc
    if at.tzinfo is None:
        raise ValueError("--now needs its UTC offset, e.g. 2026-12-01T04:00:00Z")
    return at
