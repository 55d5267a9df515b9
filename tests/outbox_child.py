"""A vehicle process for the crash test: ``produce`` enqueues and publishes until killed; ``flush`` drains.

Run as ``python -m tests.outbox_child MODE DB VEHICLE BROKER_URL``. ``produce`` prints each ``seq`` once its
message is committed to the outbox.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta

from edge_agent.outbox import Outbox
from edge_agent.protocol import BrokerAddress, DrivingEvent, EventKind, EventsV1
from edge_agent.uplink import MqttUplink


def main(mode: str, db: str, vehicle_id: str, broker_url: str) -> int:
    outbox = Outbox(db, vehicle_id)
    uplink = MqttUplink(outbox, BrokerAddress.parse(broker_url), inflight=16)
    uplink.start()
    if mode == "flush":
        ok = uplink.flush(timeout=60)
        uplink.stop()
        print(outbox.depth(), flush=True)
        return 0 if ok else 1
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    i = 0
    while True:
        start = t0 + timedelta(seconds=i)
        event = DrivingEvent(kind=EventKind.HARSH_BRAKE, trip_id="T1", start=start, end=start, peak=4.0,
                             peak_unit="m/s^2")  # fmt: skip
        seq = outbox.enqueue(EventsV1(events=[event]))
        print(seq, flush=True)
        uplink.notify()
        i += 1
        time.sleep(0.002)


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
