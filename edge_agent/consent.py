"""The consent gate: what may leave the car, decided per message before it enters the outbox.

- without ``telemetry``: raw signal batches (telemetry.v1) stay in the car;
- without ``location``: positions are rounded to ``location_precision_deg`` (default 0.01 deg, about 1.1 km
  north-south) or, with ``location_mode = "drop"``, removed: in telemetry, trip start/end and event locations;
- without ``profiling``: feature-usage counters and the driving-style verdict (the raw material of marketing
  portraits) are removed from trip summaries, and marketing pushes are not shown (answered "suppressed").

Always sent: trip summaries (distance, duration, scores, event counts), driving events, fault codes and status
— what the car's operation, warranty and safety recalls need. The current consent travels in every status
message, so the cloud can gate its own use of stored data. Withdrawing a scope also purges messages of that
scope still waiting in the outbox.
"""

from __future__ import annotations

from .protocol import Body, ConsentState, EventsV1, GeoPoint, PushV1, TelemetryV1, TripSummaryV1
from .signals import LATITUDE, LONGITUDE

LOCATION_SIGNALS = (LATITUDE, LONGITUDE)


class ConsentGate:
    """Applies the owner's current consent to outgoing messages."""

    def __init__(self, consent: ConsentState | None = None) -> None:
        self.consent = consent or ConsentState()

    def update(self, consent: ConsentState) -> ConsentState:
        """Switch to new choices; return the previous ones."""
        previous, self.consent = self.consent, consent
        return previous

    def _point(self, point: GeoPoint | None) -> GeoPoint | None:
        c = self.consent
        if point is None or c.location:
            return point
        if c.location_mode == "drop":
            return None
        p = c.location_precision_deg
        return GeoPoint(lat=round(round(point.lat / p) * p, 6), lon=round(round(point.lon / p) * p, 6))

    def _coarse_values(self, values: list[float | None]) -> list[float | None]:
        p = self.consent.location_precision_deg
        return [None if v is None else round(round(v / p) * p, 6) for v in values]

    def apply(self, body: Body) -> Body | None:
        """The message as consent allows it to leave the car, or None when it may not leave at all."""
        c = self.consent
        if isinstance(body, TelemetryV1):
            if not c.telemetry:
                return None
            if c.location:
                return body
            columns = dict(body.signals)
            for name in LOCATION_SIGNALS:
                if name in columns:
                    if c.location_mode == "drop":
                        del columns[name]
                    else:
                        columns[name] = self._coarse_values(columns[name])
            return body.model_copy(update={"signals": columns}) if columns else None
        if isinstance(body, TripSummaryV1):
            update: dict[str, object] = {
                "start_location": self._point(body.start_location),
                "end_location": self._point(body.end_location),
            }
            if not c.profiling:
                update["feature_usage"] = {}
                update["driving_style"] = None
                update["driving_style_probabilities"] = {}
            return body.model_copy(update=update)
        if isinstance(body, EventsV1):
            if c.location:
                return body
            return body.model_copy(
                update={
                    "events": [
                        e.model_copy(update={"location": self._point(e.location)}) for e in body.events
                    ]
                }
            )
        return body

    def allows_push(self, push: PushV1) -> bool:
        """Service messages always show; marketing ones only with profiling consent."""
        return not push.marketing or self.consent.profiling
