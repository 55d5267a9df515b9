"""Interaction files: columns user, item, rating (optional, default 1), timestamp (optional).

Comma-, semicolon-, tab- or pipe-separated, detected from the first lines (``csv.Sniffer``, else the
candidate that splits the first line into the most fields); with or without a header (a header is a first
line whose rating or timestamp field is not a number, or whose first fields are column names). A header may
name the columns in any order (``user``/``user_id``/``userId``, ``item``/``item_id``/``itemId``/``movieId``,
``rating``/``weight``/``score``, ``timestamp``/``time``/``ts``); without one they are positional. Timestamps
are seconds since the epoch or ISO 8601. Every bad line is reported with its number, and nothing is returned
from a file with one: :class:`InteractionFileError`.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from .base import TopK
from .data import Interactions, RecommendError

#: bad lines named in the error message (the count says how many more)
SHOWN = 20
_ALIASES = {
    "user": ("user", "user_id", "userid", "customer", "customer_id"),
    "item": ("item", "item_id", "itemid", "movieid", "movie_id", "product", "product_id"),
    "rating": ("rating", "weight", "score", "value"),
    "timestamp": ("timestamp", "time", "ts", "at", "datetime"),
}
_DELIMITERS = ",;\t|"


class InteractionFileError(RecommendError):
    """A file that cannot be read as interactions; ``problems`` lists (line number, message)."""

    def __init__(self, path: Path | str, problems: list[tuple[int, str]], detail: str = "") -> None:
        self.path = str(path)
        self.problems = problems
        lines = [f"  line {n}: {msg}" for n, msg in problems[:SHOWN]]
        if len(problems) > SHOWN:
            lines.append(f"  ... and {len(problems) - SHOWN} more")
        head = detail or f"{len(problems)} bad line(s), nothing read"
        super().__init__("\n".join([f"{self.path}: {head}", *lines]))


def _delimiter(sample: str) -> str:
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS).delimiter
    except csv.Error:
        first = sample.splitlines()[0] if sample else ""
        return max(_DELIMITERS, key=first.count)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _timestamp(text: str) -> float | None:
    value = _number(text)
    if value is not None:
        return value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


def _columns(first: list[str]) -> tuple[dict[str, int], bool]:
    """Column positions and whether ``first`` is a header."""
    names = [f.strip().lower() for f in first]
    named = {
        key: next((names.index(a) for a in aliases if a in names), -1) for key, aliases in _ALIASES.items()
    }
    if named["user"] >= 0 and named["item"] >= 0:
        return {k: v for k, v in named.items() if v >= 0}, True
    positional = {key: i for i, key in enumerate(_ALIASES) if i < len(first)}
    header = any(
        _number(first[i]) is None if key == "rating" else _timestamp(first[i]) is None
        for key, i in positional.items()
        if key in ("rating", "timestamp") and first[i].strip()
    )
    return positional, header


def read_interactions(path: Path | str) -> Interactions:
    """The interactions in ``path`` (see the module docstring), or :class:`InteractionFileError`."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InteractionFileError(path, [], f"cannot read: {exc}") from exc
    return parse_interactions(text, path)


def parse_interactions(text: str, source: Path | str = "<text>") -> Interactions:
    """Interactions from a file's text (``source`` names it in errors)."""
    if not text.strip():
        raise InteractionFileError(source, [], "empty: no interactions")
    # whole lines only: a line cut in the middle would mislead the sniffer
    sample = "\n".join(text[:65536].splitlines()[:50])
    reader = csv.reader(io.StringIO(text), delimiter=_delimiter(sample))
    users: list[str] = []
    items: list[str] = []
    weights: list[float] = []
    stamps: list[float] = []
    problems: list[tuple[int, str]] = []
    columns: dict[str, int] | None = None
    width = 0
    try:
        for fields in reader:
            line = reader.line_num
            if not fields or not any(f.strip() for f in fields):
                continue
            if columns is None:
                columns, header = _columns(fields)
                width = len(fields)
                if header:
                    continue
            problem = _parse_line(fields, width, columns, users, items, weights, stamps)
            if problem:
                problems.append((line, problem))
    except csv.Error as exc:
        problems.append((reader.line_num, str(exc)))
    if problems:
        raise InteractionFileError(source, problems)
    if not users:
        raise InteractionFileError(source, [], "no interactions (only a header?)")
    return Interactions.from_arrays(users, items, weights, stamps)


def _parse_line(
    fields: list[str],
    width: int,
    columns: dict[str, int],
    users: list[str],
    items: list[str],
    weights: list[float],
    stamps: list[float],
) -> str | None:
    """Append one line's values; the problem with it instead, if any."""
    if len(fields) != width:
        return f"{len(fields)} fields, expected {width} like the first line"
    user, item = fields[columns["user"]].strip(), fields[columns["item"]].strip()
    if not user or not item:
        return "empty user or item"
    weight = 1.0
    if "rating" in columns:
        raw = fields[columns["rating"]].strip()
        value = _number(raw)
        if value is None:
            return f"rating {raw!r} is not a finite number"
        weight = value
    stamp = math.nan
    if "timestamp" in columns and fields[columns["timestamp"]].strip():
        raw = fields[columns["timestamp"]].strip()
        parsed = _timestamp(raw)
        if parsed is None:
            return f"timestamp {raw!r} is neither seconds since the epoch nor ISO 8601"
        stamp = parsed
    users.append(user)
    items.append(item)
    weights.append(weight)
    stamps.append(stamp)
    return None


def write_interactions(path: Path | str, interactions: Interactions) -> None:
    """A CSV with header ``user,item,rating,timestamp`` (what :func:`read_interactions` reads back)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["user", "item", "rating", "timestamp"])
        for u, i, w, t in zip(
            interactions.users.tolist(),
            interactions.items.tolist(),
            interactions.weights.tolist(),
            interactions.timestamps.tolist(),
            strict=True,
        ):
            stamp = "" if math.isnan(t) else (str(int(t)) if t.is_integer() else repr(t))
            out.writerow([interactions.user_ids[u], interactions.item_ids[i], _plain(w), stamp])


def _plain(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def write_topk(path: Path | str, top: TopK) -> int:
    """A CSV with header ``user,item,rank,score``; returns the rows written."""
    return _write_rows(path, top.rows())


def _write_rows(path: Path | str, rows: Iterable[tuple[str, str, int, float]]) -> int:
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["user", "item", "rank", "score"])
        for user, item, rank, score in rows:
            out.writerow([user, item, rank, f"{score:.6g}"])
            n += 1
    return n
