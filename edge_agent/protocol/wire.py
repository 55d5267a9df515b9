"""Wire contract v1 between the edge agent and the cloud (DESIGN.md section 4).

The contract package is what both sides share: it imports nothing else from ``edge_agent``, and ``cloud``
imports nothing else from the edge. This module defines the topics, the versioned envelope, the message
bodies and the encode/decode functions; ``bounds`` says what input is refused before it is trusted, and
``vss`` holds the signal catalogue with units and plausible ranges.

Topics: uplink ``ds/v1/{vehicle_id}/{kind}``, downlink ``ds/v1/{vehicle_id}/down/{kind}``.

Envelope (JSON object)::

    {"schema": "trip.v1", "vehicle_id": "VIN123", "seq": 42, "sent_at": "2026-01-01T08:00:00Z",
     "content_type": "application/json", "body": {...}}

With ``content_type`` ``application/zlib+json`` the body is a base64 string of the zlib-compressed JSON body
(used for telemetry batches). ``seq`` is strictly increasing per vehicle and persisted by the edge, so the
cloud stores each message exactly once by ``(vehicle_id, seq)`` although delivery is at-least-once.

Errors (each carries a ``reason`` the cloud writes into its dead-letter table)::

    ProtocolError
     ├── TopicError        the topic is not a drivesight v1 topic
     ├── PayloadTooLarge   the payload, or its decompressed body, is over the limit
     ├── MalformedPayload  not UTF-8 JSON, not an object, or a body that does not decompress
     ├── SchemaMismatch    unknown schema, or a schema that does not belong on the topic's kind
     ├── VehicleMismatch   the vehicle id in the topic differs from the envelope's
     └── InvalidMessage    fields missing, of the wrong type or out of range (see ``bounds``)

There is no ``usage`` kind: feature usage travels in each trip summary (``feature_usage``: activations and
seconds on per feature), which is where the edge measures it and what R&D's insights aggregate; a message on a
``usage`` topic is refused as ``bad_topic`` with that explanation.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

import numpy as np
import pydantic_core
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from .bounds import (
    DEFAULT_MAX_CLOCK_SKEW,
    MAX_BATCH_MS,
    MAX_MAGNITUDE,
    Count,
    Label,
    NonNegative,
    ObservedTime,
    Real,
    drop_implausible,
    latest_acceptable,
    validation_context,
)
from .vss import MAX_SIGNAL_NAME, VSS_PATH_RE

PROTOCOL_VERSION = "v1"
TOPIC_ROOT = "ds"
#: AWS IoT Core's limit for one MQTT message; small enough for embedded brokers.
MAX_PAYLOAD_BYTES = 128 * 1024
#: A compressed body may expand to at most this much, so a "zip bomb" cannot exhaust memory.
MAX_DECOMPRESSED_BYTES = 4 * 1024 * 1024
MAX_TELEMETRY_SAMPLES = 20_000
MAX_EVENTS_PER_MESSAGE = 1_000

VEHICLE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

VehicleId = Annotated[str, Field(pattern=VEHICLE_ID_RE.pattern)]
TripId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
SignalName = Annotated[str, Field(max_length=MAX_SIGNAL_NAME, pattern=VSS_PATH_RE.pattern)]
#: the longest a trip (and so an event in it) may last
MAX_TRIP_S = 7 * 24 * 3600


class UplinkKind(StrEnum):
    """What a vehicle sends: the last segment of an uplink topic."""

    TRIP = "trip"
    EVENTS = "events"
    TELEMETRY = "telemetry"
    DTC = "dtc"
    STATUS = "status"
    FEEDBACK = "feedback"


class DownlinkKind(StrEnum):
    """What the cloud sends to a vehicle: the last segment of a downlink topic."""

    PUSH = "push"
    CONFIG = "config"
    MODEL = "model"
    RECEIPT = "receipt"


class ContentType(StrEnum):
    """How the envelope's body is encoded."""

    JSON = "application/json"
    ZLIB_JSON = "application/zlib+json"


class EventKind(StrEnum):
    """Driving events the edge detects."""

    HARSH_BRAKE = "harsh_brake"
    HARSH_ACCEL = "harsh_accel"
    HARSH_CORNER = "harsh_corner"
    SPEEDING = "speeding"
    IDLING = "idling"
    NIGHT_DRIVING = "night_driving"
    HEALTH_ANOMALY = "health_anomaly"  # the vehicle-health model found windows unlike healthy operation


HARSH_KINDS = frozenset({EventKind.HARSH_BRAKE, EventKind.HARSH_ACCEL, EventKind.HARSH_CORNER})


class RejectReason(StrEnum):
    """Why a payload was refused; stored with it in the cloud's dead-letter table."""

    BAD_TOPIC = "bad_topic"
    TOO_LARGE = "too_large"
    MALFORMED = "malformed"
    SCHEMA_MISMATCH = "schema_mismatch"
    VEHICLE_MISMATCH = "vehicle_mismatch"
    INVALID = "invalid"


class ProtocolError(ValueError):
    """A topic or payload that does not follow the wire contract."""

    reason: ClassVar[RejectReason] = RejectReason.INVALID


class TopicError(ProtocolError):
    """The topic is not a drivesight v1 topic."""

    reason = RejectReason.BAD_TOPIC


class PayloadTooLarge(ProtocolError):
    """The payload or its decompressed body is over the size limit."""

    reason = RejectReason.TOO_LARGE


class MalformedPayload(ProtocolError):
    """The payload is not a UTF-8 JSON object, or its body does not decompress."""

    reason = RejectReason.MALFORMED


class SchemaMismatch(ProtocolError):
    """The schema is unknown or does not belong on the topic's kind."""

    reason = RejectReason.SCHEMA_MISMATCH


class VehicleMismatch(ProtocolError):
    """The topic names another vehicle than the envelope."""

    reason = RejectReason.VEHICLE_MISMATCH


class InvalidMessage(ProtocolError):
    """Fields are missing, of the wrong type or out of range."""

    reason = RejectReason.INVALID


# --------------------------------------------------------------------------------------------- topics


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed drivesight topic."""

    vehicle_id: str
    kind: UplinkKind | DownlinkKind

    @property
    def is_downlink(self) -> bool:
        """True for cloud-to-vehicle topics."""
        return isinstance(self.kind, DownlinkKind)

    def __str__(self) -> str:
        if self.is_downlink:
            return downlink_topic(self.vehicle_id, DownlinkKind(self.kind))
        return uplink_topic(self.vehicle_id, UplinkKind(self.kind))


def _check_vehicle_id(vehicle_id: str) -> str:
    if not VEHICLE_ID_RE.match(vehicle_id):
        raise TopicError(
            f"invalid vehicle id {vehicle_id!r}: 1-64 characters of letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    return vehicle_id


def uplink_topic(vehicle_id: str, kind: UplinkKind | str) -> str:
    """The topic a vehicle publishes messages of ``kind`` on."""
    return f"{TOPIC_ROOT}/{PROTOCOL_VERSION}/{_check_vehicle_id(vehicle_id)}/{UplinkKind(kind).value}"


def downlink_topic(vehicle_id: str, kind: DownlinkKind | str) -> str:
    """The topic the cloud publishes messages of ``kind`` to one vehicle on."""
    return f"{TOPIC_ROOT}/{PROTOCOL_VERSION}/{_check_vehicle_id(vehicle_id)}/down/{DownlinkKind(kind).value}"


def downlink_filter(vehicle_id: str) -> str:
    """The subscription filter for every downlink kind of one vehicle."""
    return f"{TOPIC_ROOT}/{PROTOCOL_VERSION}/{_check_vehicle_id(vehicle_id)}/down/+"


def uplink_filter(shared_group: str | None = None) -> str:
    """The subscription filter for every vehicle's uplink, optionally as an MQTT shared subscription."""
    base = f"{TOPIC_ROOT}/{PROTOCOL_VERSION}/+/+"
    return f"$share/{shared_group}/{base}" if shared_group else base


def parse_topic(topic: str) -> Topic:
    """Parse an uplink or downlink topic; raise :class:`TopicError` with the reason if it is not one."""
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != TOPIC_ROOT or parts[1] != PROTOCOL_VERSION:
        raise TopicError(
            f"topic {topic!r} is not of the form {TOPIC_ROOT}/{PROTOCOL_VERSION}/<vehicle>/<kind>"
        )
    vehicle_id = _check_vehicle_id(parts[2])
    if len(parts) == 4:
        if parts[3] == "usage":
            raise TopicError(
                f"kind 'usage' in {topic!r} is not part of contract v1: feature usage travels in trip"
                " summaries (trip.v1 feature_usage)"
            )
        try:
            return Topic(vehicle_id, UplinkKind(parts[3]))
        except ValueError:
            raise TopicError(
                f"unknown uplink kind {parts[3]!r} in {topic!r}; expected one of "
                + ", ".join(k.value for k in UplinkKind)
            ) from None
    if len(parts) == 5 and parts[3] == "down":
        try:
            return Topic(vehicle_id, DownlinkKind(parts[4]))
        except ValueError:
            raise TopicError(f"unknown downlink kind {parts[4]!r} in {topic!r}") from None
    raise TopicError(f"topic {topic!r} has too many levels")


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """Where an MQTT broker listens: ``mqtt://[user[:password]@]host[:port]``, ``mqtts://`` for TLS."""

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse a broker URL; raise ValueError naming what is wrong."""
        parts = urlsplit(url)
        schemes = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}
        if parts.scheme not in schemes:
            raise ValueError(f"broker URL {url!r} must start with mqtt://, mqtts://, tcp:// or ssl://")
        if not parts.hostname:
            raise ValueError(f"broker URL {url!r} has no host")
        tls = schemes[parts.scheme]
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError as exc:
            raise ValueError(f"broker URL {url!r} has an invalid port") from exc
        return cls(
            host=parts.hostname,
            port=port,
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def url(self) -> str:
        """The URL again, without the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


# --------------------------------------------------------------------------------------------- bodies


class Body(BaseModel):
    """Base of every message body; subclasses name their schema and topic kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    SCHEMA: ClassVar[str]
    KIND: ClassVar[UplinkKind | DownlinkKind]


class GeoPoint(BaseModel):
    """A WGS84 position in degrees."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    lat: Real = Field(ge=-90, le=90)
    lon: Real = Field(ge=-180, le=180)


class ConsentState(BaseModel):
    """The owner's choices about what may leave the car (see edge_agent.consent for what each allows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    telemetry: bool = False
    location: bool = False
    profiling: bool = False
    #: without location consent: "coarse" rounds positions to ``location_precision_deg``, "drop" removes them
    location_mode: Literal["coarse", "drop"] = "coarse"
    location_precision_deg: Real = Field(default=0.01, gt=0, le=1)
    updated_at: AwareDatetime | None = None


class StatusV1(Body):
    """The agent's state: sent on connect, and as the MQTT last will when it drops off."""

    SCHEMA = "status.v1"
    KIND = UplinkKind.STATUS
    state: Literal["online", "offline"]
    agent_version: str = Field(max_length=64)
    boot_id: str | None = Field(default=None, max_length=64)
    outbox_depth: Count | None = None
    consent: ConsentState | None = None
    dropped: dict[Label, Count] = Field(default_factory=dict, max_length=64)
    #: active model versions, and the outcome of the last over-the-air update ("name version: result")
    models: dict[Label, Annotated[str, Field(max_length=64)]] = Field(default_factory=dict, max_length=64)
    model_update: str | None = Field(default=None, max_length=500)
    model_p99_us: dict[Label, NonNegative] = Field(default_factory=dict, max_length=64)
    #: set on the MQTT last will: "this boot's session died"; the cloud applies it to that boot_id only,
    #: whatever its seq (the will's seq is taken at connect time, before the session's other statuses)
    last_will: bool = False


class PushAction(StrEnum):
    """What happened to a push message in the car."""

    DELIVERED = "delivered"  # received by the car
    DISPLAYED = "displayed"  # shown on the screen
    OPENED = "opened"
    CLICKED = "clicked"
    DISMISSED = "dismissed"
    EXPIRED = "expired"
    SUPPRESSED = "suppressed"  # marketing push without the owner's profiling consent
    CONVERTED = "converted"  # the driver took the offer in the car (booked, bought, activated)


class PushV1(Body):
    """A message for the in-car display, from a campaign (marketing) or from service (recalls, reminders)."""

    SCHEMA = "push.v1"
    KIND = DownlinkKind.PUSH
    push_id: str = Field(min_length=1, max_length=64)
    campaign_id: str | None = Field(default=None, max_length=64)
    title: str = Field(min_length=1, max_length=120)
    text: str = Field(max_length=1000)
    url: str | None = Field(default=None, max_length=500)
    marketing: bool = True
    expires_at: AwareDatetime | None = None


class FeedbackV1(Body):
    """What the driver did with a push message."""

    SCHEMA = "feedback.v1"
    KIND = UplinkKind.FEEDBACK
    push_id: str = Field(min_length=1, max_length=64)
    campaign_id: str | None = Field(default=None, max_length=64)
    action: PushAction
    at: ObservedTime


MODEL_CHUNK_BYTES = 64 * 1024  # raw bytes per chunk: base64 keeps a chunk well under the payload limit


class ModelChunkV1(Body):
    """One piece of a model sent over the air. Every chunk repeats the manifest, so any may arrive first."""

    SCHEMA = "model.v1"
    KIND = DownlinkKind.MODEL
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,47}$")
    version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1, le=64 * 1024 * 1024)
    chunk: int = Field(ge=0)
    chunks: int = Field(ge=1, le=1024)
    data: str = Field(max_length=4 * MODEL_CHUNK_BYTES // 3 + 8)
    manifest: str = Field(max_length=32 * 1024)
    #: base64 Ed25519 signature over ``sha256 + "\n" + manifest``, required when the car has a public key
    signature: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _chunk_in_range(self) -> ModelChunkV1:
        if self.chunk >= self.chunks:
            raise ValueError(f"chunk {self.chunk} of {self.chunks}")
        return self


class ConfigV1(Body):
    """Settings changed from the cloud while the agent runs; a field left out keeps its current value."""

    SCHEMA = "config.v1"
    KIND = DownlinkKind.CONFIG
    vehicle_class: Literal["car", "suv", "van", "truck"] | None = None
    speed_limit_kmh: float | None = Field(default=None, gt=0, le=400)
    idle_min_s: float | None = Field(default=None, gt=0)
    telemetry_period_s: float | None = Field(default=None, gt=0, le=3600)
    telemetry_batch_s: float | None = Field(default=None, gt=0, le=3600)
    consent: ConsentState | None = None


#: a message's number in its car's outbox (the envelope's ``seq``)
SeqNumber = Annotated[int, Strict(), Field(ge=0, lt=2**63)]
#: ``seq`` ranges one receipt may carry (an ingest batch holds at most a few hundred of one car's messages)
MAX_RECEIPT_RANGES = 1_000


class ReceiptV1(Body):
    """The cloud has stored these of the car's messages (or their dead letters, or dropped them as the
    messages of an erased owner): the car may forget them. ``seqs`` are inclusive ``[first, last]`` ranges.

    A broker's PUBACK only says that the broker holds a message; one that restarts without its state, or
    overflows an offline subscriber's queue, acknowledges and then loses it. The receipt closes the loop end
    to end: the car keeps every message until its receipt, and publishes it again when none comes.
    """

    SCHEMA = "receipt.v1"
    KIND = DownlinkKind.RECEIPT
    seqs: list[tuple[SeqNumber, SeqNumber]] = Field(min_length=1, max_length=MAX_RECEIPT_RANGES)

    @model_validator(mode="after")
    def _ordered_ranges(self) -> ReceiptV1:
        for first, last in self.seqs:
            if first > last:
                raise ValueError(f"range [{first}, {last}] ends before it starts")
        return self


def seq_ranges(seqs: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted, de-duplicated ``seqs`` as inclusive ``(first, last)`` runs of consecutive numbers."""
    ranges: list[tuple[int, int]] = []
    for s in sorted(set(seqs)):
        if ranges and s == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], s)
        else:
            ranges.append((s, s))
    return ranges


class DrivingEvent(BaseModel):
    """One detected driving event; ``peak`` is the signal's most extreme value during it, in ``peak_unit``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: EventKind
    trip_id: TripId
    start: ObservedTime
    end: ObservedTime
    peak: Real = Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)
    peak_unit: str = Field(max_length=16)
    location: GeoPoint | None = None

    @model_validator(mode="after")
    def _end_not_before_start(self) -> DrivingEvent:
        if self.end < self.start:
            raise ValueError("end is before start")
        if (self.end - self.start).total_seconds() > MAX_TRIP_S:
            raise ValueError(f"an event lasts at most {MAX_TRIP_S} s")
        return self

    @property
    def duration_s(self) -> float:
        """The event's length in seconds."""
        return (self.end - self.start).total_seconds()


class EventsV1(Body):
    """A batch of driving events of one vehicle."""

    SCHEMA = "events.v1"
    KIND = UplinkKind.EVENTS
    events: list[DrivingEvent] = Field(min_length=1, max_length=MAX_EVENTS_PER_MESSAGE)


DtcCode = Annotated[str, Field(pattern=r"^[PCBU][0-3][0-9A-F]{3}$")]


class FeatureUsage(BaseModel):
    """How a feature was used in a trip: times switched on, and seconds on."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    activations: Count
    active_s: Real = Field(ge=0, le=MAX_TRIP_S)


class DtcRecord(BaseModel):
    """A diagnostic trouble code (SAE J2012 form, e.g. P0420) and when the car first reported it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    code: DtcCode
    first_seen: ObservedTime
    trip_id: TripId | None = None


class DtcV1(Body):
    """Newly seen fault codes; sent as soon as they appear."""

    SCHEMA = "dtc.v1"
    KIND = UplinkKind.DTC
    codes: list[DtcRecord] = Field(min_length=1, max_length=256)


class TripSummaryV1(Body):
    """What one trip amounted to; sent once when the trip ends."""

    SCHEMA = "trip.v1"
    KIND = UplinkKind.TRIP
    trip_id: TripId
    started_at: ObservedTime
    ended_at: ObservedTime
    # bounds: a week-long trip across a continent at the fastest road car's speed; levels in percent
    distance_km: Real = Field(ge=0, le=20_000)
    duration_s: Real = Field(ge=0, le=MAX_TRIP_S)
    moving_s: Real = Field(ge=0, le=MAX_TRIP_S)
    idle_s: Real = Field(ge=0, le=MAX_TRIP_S)
    max_speed_kmh: Real = Field(ge=0, le=400)
    avg_speed_kmh: Real = Field(ge=0, le=400)
    night_share: Real = Field(ge=0, le=1)
    event_counts: dict[EventKind, Count] = Field(default_factory=dict)
    start_location: GeoPoint | None = None
    end_location: GeoPoint | None = None
    odometer_km: Real | None = Field(default=None, ge=0, le=5_000_000)
    fuel_used_pct: Real | None = Field(default=None, ge=-100, le=100)
    soc_used_pct: Real | None = Field(default=None, ge=-100, le=100)
    fuel_used_l: Real | None = Field(default=None, ge=-2_000, le=2_000)
    energy_used_kwh: Real | None = Field(default=None, ge=-2_000, le=2_000)
    samples: Count
    safety_score: Real | None = Field(default=None, ge=0, le=100)
    eco_score: Real | None = Field(default=None, ge=0, le=100)
    feature_usage: dict[SignalName, FeatureUsage] = Field(default_factory=dict, max_length=256)
    dtcs: list[DtcCode] = Field(default_factory=list, max_length=256)
    #: the driving-style model's verdict on this trip, and the versions of the models that ran
    driving_style: str | None = Field(default=None, max_length=64)
    driving_style_probabilities: dict[Label, Annotated[Real, Field(ge=0, le=1)]] = Field(
        default_factory=dict, max_length=32
    )
    model_versions: dict[Label, Annotated[str, Field(max_length=64)]] = Field(
        default_factory=dict, max_length=32
    )

    @model_validator(mode="after")
    def _consistent(self) -> TripSummaryV1:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        if (self.ended_at - self.started_at).total_seconds() > MAX_TRIP_S:
            raise ValueError(f"a trip lasts at most {MAX_TRIP_S} s")
        if any(n < 0 for n in self.event_counts.values()):
            raise ValueError("event counts must not be negative")
        return self


class TelemetryV1(Body):
    """A columnar batch of VSS signal samples: ``t_ms`` are offsets from ``t0``; None marks no sample."""

    SCHEMA = "telemetry.v1"
    KIND = UplinkKind.TELEMETRY
    t0: ObservedTime
    t_ms: list[Annotated[int, Strict(), Field(ge=0, le=MAX_BATCH_MS)]] = Field(
        min_length=1, max_length=MAX_TELEMETRY_SAMPLES
    )
    signals: dict[SignalName, list[Real | None]] = Field(min_length=1, max_length=64)

    @field_validator("t_ms")
    @classmethod
    def _monotonic(cls, t_ms: list[int]) -> list[int]:
        if t_ms[0] < 0 or t_ms != sorted(t_ms):  # sorted() is C and linear on sorted input
            raise ValueError("t_ms must be non-negative and non-decreasing")
        return t_ms

    @model_validator(mode="after")
    def _columns(self, info: ValidationInfo) -> TelemetryV1:
        not_after = latest_acceptable(info)
        if not_after is not None and self.t0 + timedelta(milliseconds=self.t_ms[-1]) > not_after:
            raise ValueError(
                "the last sample is after the receiver's clock plus the allowed skew"
                f" ({not_after:%Y-%m-%dT%H:%M}Z)"
            )
        n = len(self.t_ms)
        for name, values in self.signals.items():
            if len(values) != n:
                raise ValueError(f"signal {name!r} has {len(values)} values for {n} timestamps")
        return self


SCHEMAS: dict[str, type[Body]] = {
    cls.SCHEMA: cls
    for cls in (
        StatusV1,
        EventsV1,
        TripSummaryV1,
        TelemetryV1,
        DtcV1,
        FeedbackV1,
        PushV1,
        ConfigV1,
        ModelChunkV1,
        ReceiptV1,
    )
}


# ------------------------------------------------------------------------------------------- envelope


class Envelope(BaseModel):
    """The versioned wrapper around every body; ``body`` is still raw here."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    schema_name: str = Field(alias="schema", max_length=32, pattern=r"^[a-z_]+\.v[0-9]+$")
    vehicle_id: VehicleId
    seq: SeqNumber
    sent_at: ObservedTime
    content_type: ContentType = ContentType.JSON
    body: dict[str, Any] | str


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded, validated message."""

    topic: Topic
    vehicle_id: str
    seq: int
    sent_at: datetime
    schema: str
    body: Body
    #: implausible telemetry samples dropped from the body, per signal (see ``bounds``)
    dropped: dict[str, int] = field(default_factory=dict)
    #: the bytes it was decoded from (kept for the ledger's digest and for dead letters)
    payload: bytes = b""
    #: a telemetry body's signals as float arrays (NaN: no sample), as the plausibility check made them
    arrays: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)


def encode(
    vehicle_id: str,
    seq: int,
    body: Body,
    *,
    sent_at: datetime | None = None,
    compress: bool = False,
    max_bytes: int = MAX_PAYLOAD_BYTES,
) -> bytes:
    """Serialize ``body`` in an envelope; raise :class:`PayloadTooLarge` if it exceeds ``max_bytes``."""
    _check_vehicle_id(vehicle_id)
    if seq < 0:
        raise InvalidMessage(f"seq must be >= 0, got {seq}")
    sent = sent_at or datetime.now(UTC)
    if sent.tzinfo is None:
        raise InvalidMessage("sent_at must be timezone-aware")
    body_json = body.model_dump_json().encode()
    body_value: Any
    if compress:
        # level 1: on a one-minute telemetry batch within 6% of level 6's size at a sixth of its CPU
        body_value = base64.b64encode(zlib.compress(body_json, 1)).decode("ascii")
        content_type = ContentType.ZLIB_JSON
    else:
        body_value = pydantic_core.from_json(body_json)
        content_type = ContentType.JSON
    payload = pydantic_core.to_json(
        {
            "schema": body.SCHEMA,
            "vehicle_id": vehicle_id,
            "seq": seq,
            "sent_at": sent,
            "content_type": content_type.value,
            "body": body_value,
        }
    )
    if len(payload) > max_bytes:
        raise PayloadTooLarge(f"{body.SCHEMA} payload is {len(payload)} bytes, limit is {max_bytes}")
    return payload


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """pydantic's errors as one line: ``body.trip_id: Field required; ...`` (the first ten)."""
    parts = []
    for err in exc.errors(include_url=False)[:10]:
        loc = ".".join(str(p) for p in (prefix, *err["loc"]) if p != "")
        parts.append(f"{loc}: {err['msg']}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _decompress(data: str) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
        inflater = zlib.decompressobj()
        out = inflater.decompress(raw, MAX_DECOMPRESSED_BYTES)
    except (binascii.Error, zlib.error) as exc:
        raise MalformedPayload(f"compressed body does not decode: {exc}") from exc
    if inflater.unconsumed_tail:
        raise PayloadTooLarge(f"compressed body expands past {MAX_DECOMPRESSED_BYTES} bytes")
    if not inflater.eof:
        raise MalformedPayload("compressed body is truncated")
    return out


#: JSON's only way to carry a NUL character; PostgreSQL text and jsonb cannot store one
_ESCAPED_NUL = b"\\u0000"


def _parse_json(data: bytes, what: str) -> Any:
    """Parse JSON with pydantic-core's parser (bounded nesting, no NaN/Infinity, no unbounded integers)."""
    if _ESCAPED_NUL in data:
        raise MalformedPayload(f"{what} contains a NUL character (\\u0000), which cannot be stored")
    try:
        return pydantic_core.from_json(data, allow_inf_nan=False)
    except ValueError as exc:
        raise MalformedPayload(f"{what} is not UTF-8 JSON within the parser's limits: {exc}") from exc


def claimed_seq(payload: bytes) -> int | None:
    """The ``seq`` a refused payload's envelope claims, if it is a JSON object with a usable one, else None.

    For receipts only: a message the contract refused is kept as a dead letter, and its car may forget it.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        return None
    try:
        raw = pydantic_core.from_json(payload, allow_inf_nan=False)
    except ValueError:
        return None
    seq = raw.get("seq") if isinstance(raw, dict) else None
    return seq if type(seq) is int and 0 <= seq < 2**63 else None


def decode(
    topic: str,
    payload: bytes,
    *,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    now: datetime | None = None,
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
) -> Message:
    """Validate ``payload`` received on ``topic`` against the contract, or raise a :class:`ProtocolError`.

    A receiver passes its clock as ``now`` (the cloud's ingest does): times the car observed must then lie
    between ``bounds.TIME_FLOOR`` and ``now + max_clock_skew``. Without ``now`` times are not bounded (the
    edge reading back its own messages, whose clock may not be set yet). Implausible telemetry samples are
    dropped from the body and counted in ``Message.dropped``.
    """
    parsed = parse_topic(topic)
    if len(payload) > max_bytes:
        raise PayloadTooLarge(f"payload is {len(payload)} bytes, limit is {max_bytes}")
    raw = _parse_json(payload, "payload")
    if not isinstance(raw, dict):
        raise MalformedPayload(f"payload is a JSON {type(raw).__name__}, expected an object")
    context = validation_context(now, max_clock_skew) if now is not None else None
    try:
        envelope = Envelope.model_validate(raw, context=context)
    except ValidationError as exc:
        raise InvalidMessage(format_validation_error(exc)) from exc
    body_cls = SCHEMAS.get(envelope.schema_name)
    if body_cls is None:
        raise SchemaMismatch(f"unknown schema {envelope.schema_name!r}; known: {', '.join(sorted(SCHEMAS))}")
    if parsed.kind != body_cls.KIND:
        raise SchemaMismatch(
            f"schema {envelope.schema_name!r} belongs on kind {body_cls.KIND.value!r}, "
            f"not on topic kind {parsed.kind.value!r}"
        )
    if envelope.vehicle_id != parsed.vehicle_id:
        raise VehicleMismatch(
            f"envelope vehicle_id {envelope.vehicle_id!r} differs from topic vehicle {parsed.vehicle_id!r}"
        )
    try:
        if envelope.content_type is ContentType.ZLIB_JSON:
            if not isinstance(envelope.body, str):
                raise MalformedPayload("content_type application/zlib+json needs a base64 string body")
            raw_body = _decompress(envelope.body)
            if _ESCAPED_NUL in raw_body:
                raise MalformedPayload(
                    "compressed body contains a NUL character (\\u0000), which cannot be stored"
                )
            # validated straight from JSON (the same parser and limits, no intermediate Python objects): the
            # hot path of telemetry batches
            body = body_cls.model_validate_json(raw_body, context=context)
        elif isinstance(envelope.body, dict):
            body = body_cls.model_validate(envelope.body, context=context)
        else:
            raise MalformedPayload("content_type application/json needs an object body")
    except ValidationError as exc:
        if any(e["type"] == "json_invalid" for e in exc.errors(include_url=False)):
            raise MalformedPayload(
                f"compressed body is not JSON within the parser's limits: {exc.errors()[0]['msg']}"
            ) from exc
        raise InvalidMessage(format_validation_error(exc, "body")) from exc
    dropped: dict[str, int] = {}
    arrays: dict[str, np.ndarray] | None = field(default=None, compare=False, repr=False)
    if isinstance(body, TelemetryV1):
        signals, dropped, arrays = drop_implausible(body.signals)
        if dropped:
            body = body.model_copy(update={"signals": signals})
    return Message(
        topic=parsed,
        vehicle_id=envelope.vehicle_id,
        seq=envelope.seq,
        sent_at=envelope.sent_at,
        schema=envelope.schema_name,
        body=body,
        dropped=dropped,
        payload=payload,
        arrays=arrays,
    )
