"""Protected attributes in a credit table: found by column name, kept out of the scorecard.

A credit score must not use sex or gender, age or birth date, race or ethnicity, religion, marital status or
nationality, nor obvious stand-ins for them (a first name or surname, a title such as Mrs, a photo). These are
found by the column's name, split into words (``DateOfBirth``, ``date_of_birth`` and ``dateofbirth`` alike).
Found and not named with ``--protected``, the table is refused (:class:`ProtectedColumnError`, naming the
column and what it is); named with ``--protected``, the column never enters the model and serves only to
report approval rates per group (:func:`group_labels`).

Matching by name cannot see a proxy under an innocent name (a postcode can stand in for ethnicity); the
approval-rate report across the groups given with ``--protected`` is how such a proxy shows.
"""

from __future__ import annotations

import re

import numpy as np

from .customer_table import TableError, finite_number

#: whole words (after splitting the name) that make a column protected, with what they stand for
WORDS: dict[str, str] = {
    "sex": "sex", "gender": "gender", "age": "age", "dob": "date of birth", "yob": "year of birth",
    "race": "race", "racial": "race", "ethnic": "ethnicity", "ethnicity": "ethnicity", "religion": "religion",
    "religious": "religion", "faith": "religion", "marital": "marital status", "married": "marital status",
    "spouse": "marital status", "nationality": "nationality", "citizenship": "nationality",
    "foreign": "nationality", "title": "title (a proxy for sex and marital status)",
    "salutation": "title (a proxy for sex and marital status)", "photo": "photo", "picture": "photo",
    "pregnant": "pregnancy", "disability": "disability",
}  # fmt: skip
#: pieces of the squashed name (letters and digits only) that make a column protected
PIECES: dict[str, str] = {
    "birth": "date or year of birth", "gender": "gender", "ethnic": "ethnicity", "religio": "religion",
    "marital": "marital status", "nationalit": "nationality", "firstname": "first name (a proxy for sex)",
    "forename": "first name (a proxy for sex)", "givenname": "first name (a proxy for sex)",
    "surname": "surname (a proxy for ethnicity)", "lastname": "surname (a proxy for ethnicity)",
    "familyname": "surname (a proxy for ethnicity)", "fullname": "name (a proxy for sex and ethnicity)",
    "pregnan": "pregnancy", "sexualorientation": "sexual orientation",
}  # fmt: skip
#: "age" next to one of these is the age of a thing, not of the applicant (vehicle_age, loan_age)
THINGS = frozenset(
    {"vehicle", "car", "account", "loan", "contract", "debt", "relationship", "credit", "file"}
)
#: a numeric protected column with more distinct values than this is reported in quantile bands
MAX_GROUPS = 10
BANDS = 5


class ProtectedColumnError(TableError):
    """A table holds a protected attribute that was not named with ``--protected``."""


def words(name: str) -> list[str]:
    """The lower-case words of a column name: ``DateOfBirth`` and ``date-of-birth`` give the same words."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def protected_kind(name: str) -> str | None:
    """What a column's name says it holds if that is a protected attribute, else None."""
    found = words(name)
    for word in found:
        if word == "age" and THINGS.intersection(found):
            continue
        if word in WORDS:
            return WORDS[word]
    squashed = "".join(found)
    for piece, kind in PIECES.items():
        if piece in squashed:
            return kind
    return None


def check_columns(
    header: list[str], target: str, protected: tuple[str, ...], ignored: tuple[str, ...]
) -> None:
    """Refuse protected columns not named with ``--protected``, and ``--protected`` names not in the table."""
    missing = [c for c in protected if c not in header]
    if missing:
        raise TableError(
            f"--protected {', '.join(missing)} not in the table; its columns: {', '.join(header)}"
        )
    for column in header:
        if column == target or column in protected or column in ignored:
            continue
        kind = protected_kind(column)
        if kind is not None:
            raise ProtectedColumnError(
                f"column {column!r} looks like a protected attribute ({kind}): a credit score must not use "
                f"it. Pass --protected {column} to keep it out of the model and report approval rates "
                "across its groups, or remove the column"
            )


def group_labels(values: list[str]) -> np.ndarray:
    """One group label per row: the value itself, quantile bands for a many-valued number, "missing"."""
    cleaned = [v.strip() for v in values]
    filled = [v for v in cleaned if v.lower() not in {"", "na", "n/a", "nan", "null", "?"}]
    numbers = [finite_number(v) for v in filled]
    present = set(filled)
    if len(present) <= MAX_GROUPS or any(n is None for n in numbers):
        return np.array([v if v in present else "missing" for v in cleaned], dtype=object)
    edges = np.unique(np.quantile(np.array(numbers, dtype=np.float64), np.linspace(0, 1, BANDS + 1)))
    labels = []
    for value in cleaned:
        number = finite_number(value)
        if number is None:
            labels.append("missing")
            continue
        band = min(int(np.searchsorted(edges, number, side="right")) - 1, len(edges) - 2)
        band = max(band, 0)
        closing = "]" if band == len(edges) - 2 else ")"  # bands hold their lower edge, the last both
        labels.append(f"[{_fmt(edges[band])}, {_fmt(edges[band + 1])}{closing}")
    return np.array(labels, dtype=object)


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"
