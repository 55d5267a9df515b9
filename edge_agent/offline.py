"""Run a source through the agent without a broker and collect what it would send.

``drivesight edge replay`` uses this to turn a recorded file into events and trip summaries, with times
written in the file's own time base.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .agent import EdgeAgent
from .detectors import DEFAULT_THRESHOLDS, Threshold
from .outbox import Outbox
from .protocol import DtcV1, EventsV1, TripSummaryV1, decode
from .signals import SignalBlock
from .trips import TripSettings

TIME_FIELDS = ("started_at", "ended_at")


def run_offline(
    blocks: Iterable[SignalBlock],
    *,
    trip_settings: TripSettings | None = None,
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS,
    time_of: Callable[[float], Any] = float,
) -> dict[str, Any]:
    """Process ``blocks``; return the trips, events and fault codes the agent produced, as plain data."""
    outbox = Outbox(":memory:", "offline", max_bytes=1 << 40)
    agent = EdgeAgent(outbox, trip_settings=trip_settings, thresholds=thresholds)
    agent.run(blocks)
    trips: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    dtcs: list[dict[str, Any]] = []
    after = -1
    while batch := outbox.pending(after_seq=after, limit=1000):
        after = batch[-1].seq
        for item in batch:
            body = decode(item.topic, item.payload).body
            if isinstance(body, TripSummaryV1):
                trip = body.model_dump(mode="json")
                for key in TIME_FIELDS:
                    trip[key] = time_of(getattr(body, key).timestamp())
                trips.append(trip)
            elif isinstance(body, EventsV1):
                for e in body.events:
                    events.append(
                        {
                            "kind": e.kind.value,
                            "trip_id": e.trip_id,
                            "start": time_of(e.start.timestamp()),
                            "end": time_of(e.end.timestamp()),
                            "duration_s": round(e.duration_s, 3),
                            "peak": e.peak,
                            "unit": e.peak_unit,
                        }
                    )
            elif isinstance(body, DtcV1):
                dtcs += [
                    {"code": r.code, "first_seen": time_of(r.first_seen.timestamp())} for r in body.codes
                ]
    outbox.close()
    return {"trips": trips, "events": events, "dtcs": dtcs}
