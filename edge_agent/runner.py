"""The in-car process: a source, the processing stages, the agent, the uplink and the downlink in one loop."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from .agent import EdgeAgent, TelemetrySettings
from .calibration import ThresholdCalibrator
from .config import EdgeSettings
from .detectors import thresholds_for
from .downlink import Downlink
from .model_store import ModelStore, UpdateResult
from .outbox import Outbox
from .processing import Pipeline, conditioning_stages
from .protocol import BrokerAddress, ConfigV1, ConsentState, PushAction, PushV1
from .signals import SignalBlock
from .trips import TripSettings
from .uplink import MqttUplink

log = logging.getLogger(__name__)


class LogDisplay:
    """A display hook for a car without a screen integration: writes pushes to the log."""

    def show(self, push: PushV1, respond: Callable[[PushAction], None]) -> None:
        """Log the push; no driver interaction is reported beyond delivery."""
        log.info("push %s: %s — %s", push.push_id, push.title, push.text)


def load_consent(path: Path, default: ConsentState) -> ConsentState:
    """The owner's stored choice, or ``default`` when none is stored (or the file is unreadable)."""
    try:
        return ConsentState.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except ValueError as exc:
        log.error("ignoring unreadable consent file %s (%s); using the configured defaults", path, exc)
        return default


def run_vehicle(
    settings: EdgeSettings,
    source: Iterable[SignalBlock],
    *,
    display: object | None = None,
    stop: threading.Event | None = None,
    flush_timeout_s: float = 60.0,
) -> bool:
    """Run one vehicle until the source ends or ``stop`` is set; return whether the outbox was emptied."""
    if not settings.vehicle_id:
        raise SystemExit("a vehicle id is needed: --vehicle-id or DRIVESIGHT_EDGE_VEHICLE_ID")
    vehicle_id = settings.vehicle_id
    stop = stop or threading.Event()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    consent_path = settings.state_dir / f"{vehicle_id}.consent.json"
    calibration_path = settings.state_dir / f"{vehicle_id}.calibration.json"
    consent = load_consent(consent_path, settings.default_consent())
    outbox = Outbox(
        settings.state_dir / f"{vehicle_id}.outbox.db",
        vehicle_id,
        max_bytes=int(settings.outbox_max_mb * 2**20),
        max_message_bytes=settings.max_message_bytes,
    )
    telemetry = (
        TelemetrySettings(period_s=settings.telemetry_period_s, batch_s=settings.telemetry_batch_s)
        if settings.telemetry_period_s > 0
        else None
    )
    public_key = settings.model_public_key_file.read_bytes() if settings.model_public_key_file else None
    models = ModelStore(settings.state_dir / "models", public_key_pem=public_key)
    agent = EdgeAgent(
        outbox,
        trip_settings=TripSettings(timezone=settings.timezone),
        thresholds=thresholds_for(
            settings.vehicle_class, speed_limit_kmh=settings.speed_limit_kmh, profile=settings.sensor_profile
        ),
        telemetry=telemetry,
        consent=consent,
        models=models,
        calibrator=ThresholdCalibrator.load(calibration_path) if settings.self_calibrate else None,
    )
    if agent.calibrator is not None:
        calibrator = agent.calibrator
        # kept after every trip: a restart goes on learning (or with what it learnt)
        agent.on_trip = lambda _trip: calibrator.save(calibration_path)
    agent.vehicle_class = settings.vehicle_class
    agent.sensor_profile = settings.sensor_profile
    uplink: MqttUplink | None = None

    def on_config(config: ConfigV1) -> None:
        if config.consent is not None:
            consent_path.write_text(config.consent.model_dump_json(), encoding="utf-8")
            if uplink is not None:
                uplink.send_status("online")

    def on_model(result: UpdateResult) -> None:
        if uplink is not None:
            uplink.send_status("online")  # report the active versions and the update's outcome

    downlink = Downlink(agent, display or LogDisplay(), on_config=on_config, on_model=on_model)  # type: ignore[arg-type]
    uplink = MqttUplink(
        outbox,
        BrokerAddress.parse(settings.mqtt_url),
        client_id=settings.mqtt_client_id or vehicle_id,
        resend_window_s=settings.resend_window_s,
        ca_file=settings.ca_file,
        cert_file=settings.cert_file,
        key_file=settings.key_file,
        persistent_session=settings.persistent_session,
        on_downlink=downlink.receive,
        status_fields=agent.status_fields,
    )
    uplink.start()
    # the one conditioning path (replay conditions its own blocks the same way, from its mapping)
    stages = [] if getattr(source, "conditioned", False) else conditioning_stages(settings.resample_hz)
    try:
        for block in Pipeline(stages).run(source):
            agent.process(block)
            downlink.poll()
            uplink.notify()
            if stop.is_set():
                break
        agent.close_trip()
        downlink.poll()
        # until the cloud's receipts: a message only the broker acknowledged is not safe yet
        flushed = uplink.flush(flush_timeout_s, confirmed=True)
    finally:
        uplink.stop()
        outbox.close()
    log.info(
        "%s: %d trips, %d events sent; outbox %s",
        vehicle_id,
        agent.trips_sent,
        agent.events_sent,
        "empty" if flushed else "keeps the rest for the next start",
    )
    return flushed


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT end the loop cleanly: the open trip is summarized and the outbox flushed."""
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
