"""Verified keys cached for a couple of seconds, so that a request normally costs no database round trip.

An entry (a key found, or a token that matched no key) is trusted for ``ttl_s`` seconds after it was read from
the database; a revoked key therefore stops working at most ``ttl_s`` seconds after the revocation committed,
in every API process, without any signal between them. Expiry is checked on every use, cached or not.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from .keys import KeyInfo

#: bounds the memory a flood of made-up tokens can take (each is cached as "no such key")
MAX_ENTRIES = 10_000


@dataclass(slots=True)
class _Entry:
    info: KeyInfo | None
    read_at: float


class KeyCache:
    """Token -> stored key (or None), each entry valid for ``ttl_s`` seconds on ``clock``.

    Not thread-safe: the API uses it from its event loop only.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._entries: dict[bytes, _Entry] = {}

    @staticmethod
    def slot(token: str) -> bytes:
        """The cache's key for ``token``: a digest, so that the cache holds no secret in the clear."""
        return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()

    def get(self, token: str) -> tuple[bool, KeyInfo | None]:
        """(True, the key or None) when a fresh entry exists; (False, None) when the database must say."""
        entry = self._entries.get(self.slot(token))
        if entry is None or self.clock() - entry.read_at >= self.ttl_s:
            return False, None
        return True, entry.info

    def put(self, token: str, info: KeyInfo | None, read_at: float) -> None:
        """Remember what the database said about ``token`` at ``read_at`` (a ``clock`` reading)."""
        if len(self._entries) >= MAX_ENTRIES:
            now = self.clock()
            self._entries = {k: e for k, e in self._entries.items() if now - e.read_at < self.ttl_s}
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
        self._entries[self.slot(token)] = _Entry(info, read_at)
