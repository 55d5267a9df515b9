"""The outbox on disk: database file + write-ahead log + WAL index, against the bound, filled far past it.

Prints one JSON line:

- ``bound_bytes``: ``max_bytes`` (``DRIVESIGHT_EDGE_OUTBOX_MAX_MB`` in bytes);
- ``peak_disk_bytes`` and ``peak_ratio``: the largest the three files together were after any enqueue;
- ``final_files``: each file's size at the end; ``stored_payload_bytes`` and ``payload_share``: what the
  messages themselves take, as a share of the bound (the rest is SQLite pages, the log's share, the index);
- ``enqueues_per_s``: realistic traffic (one-minute telemetry batches, events, trips; see
  ``tests/outbox_child.traffic``) enqueued on this disk, evictions and checkpoints included.

Works on any version of the outbox that takes ``max_bytes`` (to compare with an older commit, run it from
a checkout of that commit).

    python tests/benchmarks/outbox_disk.py                       # 1 MiB bound, 4000 messages
    python tests/benchmarks/outbox_disk.py --mb 64 --messages 40000
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_agent.outbox import Outbox, OutboxFull
from tests.outbox_child import traffic

SUFFIXES = ("", "-wal", "-shm")


def files(path: str) -> dict[str, int]:
    """Each of the three files' size (0 when absent)."""
    sizes = {}
    for suffix in SUFFIXES:
        try:
            sizes[suffix or "db"] = os.path.getsize(path + suffix)
        except FileNotFoundError:
            sizes[suffix or "db"] = 0
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0, help="the bound in MiB")
    parser.add_argument("--messages", type=int, default=4000, help="messages offered")
    parser.add_argument("--dir", default=None, help="where the outbox goes (default: a temporary directory)")
    args = parser.parse_args()
    bound = int(args.mb * 2**20)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "outbox.db")
        box = Outbox(path, "bench-car", max_bytes=bound)
        offered = refused = 0
        peak = 0
        elapsed = 0.0
        for body, compress in traffic():
            if offered == args.messages:
                break
            offered += 1
            start = time.perf_counter()
            try:
                box.enqueue(body, compress=compress)
            except OutboxFull:
                refused += 1
            elapsed += time.perf_counter() - start
            peak = max(peak, sum(files(path).values()))
        final = files(path)
        stored = sum(len(p.payload) for p in box.pending(limit=10**9))
        with contextlib.suppress(Exception):
            box.close()
    print(
        json.dumps(
            {
                "bound_bytes": bound,
                "messages_offered": offered,
                "refused": refused,
                "peak_disk_bytes": peak,
                "peak_ratio": round(peak / bound, 3),
                "final_files": final,
                "stored_payload_bytes": stored,
                "payload_share": round(stored / bound, 3),
                "enqueues_per_s": round(offered / elapsed),
            }
        )
    )


if __name__ == "__main__":
    main()
