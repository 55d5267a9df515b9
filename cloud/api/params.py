"""Parameter types the routes share."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AwareDatetime, BeforeValidator

_ISO = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]")


def _iso_text(value: Any) -> Any:
    # pydantic would also read a number as seconds since 1970 ("0.5"): the API promises RFC 3339 date-times
    if isinstance(value, str) and not _ISO.match(value):
        raise ValueError("give an RFC 3339 date-time with its UTC offset, e.g. 2026-11-02T08:00:00Z")
    return value


#: an RFC 3339 date-time with its offset (a time without one would be read in the database's time zone)
UtcTime = Annotated[AwareDatetime, BeforeValidator(_iso_text)]
