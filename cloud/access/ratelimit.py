"""A token bucket per API key: ``rate_per_s`` requests a second on average, bursts up to ``burst``.

Per process: with N API worker processes behind one port a key gets up to N times the rate (each process
counts only what it serves). The buckets live in memory; nothing is shared between processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBuckets:
    """One bucket per key id; ``take`` spends a token or says how long until the next one."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("rate_per_s must be > 0 and burst >= 1")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.clock = clock
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, at)

    def take(self, key_id: int) -> float | None:
        """Spend one token of ``key_id``'s bucket: None if there was one, else seconds until there is."""
        now = self.clock()
        tokens, at = self._buckets.get(key_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate_per_s)
        if tokens >= 1.0:
            self._buckets[key_id] = (tokens - 1.0, now)
            return None
        self._buckets[key_id] = (tokens, now)
        return (1.0 - tokens) / self.rate_per_s
