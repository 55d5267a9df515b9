"""JSON answers whose non-finite floats (NaN, Infinity: real and double precision columns hold them) are
null."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.responses import JSONResponse


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


class SafeJSONResponse(JSONResponse):
    """JSON whose non-finite floats are null."""

    def render(self, content: Any) -> bytes:
        """The content as compact UTF-8 JSON, NaN and Infinity replaced by null."""
        return json.dumps(
            _finite(content), ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
        ).encode("utf-8")
