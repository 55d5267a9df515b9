"""Call-record quality inspection for dealers: transcripts of sales calls and showroom talks scored against
each dealer's rules (required steps, forbidden phrases, talk-time share, response delay, interruptions).

``read`` turns JSON-lines or CSV files into call records, ``rules`` loads the TOML rule sets, ``text``
matches phrases in Chinese (jieba) and English, ``inspect`` scores a record and aggregates, ``store`` keeps
records and inspections in PostgreSQL, ``cli`` is ``drivesight cloud qa``.

Errors, one root for the package (both are ``ValueError``, so a caller can catch bad input as such)::

    QaError                 anything this package refuses
     ├── InputError         a file that cannot be read or decoded at all (named in the message)
     └── RulesError         a rule set refused at load (the file and the entry in the message)

A broken line or record is not an exception: it is a ``Problem`` in the read result, reported with its line
number, while the good records of the same file are still inspected.
"""

from __future__ import annotations


class QaError(ValueError):
    """Something the call-quality inspection refuses."""


class InputError(QaError):
    """A transcript file that cannot be read or decoded."""


class RulesError(QaError):
    """A rule set refused at load."""
