"""How the outbox's disk bound is shared between the SQLite database file, its write-ahead log and WAL index.

A SQLite database in WAL mode is three files: the database, the ``-wal`` log (every committed page goes there
first and is copied into the database at a checkpoint) and the ``-shm`` index of the log. The bound covers all
three, at every moment of an enqueue or an acknowledgement, not only between them::

    total = database pages (data_pages)
          + WAL header + (wal_frames checkpointed away after each commit + txn_frames one transaction writes)
          + the WAL index (one 32 KiB block indexes 4096 frames; the log never holds that many here)

The database file never grows past ``data_pages`` because the outbox evicts before it inserts, counting pages
(``page_count - freelist_count``) rather than payload bytes, so B-tree overhead and fragmentation are paid for
out of the bound instead of on top of it. The log is truncated (``wal_checkpoint(TRUNCATE)``) after any commit
that leaves it holding more than ``wal_frames`` frames; one transaction adds at most ``txn_frames`` frames
(a message as large as the limit, plus room evicted for it in small rows, plus B-tree bookkeeping).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: SQLite's page size unless the database says otherwise.
DEFAULT_PAGE_SIZE = 4096
#: SQLite's WAL file header; each frame carries a 24-byte header before its page.
WAL_HEADER = 32
FRAME_HEADER = 24
#: One wal-index block covers 4096 frames; the log is kept far below that, so the index is one block.
SHM_BYTES = 32 * 1024
#: Pages an empty outbox takes: header page, pointer map, tables, index and trigger-free bookkeeping.
EMPTY_PAGES = 8
#: Pages a stored row may take beyond its payload's overflow chain: a table and an index leaf split, a parent
#: split, a new pointer-map page (a rarer case is caught after the insert, which then evicts more).
ROW_OVERHEAD_PAGES = 4
#: Frames an enqueue or an acknowledgement writes besides the message's own pages: leaf pages of the table,
#: the index and the drop/meta/delivered tables, page 1, the freelist trunk and pointer-map pages.
TXN_OVERHEAD_FRAMES = 16
#: The most frames the log keeps between checkpoints (SQLite's own default autocheckpoint).
MAX_WAL_FRAMES = 1000


class BoundTooSmall(ValueError):
    """The disk bound cannot hold an empty outbox, its log and two messages as large as the limit."""


@dataclass(frozen=True, slots=True)
class DiskBudget:
    """The split of ``total`` bytes between the database file, the WAL and the WAL index."""

    total: int
    page_size: int
    max_message_bytes: int
    wal_frames: int
    txn_frames: int

    @classmethod
    def plan(cls, total: int, page_size: int, max_message_bytes: int) -> DiskBudget:
        """Split ``total``: a sixteenth (at most 1000 frames, at least 4) for the log between checkpoints."""
        frame = page_size + FRAME_HEADER
        wal_frames = max(4, min(MAX_WAL_FRAMES, total // 16 // frame))
        # a message's own pages, and as many again of small rows evicted to make room for it
        txn_frames = 2 * cls._overflow_pages(max_message_bytes, page_size) + TXN_OVERHEAD_FRAMES
        budget = cls(total, page_size, max_message_bytes, wal_frames, txn_frames)
        needed = EMPTY_PAGES + 2 * budget.message_pages(max_message_bytes)
        if budget.data_pages < needed:
            minimum = budget.wal_bytes + SHM_BYTES + needed * page_size
            raise BoundTooSmall(
                f"an outbox bound of {total} bytes cannot hold its log and two {max_message_bytes}-byte "
                f"messages; it needs at least {minimum} bytes (or a smaller message limit)"
            )
        return budget

    @staticmethod
    def _overflow_pages(size: int, page_size: int) -> int:
        # each overflow page holds page_size - 4 bytes of a row (4 bytes point to the next page)
        return math.ceil(size / (page_size - 4))

    @property
    def frame_bytes(self) -> int:
        """Bytes one page takes in the log."""
        return self.page_size + FRAME_HEADER

    @property
    def wal_rest_bytes(self) -> int:
        """The largest the log may stay between transactions: past it, it is checkpointed and truncated."""
        return WAL_HEADER + self.wal_frames * self.frame_bytes

    @property
    def wal_bytes(self) -> int:
        """The largest the log becomes, during a transaction."""
        return WAL_HEADER + (self.wal_frames + self.txn_frames) * self.frame_bytes

    @property
    def data_pages(self) -> int:
        """Pages the database file may have."""
        return (self.total - self.wal_bytes - SHM_BYTES) // self.page_size

    def message_pages(self, size: int) -> int:
        """Pages a stored message of ``size`` bytes may add to the database, counted generously."""
        return self._overflow_pages(size, self.page_size) + ROW_OVERHEAD_PAGES
