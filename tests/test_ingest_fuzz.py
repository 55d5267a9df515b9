"""Property-based tests of the ingest (hypothesis): whatever arrives, nothing stalls, nothing implausible is
stored, every payload is accounted for exactly once.

Small in CI; ``DRIVESIGHT_FUZZ_EXAMPLES=2000 pytest tests/test_ingest_fuzz.py`` runs the larger size.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloud.ingest.worker import IngestWorker
from cloud.ingest.writer import BatchWriter
from edge_agent.protocol import ProtocolError, TelemetryV1, UplinkKind, decode, uplink_topic, vss
from edge_agent.protocol.bounds import DEFAULT_MAX_CLOCK_SKEW, TIME_FLOOR
from tests.helpers import count, wait_until
from tests.hostile import good_payloads, implausible_values

EXAMPLES = int(os.environ.get("DRIVESIGHT_FUZZ_EXAMPLES", "30"))
NOW = datetime.now(UTC)

#: values that have broken JSON consumers: huge, tiny, non-finite, wrong types, NUL, odd times, deep nesting
HOSTILE_LEAVES: list[Any] = [
    None, True, 0, -1, 2**63, -(2**63) - 1, 10**30, 1e300, -1e300, 1e-300, float("nan"), float("inf"), "",
    "12", "\0", "a\0b", "x" * 10_000, "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "2200-01-01T00:00:00Z",
    "1970-01-01T00:00:00Z", "not a time", [], {}, [[[[[[[[]]]]]]]], {"a": {"b": {"c": {}}}}, "Vehicle.Speed",
    999.0, -999.0, 1e17, 10**19,
]  # fmt: skip
leaves = st.sampled_from(HOSTILE_LEAVES) | st.floats() | st.integers() | st.text(max_size=20)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a node of a JSON value."""
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _set(value: Any, path: tuple[Any, ...], leaf: Any) -> Any:
    if not path:
        return leaf
    value[path[0]] = _set(value[path[0]], path[1:], leaf)
    return value


def mutate(payload: bytes, pick: random.Random, leaf: Any) -> bytes:
    """A valid payload with one node (or key) replaced by a hostile value, as JSON with NaN allowed."""
    doc = json.loads(payload)
    paths = _paths(doc)
    path = paths[pick.randrange(len(paths))]
    if path and isinstance(path[-1], str) and pick.random() < 0.2:  # a hostile key instead of a value
        parent = doc
        for p in path[:-1]:
            parent = parent[p]
        parent[str(leaf)[:100]] = parent.pop(path[-1])
    else:
        doc = _set(doc, path, leaf)
    return json.dumps(doc, allow_nan=True).encode()


def _check_plausible(topic: str, payload: bytes) -> None:
    """Decoding either refuses with a ProtocolError or yields a message inside every bound."""
    try:
        m = decode(topic, payload, now=NOW)
    except ProtocolError:
        return
    assert TIME_FLOOR <= m.sent_at <= NOW + DEFAULT_MAX_CLOCK_SKEW
    if isinstance(m.body, TelemetryV1):
        for signal, values in m.body.signals.items():
            bounds = vss.plausible_range(signal)
            assert all(v is None or v in bounds for v in values), signal


@settings(max_examples=EXAMPLES * 10, deadline=None)
@given(kind=st.sampled_from(UplinkKind), payload=st.binary(max_size=2048))
def test_raw_bytes_are_refused_with_a_reason(kind: UplinkKind, payload: bytes) -> None:
    _check_plausible(uplink_topic("car1", kind), payload)


@settings(max_examples=EXAMPLES * 10, deadline=None)
@given(which=st.integers(0, 5), seed=st.integers(0, 2**32), leaf=leaves)
def test_mutated_messages_of_every_kind_are_refused_or_plausible(which: int, seed: int, leaf: Any) -> None:
    good = good_payloads("car1", 1, NOW)[which]
    _check_plausible(good.topic, mutate(good.payload, random.Random(seed), leaf))


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    mutations=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2**32), leaves), max_size=12),
    garbage=st.lists(st.binary(max_size=64), max_size=3),
    order=st.randoms(use_true_random=False),
)
def test_a_mixed_batch_stores_every_good_message_once_and_dead_letters_every_bad_one(
    db: psycopg.Connection, mutations: list[tuple[int, int, Any]], garbage: list[bytes], order: random.Random
) -> None:
    v = f"f{uuid.uuid4().hex[:10]}"
    good = [(p.topic, p.payload) for p in good_payloads(v, 1, NOW)]
    bad = [
        (good[i][0], mutate(good_payloads(v, 100 + n, NOW)[i].payload, random.Random(seed), leaf))
        for n, (i, seed, leaf) in enumerate(mutations)
    ]
    bad += [(uplink_topic(v, "trip"), g) for g in garbage]
    items = good + bad
    order.shuffle(items)
    result, _ = BatchWriter().write(db, items, now=NOW)
    digests = {
        bytes(r[0])
        for r in db.execute("SELECT digest FROM ingested_messages WHERE vehicle_id = %s", (v,)).fetchall()
    }
    dead = {
        bytes(r[0]): str(r[1])
        for r in db.execute(
            "SELECT sha256, reason FROM dead_letters WHERE topic LIKE %s", (f"ds/v1/{v}/%",)
        ).fetchall()
    }
    for _topic, payload in items:  # every payload is accounted for: stored, a redelivery, or a dead letter
        digest = hashlib.sha256(payload).digest()
        assert digest in digests or digest in dead, payload[:200]
    for _topic, payload in good:
        assert hashlib.sha256(payload).digest() in digests  # mutations use other seqs: good ones are stored
    assert count(db, "SELECT count(*) FROM trips WHERE vehicle_id = %s AND trip_id = 'T1'", v) == 1
    assert result.stored + result.duplicates + result.dead_letters == len(items)
    assert implausible_values(db, v) == []


def test_a_worker_fed_random_hostile_traffic_stays_healthy(
    ingest_worker: IngestWorker, mqtt_client: mqtt.Client, db: psycopg.Connection
) -> None:
    """Seeded random mutations of every kind through the broker; the good messages around them are stored."""
    worker = ingest_worker
    pick = random.Random(11)
    v = f"fw{uuid.uuid4().hex[:8]}"
    good = good_payloads(v, 1, datetime.now(UTC))
    sent_bad = 0
    for n in range(max(60, EXAMPLES * 4)):
        template = good[pick.randrange(len(good))]
        payload = mutate(
            good_payloads(v, 1000 + n, datetime.now(UTC))[good.index(template)].payload,
            pick,
            HOSTILE_LEAVES[pick.randrange(len(HOSTILE_LEAVES))],
        )
        mqtt_client.publish(template.topic, payload, qos=1)
        sent_bad += 1
    for p in good:
        mqtt_client.publish(p.topic, p.payload, qos=1).wait_for_publish(10)
    assert wait_until(lambda: worker.metrics.received >= sent_bad + len(good), timeout=60)
    wanted = [hashlib.sha256(p.payload).digest() for p in good]

    def accounted() -> bool:
        # a mutated seq may take a good message's key first: the good one is then a conflicting resend
        return count(
            db,
            "SELECT count(*) FROM unnest(%s::bytea[]) AS w (d) WHERE EXISTS"
            " (SELECT 1 FROM ingested_messages WHERE vehicle_id = %s AND digest = w.d)"
            " OR EXISTS (SELECT 1 FROM dead_letters WHERE sha256 = w.d)",
            wanted,
            v,
        ) == len(good)

    assert wait_until(accounted, timeout=60)
    assert worker.health() == (True, "ok")
    assert (
        worker.metrics.stored + worker.metrics.duplicates + worker.metrics.dead_letters
        == worker.metrics.received
    )
    assert implausible_values(db, v) == []
