"""The wire contract: round trips for every body, and precise rejections of bad input."""

from __future__ import annotations

import base64
import itertools
import json
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.protocol import (
    MAX_PAYLOAD_BYTES,
    SCHEMAS,
    Body,
    BrokerAddress,
    DownlinkKind,
    DrivingEvent,
    DtcRecord,
    DtcV1,
    EventKind,
    EventsV1,
    GeoPoint,
    InvalidMessage,
    MalformedPayload,
    PayloadTooLarge,
    ReceiptV1,
    RejectReason,
    SchemaMismatch,
    StatusV1,
    TelemetryV1,
    TopicError,
    TripSummaryV1,
    UplinkKind,
    VehicleMismatch,
    claimed_seq,
    decode,
    downlink_topic,
    encode,
    parse_topic,
    seq_ranges,
    uplink_filter,
    uplink_topic,
    vss,
)

vehicle_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
#: the receiver's clock in these tests: every generated time is before it
NOW = datetime(2100, 1, 2, tzinfo=UTC)
aware_times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
percent = st.floats(min_value=-100, max_value=100, allow_nan=False, allow_infinity=False)
non_negative = st.floats(min_value=0, max_value=1e4, allow_nan=False, allow_infinity=False)
speeds = st.floats(min_value=0, max_value=400, allow_nan=False, allow_infinity=False)
texts = st.text(alphabet=st.characters(blacklist_characters="\x00"), max_size=10)
trip_ids = st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z")
points = st.builds(
    GeoPoint, lat=st.floats(min_value=-90, max_value=90), lon=st.floats(min_value=-180, max_value=180)
)


@st.composite
def events(draw: st.DrawFn) -> DrivingEvent:
    start = draw(aware_times)
    return DrivingEvent(
        kind=draw(st.sampled_from(EventKind)),
        trip_id=draw(trip_ids),
        start=start,
        end=start + timedelta(seconds=draw(st.floats(min_value=0, max_value=600))),
        peak=draw(finite),
        peak_unit="m/s^2",
        location=draw(st.none() | points),
    )


@st.composite
def trips(draw: st.DrawFn) -> TripSummaryV1:
    start = draw(aware_times)
    return TripSummaryV1(
        trip_id=draw(trip_ids),
        started_at=start,
        ended_at=start + timedelta(seconds=draw(st.floats(min_value=0, max_value=86_400))),
        distance_km=draw(non_negative),
        duration_s=draw(non_negative),
        moving_s=draw(non_negative),
        idle_s=draw(non_negative),
        max_speed_kmh=draw(speeds),
        avg_speed_kmh=draw(speeds),
        night_share=draw(st.floats(min_value=0, max_value=1)),
        event_counts=draw(st.dictionaries(st.sampled_from(EventKind), st.integers(0, 1000))),
        start_location=draw(st.none() | points),
        end_location=draw(st.none() | points),
        odometer_km=draw(st.none() | non_negative),
        fuel_used_pct=draw(st.none() | percent),
        soc_used_pct=draw(st.none() | percent),
        samples=draw(st.integers(0, 10**7)),
    )


@st.composite
def telemetry(draw: st.DrawFn) -> TelemetryV1:
    n = draw(st.integers(1, 50))
    offsets = sorted(draw(st.lists(st.integers(0, 3_600_000), min_size=n, max_size=n)))
    names = draw(
        st.lists(
            # outside the catalogue: any finite value is plausible (catalogued ranges are tested apart)
            st.from_regex(r"\AVehicle(\.[A-Z][A-Za-z0-9]{0,8}){1,3}\Z").filter(
                lambda n: n not in vss.PLAUSIBLE
            ),
            min_size=1,
            max_size=4,
            unique=True,
        )
    )
    columns = {name: draw(st.lists(st.none() | finite, min_size=n, max_size=n)) for name in names}
    return TelemetryV1(t0=draw(aware_times), t_ms=offsets, signals=columns)


dtcs = st.builds(
    DtcV1,
    codes=st.lists(
        st.builds(
            DtcRecord,
            code=st.from_regex(r"\A[PCBU][0-3][0-9A-F]{3}\Z"),
            first_seen=aware_times,
            trip_id=st.none() | trip_ids,
        ),
        min_size=1,
        max_size=4,
    ),
)

bodies = st.one_of(
    dtcs,
    trips(),
    st.builds(EventsV1, events=st.lists(events(), min_size=1, max_size=5)),
    telemetry(),
    st.builds(
        StatusV1,
        state=st.sampled_from(["online", "offline"]),
        agent_version=texts,
        boot_id=st.none() | texts,
        outbox_depth=st.none() | st.integers(0, 10**6),
    ),
)


@settings(max_examples=200, deadline=None)
@given(
    vehicle_id=vehicle_ids,
    seq=st.integers(0, 2**63 - 1),
    body=bodies,
    sent_at=aware_times,
    compress=st.booleans(),
)
def test_round_trip(
    vehicle_id: str, seq: int, body: TripSummaryV1, sent_at: datetime, compress: bool
) -> None:
    payload = encode(vehicle_id, seq, body, sent_at=sent_at, compress=compress)
    message = decode(uplink_topic(vehicle_id, body.KIND), payload, now=NOW)
    assert message.vehicle_id == vehicle_id
    assert message.seq == seq
    assert message.sent_at == sent_at
    assert message.schema == body.SCHEMA
    assert message.body == body


@given(vehicle_id=vehicle_ids, kind=st.sampled_from(UplinkKind))
def test_uplink_topic_round_trip(vehicle_id: str, kind: UplinkKind) -> None:
    topic = uplink_topic(vehicle_id, kind)
    parsed = parse_topic(topic)
    assert (parsed.vehicle_id, parsed.kind, parsed.is_downlink) == (vehicle_id, kind, False)
    assert str(parsed) == topic


@given(vehicle_id=vehicle_ids, kind=st.sampled_from(DownlinkKind))
def test_downlink_topic_round_trip(vehicle_id: str, kind: DownlinkKind) -> None:
    parsed = parse_topic(downlink_topic(vehicle_id, kind))
    assert (parsed.vehicle_id, parsed.kind, parsed.is_downlink) == (vehicle_id, kind, True)


def test_every_body_is_registered() -> None:
    assert set(SCHEMAS.values()) == set(Body.__subclasses__())
    assert all(name == SCHEMAS[name].SCHEMA for name in SCHEMAS)


def test_shared_subscription_filter() -> None:
    assert uplink_filter() == "ds/v1/+/+"
    assert uplink_filter("ingest") == "$share/ingest/ds/v1/+/+"


@pytest.mark.parametrize(
    ("topic", "fragment"),
    [
        ("ds/v2/car1/trip", "not of the form"),
        ("xx/v1/car1/trip", "not of the form"),
        ("ds/v1/car1", "not of the form"),
        ("ds/v1/car1/bogus", "unknown uplink kind 'bogus'"),
        ("ds/v1/car1/down/bogus", "unknown downlink kind"),
        ("ds/v1/car+1/trip", "invalid vehicle id"),
        ("ds/v1/car1/trip/extra/more", "too many levels"),
    ],
)
def test_bad_topics(topic: str, fragment: str) -> None:
    with pytest.raises(TopicError, match=fragment):
        parse_topic(topic)


def _status() -> StatusV1:
    return StatusV1(state="online", agent_version="1.0")


def _envelope(**overrides: object) -> bytes:
    raw: dict[str, object] = {
        "schema": "status.v1",
        "vehicle_id": "car1",
        "seq": 1,
        "sent_at": "2026-01-01T00:00:00Z",
        "body": {"state": "online", "agent_version": "1.0"},
    }
    raw.update(overrides)
    return json.dumps({k: v for k, v in raw.items() if v is not None}).encode()


def test_valid_envelope_is_accepted() -> None:
    assert decode("ds/v1/car1/status", _envelope()).seq == 1


@pytest.mark.parametrize(
    ("topic", "payload", "error", "fragment"),
    [
        ("ds/v1/car1/trip", _envelope(), SchemaMismatch, "belongs on kind 'status'"),
        ("ds/v1/car1/status", _envelope(schema="status.v9"), SchemaMismatch, "unknown schema 'status.v9'"),
        ("ds/v1/car2/status", _envelope(), VehicleMismatch, "differs from topic vehicle 'car2'"),
        ("ds/v1/car1/status", b"not json", MalformedPayload, "not UTF-8 JSON"),
        ("ds/v1/car1/status", b"\xff\xfe", MalformedPayload, "not UTF-8 JSON"),
        ("ds/v1/car1/status", b"[1, 2]", MalformedPayload, "JSON list"),
        ("ds/v1/car1/status", _envelope(seq=-1), InvalidMessage, "seq"),
        ("ds/v1/car1/status", _envelope(sent_at="2026-01-01T00:00:00"), InvalidMessage, "sent_at"),
        ("ds/v1/car1/status", _envelope(extra=1), InvalidMessage, "extra: Extra inputs are not permitted"),
        (
            "ds/v1/car1/status",
            _envelope(body={"state": "online"}),
            InvalidMessage,
            "body.agent_version: Field required",
        ),
        (
            "ds/v1/car1/status",
            _envelope(body={"state": "dancing", "agent_version": "1"}),
            InvalidMessage,
            "body.state",
        ),
        ("ds/v1/car1/status", _envelope(body="abc"), MalformedPayload, "needs an object body"),
        (
            "ds/v1/car1/status",
            _envelope(content_type="application/zlib+json", body="!!"),
            MalformedPayload,
            "does not decode",
        ),
        ("bad/topic", _envelope(), TopicError, "not of the form"),
    ],
)
def test_rejections(topic: str, payload: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        decode(topic, payload)


def test_missing_fields_are_all_named() -> None:
    payload = json.dumps(
        {
            "schema": "trip.v1",
            "vehicle_id": "car1",
            "seq": 3,
            "sent_at": "2026-01-01T00:00:00Z",
            "body": {"trip_id": "T1"},
        }
    ).encode()
    with pytest.raises(InvalidMessage) as info:
        decode("ds/v1/car1/trip", payload)
    for field in ("body.started_at", "body.distance_km", "body.samples"):
        assert f"{field}: Field required" in str(info.value)
    assert info.value.reason is RejectReason.INVALID


def test_oversize_payload_is_rejected_before_parsing() -> None:
    payload = b"{" + b" " * MAX_PAYLOAD_BYTES + b"}"
    with pytest.raises(PayloadTooLarge, match=f"limit is {MAX_PAYLOAD_BYTES}"):
        decode("ds/v1/car1/status", payload)


def test_encode_refuses_oversize() -> None:
    with pytest.raises(PayloadTooLarge):
        encode("car1", 1, _status(), max_bytes=50)


def test_compression_bomb_is_rejected() -> None:
    bomb = base64.b64encode(zlib.compress(b"{" + b" " * (8 * 1024 * 1024) + b"}", 9)).decode()
    payload = _envelope(content_type="application/zlib+json", body=bomb)
    assert len(payload) < MAX_PAYLOAD_BYTES
    with pytest.raises(PayloadTooLarge, match="expands past"):
        decode("ds/v1/car1/status", payload)


def test_telemetry_columns_must_match_timestamps() -> None:
    with pytest.raises(ValueError, match="has 1 values for 2 timestamps"):
        TelemetryV1(t0=datetime.now(UTC), t_ms=[0, 100], signals={"Vehicle.Speed": [1.0]})
    with pytest.raises(ValueError, match=r"(?s)signals\.speed.*should match pattern"):
        TelemetryV1(t0=datetime.now(UTC), t_ms=[0], signals={"speed": [1.0]})
    with pytest.raises(ValueError, match="non-decreasing"):
        TelemetryV1(t0=datetime.now(UTC), t_ms=[100, 0], signals={"Vehicle.Speed": [1.0, 2.0]})


def test_event_end_before_start_is_rejected() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="end is before start"):
        DrivingEvent(
            kind=EventKind.HARSH_BRAKE,
            trip_id="T1",
            start=now,
            end=now - timedelta(seconds=1),
            peak=4.0,
            peak_unit="m/s^2",
        )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1", BrokerAddress("127.0.0.1", 1883)),
        ("mqtts://broker.example:9000", BrokerAddress("broker.example", 9000, tls=True)),
        ("mqtt://u%40x:p%3Aw@h:1884", BrokerAddress("h", 1884, username="u@x", password="p:w")),
        ("ssl://h", BrokerAddress("h", 8883, tls=True)),
    ],
)
def test_broker_address(url: str, expected: BrokerAddress) -> None:
    assert BrokerAddress.parse(url) == expected


@pytest.mark.parametrize(
    ("url", "fragment"),
    [("http://h", "must start with"), ("mqtt://", "no host"), ("mqtt://h:99999", "invalid port")],
)
def test_bad_broker_address(url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        BrokerAddress.parse(url)


@given(st.sets(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=300))
def test_seq_ranges_name_exactly_the_given_seqs_in_disjoint_sorted_runs(seqs: set[int]) -> None:
    ranges = seq_ranges(seqs)
    assert sum(last - first + 1 for first, last in ranges) == len(seqs)
    assert all(first <= last for first, last in ranges)
    # sorted, and never touching: touching runs would have been one
    assert all(a[1] + 1 < b[0] for a, b in itertools.pairwise(ranges))
    assert all(first in seqs and last in seqs for first, last in ranges)
    receipt = decode(downlink_topic("car1", "receipt"), encode("car1", 1, ReceiptV1(seqs=ranges[:1000])))
    assert isinstance(receipt.body, ReceiptV1) and receipt.body.seqs == ranges[:1000]


def test_a_receipt_refuses_backward_ranges_negative_seqs_and_nothing() -> None:
    for bad in ([(5, 4)], [(-1, 3)], [], [(0, 2**63)]):
        with pytest.raises(ValueError):
            ReceiptV1(seqs=bad)


def test_the_seq_a_refused_payload_claims() -> None:
    assert claimed_seq(b'{"schema": "nope", "seq": 42, "body": {}}') == 42
    for payload in (
        b"{not json",
        b"[1, 2]",
        b'{"seq": "42"}',
        b'{"seq": -1}',
        b'{"seq": 4.0}',
        b'{"seq": true}',
        b'{"seq": 9223372036854775808}',
        b'{"seq": 1, "pad": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}',
    ):
        assert claimed_seq(payload) is None, payload
