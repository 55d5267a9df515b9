"""A customer table from a CSV file: which columns are features, which are ignored and why, and the target.

One row per customer, a header row, commas. A column is numeric when every value that is not missing reads
as a finite number, categorical otherwise. Missing values (empty, ``NA``, ``N/A``, ``NaN``, ``null``, ``?``)
stay missing here: the model's pipeline imputes numbers and treats a missing category as a category of its
own, so the exported ONNX model handles them the same way. Ignored, each with its reason:

- identifiers: the columns named by ``--id-column``, and columns with a distinct value on every row (text,
  or whole numbers such as account numbers);
- free text: text columns with more distinct values than a category can have (comments, addresses);
- constants: one value on every row.

Errors: one class, :class:`TableError` (a ``ValueError``), whose message says what is wrong with the file
and names the line or the columns: a missing or unreadable file, a row of the wrong width, no target column,
a target that is not binary or has one class only, too few rows, all-empty columns, no usable feature.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

#: values read as missing (compared stripped and lower-cased)
MISSING = frozenset({"", "na", "n/a", "nan", "null", "?"})
POSITIVE = frozenset({"1", "1.0", "true", "yes"})
NEGATIVE = frozenset({"0", "0.0", "false", "no"})
#: labelled rows needed: a quarter is held out and still has to rank customers into deciles
MIN_ROWS = 50
#: customers of each class needed (the held-out part gets a quarter of them)
MIN_PER_CLASS = 10
#: a text column with more distinct values than this, and than half its filled rows, is free text
MAX_CATEGORY_VALUES = 50
FREE_TEXT_SHARE = 0.5


class TableError(ValueError):
    """A customer table that cannot be trained on; the message says why and what to fix."""


class Role(StrEnum):
    """What a column is to the model."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    IDENTIFIER = "identifier"
    FREE_TEXT = "free_text"
    CONSTANT = "constant"


@dataclass(frozen=True, slots=True)
class ColumnProfile:
    """One column's role and, for an ignored column, why it is ignored."""

    name: str
    role: Role
    reason: str = ""


@dataclass
class CustomerTable:
    """The labelled rows of a customer table, features in model order: numeric columns, then categorical."""

    source: str
    target: str
    X: np.ndarray  # object array: floats (NaN when missing) in the numeric columns, then strings ("" missing)
    y: np.ndarray  # int 0/1
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    ignored: dict[str, str]  # column -> reason
    rows_without_target: int

    @property
    def features(self) -> tuple[str, ...]:
        """The feature columns in the order of ``X``."""
        return self.numeric + self.categorical


def _missing(value: str) -> bool:
    return value.strip().lower() in MISSING


def finite_number(value: str) -> float | None:
    """A cell as a finite number (None: not one: text, empty, NaN or infinite)."""
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the data rows of a CSV file; blank lines are skipped."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise TableError(f"{path} is empty: a header row and one row per customer are needed")
            header = [h.strip() or f"unnamed_{i + 1}" for i, h in enumerate(header)]
            rows: list[list[str]] = []
            for row in reader:
                if not row or all(not v.strip() for v in row):
                    continue
                if len(row) != len(header):
                    raise TableError(
                        f"{path} line {reader.line_num}: {len(row)} fields where the header has {len(header)}"
                    )
                rows.append(row)
    except FileNotFoundError:
        raise TableError(f"no such file: {path}") from None
    except UnicodeDecodeError as exc:
        raise TableError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise TableError(f"{path} is not a readable CSV file: {exc}") from None
    except OSError as exc:
        raise TableError(f"cannot read {path}: {exc.strerror or exc}") from None
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if duplicated:
        raise TableError(f"{path}: column names used twice: {', '.join(duplicated)}")
    return header, rows


def parse_target(values: list[str], target: str) -> np.ndarray:
    """0/1 per row from 0/1, true/false or yes/no (any case); -1 where the target is missing."""
    labels = np.full(len(values), -1, dtype=np.int64)
    unknown: set[str] = set()
    for i, value in enumerate(values):
        word = value.strip().lower()
        if word in POSITIVE:
            labels[i] = 1
        elif word in NEGATIVE:
            labels[i] = 0
        elif word not in MISSING:
            unknown.add(value.strip())
    if unknown:
        shown = ", ".join(repr(v) for v in sorted(unknown)[:5]) + (" ..." if len(unknown) > 5 else "")
        raise TableError(
            f"target {target!r} is not binary: it holds {shown}; accepted are 0/1, true/false and yes/no"
        )
    return labels


def profile_column(name: str, values: list[str], id_columns: frozenset[str]) -> ColumnProfile:
    """Numeric, categorical or ignored (identifier, free text, constant), from the column's values."""
    filled = [v.strip() for v in values if not _missing(v)]
    distinct = set(filled)
    numbers = [finite_number(v) for v in filled]
    numeric = all(n is not None for n in numbers)
    if name in id_columns:
        return ColumnProfile(name, Role.IDENTIFIER, "named by --id-column")
    if len(filled) == len(values) and len(distinct) == len(values):
        whole = numeric and all(float(n).is_integer() for n in numbers if n is not None)
        if not numeric or whole:
            kind = "whole numbers" if numeric else "text"
            return ColumnProfile(name, Role.IDENTIFIER, f"identifier: {kind}, a distinct value on every row")
    if len(distinct) == 1 and len(filled) == len(values):
        return ColumnProfile(name, Role.CONSTANT, f"constant: {filled[0]!r} on every row")
    if numeric:
        return ColumnProfile(name, Role.NUMERIC)
    if len(distinct) > max(MAX_CATEGORY_VALUES, FREE_TEXT_SHARE * len(filled)):
        return ColumnProfile(
            name, Role.FREE_TEXT, f"free text: {len(distinct)} distinct values in {len(filled)} filled rows"
        )
    return ColumnProfile(name, Role.CATEGORICAL)


def load_customer_table(path: Path, target: str, id_columns: tuple[str, ...] = ()) -> CustomerTable:
    """Read, check and profile a customer table; :class:`TableError` says why one is refused."""
    header, rows = read_rows(path)
    if target not in header:
        hint = " (is it comma-separated?)" if len(header) == 1 and ";" in header[0] else ""
        raise TableError(f"{path} has no target column {target!r}{hint}; its columns: {', '.join(header)}")
    unknown_ids = [c for c in id_columns if c not in header]
    if unknown_ids:
        raise TableError(
            f"--id-column {', '.join(unknown_ids)} not in {path}; its columns: {', '.join(header)}"
        )
    columns = {name: [row[i] for row in rows] for i, name in enumerate(header)}
    labels = parse_target(columns.pop(target), target)
    labelled = labels >= 0
    kept = np.flatnonzero(labelled)
    y = labels[labelled]
    if len(y) < MIN_ROWS:
        raise TableError(
            f"{path} has too few rows: {len(y)} customers with a target, at least {MIN_ROWS} are needed"
        )
    counts = np.bincount(y, minlength=2)
    if counts.min() == 0:
        only = int(np.argmax(counts))
        raise TableError(f"target {target!r} has one class only: every labelled row is {only}")
    if counts.min() < MIN_PER_CLASS:
        raise TableError(
            f"too few rows of one class in {target!r}: {counts[0]} of 0 and {counts[1]} of 1, "
            f"at least {MIN_PER_CLASS} of each are needed"
        )
    columns = {name: [values[i] for i in kept] for name, values in columns.items()}
    empty = [name for name, values in columns.items() if all(_missing(v) for v in values)]
    if empty:
        raise TableError(f"{path}: empty columns (no value on any labelled row): {', '.join(empty)}")
    profiles = [profile_column(name, values, frozenset(id_columns)) for name, values in columns.items()]
    numeric = tuple(p.name for p in profiles if p.role is Role.NUMERIC)
    categorical = tuple(p.name for p in profiles if p.role is Role.CATEGORICAL)
    ignored = {p.name: p.reason for p in profiles if p.reason}
    if not numeric and not categorical:
        reasons = "; ".join(f"{name}: {reason}" for name, reason in ignored.items()) or "only the target"
        raise TableError(f"{path} has no usable feature column ({reasons})")
    X = np.empty((len(y), len(numeric) + len(categorical)), dtype=object)
    for j, name in enumerate(numeric):
        X[:, j] = [math.nan if _missing(v) else float(v) for v in columns[name]]
    for j, name in enumerate(categorical, start=len(numeric)):
        X[:, j] = ["" if _missing(v) else v.strip() for v in columns[name]]
    return CustomerTable(
        source=str(path), target=target, X=X, y=y, numeric=numeric, categorical=categorical,
        ignored=ignored, rows_without_target=int((~labelled).sum()),
    )  # fmt: skip
