"""The edge agent's pipeline: signal blocks -> trips, events, telemetry -> outbox.

The agent does no I/O of its own besides the outbox it is given; publishing is the uplink's job, so the
same agent runs offline (replay), in the simulator fleet and in the car.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from . import signals as vss
from .calibration import ThresholdCalibrator
from .consent import ConsentGate
from .detectors import (
    DEFAULT_THRESHOLDS,
    DetectedEvent,
    EventDetectors,
    Threshold,
    VehicleClass,
    thresholds_for,
)
from .features import health_features, style_features
from .inference import ModelError
from .model_store import ModelStore
from .outbox import MessageTooLarge, Outbox, OutboxFull
from .profiles import SensorProfile
from .protocol import (
    MAX_EVENTS_PER_MESSAGE,
    Body,
    ConfigV1,
    ConsentState,
    DrivingEvent,
    DtcRecord,
    DtcV1,
    EventKind,
    EventsV1,
    GeoPoint,
    TelemetryV1,
    TripSummaryV1,
)
from .signals import SignalBlock
from .trips import TripAccumulator, TripSettings, split_at_gaps

log = logging.getLogger(__name__)

STYLE_MODEL = "driving_style"
HEALTH_MODEL = "vehicle_health"


@dataclass(frozen=True, slots=True)
class TelemetrySettings:
    """Downsampled raw signals sent to the cloud: one sample per ``period_s``, batched per ``batch_s``."""

    period_s: float = 1.0
    batch_s: float = 60.0
    signals: tuple[str, ...] = (
        vss.SPEED,
        vss.ACCEL_LONGITUDINAL,
        vss.ACCEL_LATERAL,
        vss.ENGINE_SPEED,
        vss.MOTOR_POWER,
        vss.FUEL_LEVEL,
        vss.STATE_OF_CHARGE,
        vss.ODOMETER,
        vss.LATITUDE,
        vss.LONGITUDE,
    )


def _with_none(values: np.ndarray) -> list[float | None]:
    """Floats for JSON, NaN (no sample) as None, converted in C rather than value by value."""
    missing = np.isnan(values)
    if not missing.any():
        return values.tolist()  # type: ignore[no-any-return]
    boxed = values.astype(object)
    boxed[missing] = None
    return boxed.tolist()  # type: ignore[no-any-return]


@dataclass(slots=True)
class _TelemetryBuffer:
    """One sample per ``period_s``, cut into batches of exactly ``batch_s``; numpy until drained."""

    settings: TelemetrySettings
    next_t: float = -np.inf
    start: float | None = None  # time of the open batch's first sample
    times: list[np.ndarray] = field(default_factory=list)
    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)
    size: int = 0

    def add(self, block: SignalBlock) -> list[TelemetryV1]:
        """Keep the first sample of each ``period_s`` bucket; return the batches this block completed."""
        period = self.settings.period_s
        buckets = np.floor(block.t / period)
        previous = np.empty_like(buckets)
        previous[0] = np.floor(self.next_t / period) - 1
        previous[1:] = buckets[:-1]
        keep = np.flatnonzero((buckets > previous) & (block.t >= self.next_t))
        if keep.size == 0:
            return []
        self.next_t = float((buckets[keep[-1]] + 1) * period)
        t = block.t[keep]
        cols = {
            name: column[keep] for name in self.settings.signals if (column := block.get(name)) is not None
        }
        done: list[TelemetryV1] = []
        while t.size:
            if self.start is None:
                self.start = float(t[0])
            cut = int(np.searchsorted(t, self.start + self.settings.batch_s, side="left"))
            if cut:
                self._append(t[:cut], {k: v[:cut] for k, v in cols.items()})
            if cut == t.size:
                break
            body = self.drain()
            if body is not None:
                done.append(body)
            t, cols = t[cut:], {k: v[cut:] for k, v in cols.items()}
        return done

    def _append(self, t: np.ndarray, cols: dict[str, np.ndarray]) -> None:
        for name in cols.keys() - self.columns.keys():
            self.columns[name] = [np.full(self.size, np.nan)]  # a signal that appears mid-batch
        for name, chunks in self.columns.items():
            chunks.append(cols.get(name, np.full(t.size, np.nan)))
        self.times.append(t)
        self.size += t.size

    def drain(self) -> TelemetryV1 | None:
        """The open batch as a message (None when empty); the next sample starts a new batch."""
        body = None
        if self.size and self.columns:
            t = np.concatenate(self.times)
            t0 = float(t[0])
            body = TelemetryV1(
                t0=datetime.fromtimestamp(t0, UTC),
                t_ms=np.round((t - t0) * 1000).astype(np.int64).tolist(),
                signals={name: _with_none(np.concatenate(chunks)) for name, chunks in self.columns.items()},
            )
        self.start, self.times, self.columns, self.size = None, [], {}, 0
        return body


def _split(body: Body) -> tuple[Body, Body] | None:
    """Two messages that together say what ``body`` says, for one over the message limit (None: cannot)."""
    if isinstance(body, EventsV1) and len(body.events) > 1:
        half = len(body.events) // 2
        return EventsV1(events=body.events[:half]), EventsV1(events=body.events[half:])
    if isinstance(body, DtcV1) and len(body.codes) > 1:
        half = len(body.codes) // 2
        return DtcV1(codes=body.codes[:half]), DtcV1(codes=body.codes[half:])
    if isinstance(body, TelemetryV1) and len(body.t_ms) > 1:
        half = len(body.t_ms) // 2
        second_t0 = body.t0 + timedelta(milliseconds=body.t_ms[half])
        first = TelemetryV1(
            t0=body.t0, t_ms=body.t_ms[:half], signals={k: v[:half] for k, v in body.signals.items()}
        )
        second = TelemetryV1(
            t0=second_t0,
            t_ms=[ms - body.t_ms[half] for ms in body.t_ms[half:]],
            signals={k: v[half:] for k, v in body.signals.items()},
        )
        return first, second
    return None


class EdgeAgent:
    """Turns one vehicle's signal blocks into trip summaries, event batches and telemetry in its outbox."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        trip_settings: TripSettings | None = None,
        thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS,
        telemetry: TelemetrySettings | None = None,
        consent: ConsentState | None = None,
        on_trip: Callable[[TripAccumulator], None] | None = None,
        on_block: Callable[[SignalBlock], None] | None = None,
        models: ModelStore | None = None,
        calibrator: ThresholdCalibrator | None = None,
    ) -> None:
        self.outbox = outbox
        self.trip_settings = trip_settings or TripSettings()
        self.thresholds = thresholds
        self.telemetry_settings = telemetry
        #: None: nothing is filtered (offline analysis, where nothing leaves the car)
        self.gate = ConsentGate(consent) if consent is not None else None
        self.on_trip = on_trip  # sees each closed trip (model features, training data)
        self.on_block = on_block  # sees each block of a trip (window models)
        self.models = models
        #: per-vehicle self-calibration of the harsh thresholds, carried across trips (None: off)
        self.calibrator = calibrator
        self._anomaly: list[float] | None = None  # open health episode: [start, end, lowest score]
        self._trip: TripAccumulator | None = None
        self._detectors = EventDetectors(thresholds)  # replaced at each trip start, with its UTC offset
        self._telemetry = _TelemetryBuffer(telemetry) if telemetry else None
        self._last_location: GeoPoint | None = None
        self._reported_dtcs: set[str] = set()
        # the rule set's parameters, so that a config change can rebuild it
        self.vehicle_class = VehicleClass.CAR
        #: None: the telematics defaults (the simulated fleet); the car's runner sets its configured profile
        self.sensor_profile: SensorProfile | None = None
        self.speed_limit_kmh: float | None = next(
            (t.value for t in thresholds if t.kind is EventKind.SPEEDING), None
        )
        self.idle_min_s = next((t.min_duration_s for t in thresholds if t.kind is EventKind.IDLING), 300.0)
        self.trips_sent = 0
        self.events_sent = 0

    def run(self, source: Iterable[SignalBlock]) -> None:
        """Process every block of ``source``, then close the open trip."""
        for block in source:
            self.process(block)
        self.close_trip()

    def process(self, block: SignalBlock) -> None:
        """Consume one block: cut trips at gaps, detect events, buffer telemetry."""
        last_t = self._trip.last_t if self._trip else None
        for new_trip, piece in split_at_gaps(block, last_t, self.trip_settings.trip_gap_s):
            if new_trip or self._trip is None:
                self.close_trip()
                self._trip = TripAccumulator.begin(self.trip_settings, float(piece.t[0]))
                self._detectors = self._new_detectors()
            self._trip.add(piece)
            if self.calibrator is not None:
                self.calibrator.add_driving(piece)
            if self.on_block is not None:
                self.on_block(piece)
            if self.models is not None:
                self._check_health(piece)
            if piece.dtcs:
                self._emit_dtcs(piece)
            self._emit_events(self._detectors.update(piece), piece)
            if self._telemetry is not None:
                for batch in self._telemetry.add(piece):
                    self._send(batch, compress=True)

    def _new_detectors(self) -> EventDetectors:
        """The detectors of the trip in progress: the rules, scaled by the vehicle's self-calibration."""
        assert self._trip is not None
        if self.calibrator is None:
            return EventDetectors(self.thresholds, utc_offset_s=self._trip.utc_offset_s)
        return EventDetectors(
            self.calibrator.apply(self.thresholds),
            utc_offset_s=self._trip.utc_offset_s,
            observe=self.calibrator.observe,
        )

    def apply_config(self, config: ConfigV1) -> None:
        """Change thresholds, telemetry sampling or consent while running.

        New thresholds apply from now on: runs open under the old ones are closed first, so no event is
        judged by two rule sets. New consent also re-gates the messages still waiting in the outbox.
        """
        rules_changed = any(
            v is not None for v in (config.vehicle_class, config.speed_limit_kmh, config.idle_min_s)
        )
        if rules_changed:
            self.vehicle_class = VehicleClass(config.vehicle_class or self.vehicle_class)
            if config.speed_limit_kmh is not None:
                self.speed_limit_kmh = config.speed_limit_kmh
            if config.idle_min_s is not None:
                self.idle_min_s = config.idle_min_s
            self.thresholds = thresholds_for(
                self.vehicle_class,
                speed_limit_kmh=self.speed_limit_kmh,
                idle_min_s=self.idle_min_s,
                profile=self.sensor_profile,
            )
            if self._trip is not None:
                self._emit_events(self._detectors.flush(), None)
                self._detectors = self._new_detectors()
        if config.telemetry_period_s is not None or config.telemetry_batch_s is not None:
            if self._telemetry is not None:
                self._send_telemetry()
            current = self.telemetry_settings or TelemetrySettings()
            self.telemetry_settings = TelemetrySettings(
                period_s=config.telemetry_period_s or current.period_s,
                batch_s=config.telemetry_batch_s or current.batch_s,
                signals=current.signals,
            )
            self._telemetry = _TelemetryBuffer(self.telemetry_settings)
        if config.consent is not None:
            self.set_consent(config.consent)

    def status_fields(self) -> dict[str, object]:
        """What the agent adds to each status message: consent, active models and their latency."""
        fields: dict[str, object] = {}
        if self.gate is not None:
            fields["consent"] = self.gate.consent
        if self.models is not None:
            fields["models"] = self.models.versions()
            fields["model_update"] = str(self.models.last_update) if self.models.last_update else None
            fields["model_p99_us"] = {
                name: round(stats["p99_us"], 1)
                for name in fields["models"]  # type: ignore[attr-defined]
                if (runner := self.models.get(name)) is not None and (stats := runner.latency_stats())
            }
        return fields

    def set_consent(self, consent: ConsentState) -> None:
        """Apply the owner's new choices to what is sent from now on and to what still waits to be sent."""
        if self.gate is None:
            self.gate = ConsentGate(consent)
        else:
            self.gate.update(consent)
        rewritten, deleted = self.outbox.regate(self.gate.apply)
        log.info("consent now %s: %d waiting messages rewritten, %d withdrawn", consent, rewritten, deleted)

    def close_trip(self) -> None:
        """End the trip in progress (source ended, car parked): flush events, send the summary."""
        trip = self._trip
        if trip is None:
            return
        self._emit_events(self._detectors.flush(), None)
        if self._telemetry is not None:
            self._send_telemetry()
        self._close_anomaly()
        if self.on_trip is not None:
            self.on_trip(trip)
        if trip.duration_s >= self.trip_settings.min_trip_s or trip.event_counts:
            self._send(self._with_models(trip, trip.summary()))
            self.trips_sent += 1
        else:
            log.debug("dropping %.1f s trip %s: shorter than min_trip_s", trip.duration_s, trip.trip_id)
        self._trip = None

    def _location_at(self, piece: SignalBlock | None, t: float) -> GeoPoint | None:
        if piece is not None:
            lat, lon = piece.get(vss.LATITUDE), piece.get(vss.LONGITUDE)
            if lat is not None and lon is not None:
                i = min(int(np.searchsorted(piece.t, t)), len(piece) - 1)
                if not (np.isnan(lat[i]) or np.isnan(lon[i])):
                    self._last_location = GeoPoint(lat=float(lat[i]), lon=float(lon[i]))
        return self._last_location

    def _emit_events(self, events: list[DetectedEvent], piece: SignalBlock | None) -> None:
        if not events:
            return
        assert self._trip is not None
        trip = self._trip
        wire = []
        for e in events:
            trip.count(e.kind, e.duration_s)
            wire.append(
                DrivingEvent(
                    kind=e.kind,
                    trip_id=trip.trip_id,
                    start=datetime.fromtimestamp(e.start, UTC),
                    end=datetime.fromtimestamp(e.end, UTC),
                    peak=round(e.peak, 3),
                    peak_unit=e.unit,
                    location=self._location_at(piece, e.end),
                )
            )
        for i in range(0, len(wire), MAX_EVENTS_PER_MESSAGE):
            self._send(EventsV1(events=wire[i : i + MAX_EVENTS_PER_MESSAGE]))
        self.events_sent += len(wire)

    def _with_models(self, trip: TripAccumulator, summary: TripSummaryV1) -> TripSummaryV1:
        """Attach the driving-style verdict (when the model is there and the trip long enough)."""
        runner = self.models.get(STYLE_MODEL) if self.models is not None else None
        if runner is None or trip.duration_s < 60:
            return summary
        try:
            out = runner.run(style_features(trip))
        except ModelError as exc:
            log.warning("driving style not computed: %s", exc)
            return summary
        classes = runner.manifest.classes or []
        probabilities = out["probabilities"][0].tolist()
        return summary.model_copy(
            update={
                "driving_style": str(out["label"][0]),
                "driving_style_probabilities": {
                    c: round(p, 4) for c, p in zip(classes, probabilities, strict=True)
                },
                "model_versions": {STYLE_MODEL: runner.manifest.version},
            }
        )

    def _check_health(self, piece: SignalBlock) -> None:
        """Score the window with the health model; consecutive anomalous windows make one episode (event)."""
        assert self.models is not None
        x = health_features(piece)
        runner = self.models.get(HEALTH_MODEL) if x is not None else None
        if runner is None or x is None or runner.manifest.threshold is None:
            return
        try:
            score = float(runner.run(x)["score_samples"].ravel()[0])
        except ModelError as exc:
            log.warning("vehicle health not scored: %s", exc)
            return
        start, end = float(piece.t[0]), float(piece.t[-1])
        if score < runner.manifest.threshold:
            if self._anomaly is None:
                self._anomaly = [start, end, score]
            else:
                self._anomaly[1], self._anomaly[2] = end, min(self._anomaly[2], score)
        else:
            self._close_anomaly()

    def _close_anomaly(self) -> None:
        episode, self._anomaly = self._anomaly, None
        if episode is not None:
            start, end, lowest = episode
            event = DetectedEvent(EventKind.HEALTH_ANOMALY, start, end, round(lowest, 3), "log-likelihood")
            self._emit_events([event], None)

    def _emit_dtcs(self, piece: SignalBlock) -> None:
        """Send codes this agent has not reported yet, at once: a fault should not wait for the trip end."""
        assert self._trip is not None
        records = []
        for t, code in piece.dtcs:
            if code in self._reported_dtcs:
                continue
            self._reported_dtcs.add(code)
            records.append(
                DtcRecord(code=code, first_seen=datetime.fromtimestamp(t, UTC), trip_id=self._trip.trip_id)
            )
        if records:
            self._send(DtcV1(codes=records))

    def _send_telemetry(self) -> None:
        assert self._telemetry is not None
        body = self._telemetry.drain()
        if body is not None:
            self._send(body, compress=True)

    def send(self, body: Body, *, compress: bool = False) -> None:
        """Queue a message for the cloud, as consent allows (thread-safe)."""
        self._send(body, compress=compress)

    def _send(self, body: Body, *, compress: bool = False) -> None:
        if self.gate is not None:
            gated = self.gate.apply(body)
            if gated is None:
                return
            body = gated
        try:
            self.outbox.enqueue(body, compress=compress)
        except OutboxFull as exc:
            log.warning("%s", exc)  # counted in the outbox's drop statistics
        except MessageTooLarge as exc:
            # halve until each part fits: every sample and event is sent once, in order
            halves = _split(body)
            if halves is None:
                log.error("%s; it cannot be split, so it is dropped (counted), not sent", exc)
                self.outbox.record_drop(exc.kind, exc.size)
                return
            for half in halves:
                self._send(half, compress=compress)
