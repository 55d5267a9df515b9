"""An ingest worker process for the crash test, run until killed.

``python -m tests.ingest_child DATABASE_URL BROKER_URL GROUP CLIENT_ID``; prints its stored count.
"""

from __future__ import annotations

import sys
import time

from cloud.ingest.worker import IngestWorker
from edge_agent.protocol import BrokerAddress


def main(database_url: str, broker_url: str, group: str, client_id: str) -> None:
    worker = IngestWorker(
        database_url, BrokerAddress.parse(broker_url), group=group or None, client_id=client_id, batch_size=50
    )
    worker.start()
    print("subscribed", flush=True)
    while True:
        time.sleep(0.05)
        print(worker.metrics.stored, flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
