"""Issue 15: detection that does not depend on the sample rate or the sensor.

Seeds here (1-99) are not the seeds the thresholds were chosen on (1000-1999); every failure message names
its seed, profile and rate, so it reproduces with ``simulators.sensors``.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from edge_agent import signals as vss
from edge_agent.calibration import MAX_SCALE, ThresholdCalibrator
from edge_agent.detectors import DetectedEvent, EventDetectors, thresholds_for
from edge_agent.processing import MountCalibrator, Pipeline, conditioning_stages
from edge_agent.profiles import SensorProfile
from edge_agent.protocol import HARSH_KINDS, EventKind
from edge_agent.signals import SignalBlock
from simulators.sensors import GYRO_AXES, Recording, render, simulate_truth

IMU = ("imu.x", "imu.y", "imu.z")
RATES = (10.0, 25.0, 50.0, 100.0)
T0 = 1_790_000_000.0


def _blocks(recording: Recording, block_s: float = 60.0) -> list[SignalBlock]:
    names = [n for n in recording.columns if n.startswith("Vehicle.") or n in IMU or n in GYRO_AXES]
    t = recording.t
    edges = np.unique(np.append(np.searchsorted(t, np.arange(t[0], t[-1] + block_s, block_s)), t.size))
    return [SignalBlock(t[a:b], {n: recording.columns[n][a:b] for n in names}) for a, b in pairwise(edges)]


def _detect(blocks: list[SignalBlock], profile: SensorProfile, *, calibrate: bool) -> list[DetectedEvent]:
    stages = [MountCalibrator(IMU)] if calibrate else []
    detectors = EventDetectors(thresholds_for(profile=profile, speed_limit_kmh=None))
    events: list[DetectedEvent] = []
    for block in Pipeline([*stages, *conditioning_stages()]).run(blocks):
        events += detectors.update(block)
    return [e for e in events + detectors.flush() if e.kind in HARSH_KINDS]


@pytest.mark.parametrize(
    ("seed", "profile"),
    [(7, SensorProfile.VEHICLE_BUS), (8, SensorProfile.PHONE), (9, SensorProfile.AFTERMARKET_IMU)],
)
def test_the_same_events_at_10_25_50_and_100_hz(seed: int, profile: SensorProfile) -> None:
    # firm manoeuvres (4.5-5.5 m/s^2): each must be found at every rate, as the same event
    truth = simulate_truth(seed, minutes=8, peak_range=(4.5, 5.5))
    found = {}
    for rate in RATES:
        recording = render(truth, profile, rate, seed)
        found[rate] = _detect(_blocks(recording), profile, calibrate="imu.x" in recording.columns)
    reference = found[100.0]
    assert len(reference) >= len(truth.labels) - 1 > 2, f"seed={seed} profile={profile}: {reference}"
    for rate in RATES:
        got = found[rate]
        where = f"seed={seed} profile={profile} rate={rate:g}Hz"
        assert [e.kind for e in got] == [e.kind for e in reference], where
        assert all(abs(a.start - b.start) <= 0.3 for a, b in zip(got, reference, strict=True)), where


def _high_pass(x: np.ndarray, dt: float, tau: float = 1.0) -> np.ndarray:
    """What Android's linear acceleration does to a held acceleration: a one-pole ~1 s high-pass."""
    alpha = 1.0 - np.exp(-dt / tau)
    low = np.zeros_like(x)
    for i in range(1, x.size):
        low[i] = low[i - 1] + alpha * (x[i] - low[i - 1])
    return x - low


@pytest.mark.parametrize("rate", RATES)
@pytest.mark.parametrize("sign", [-1.0, 1.0])
def test_a_high_passed_lobe_and_its_rebound_count_once_with_the_first_direction(
    rate: float, sign: float
) -> None:
    dt = 1.0 / rate
    t = np.arange(0, 40, dt)
    held = np.where((t >= 10) & (t < 12), sign * 3.5, 0.0)  # a 2 s brake (or acceleration) of 3.5 m/s^2
    lon = _high_pass(held, dt)
    assert lon.max() > 1.0 and lon.min() < -1.0  # the rebound is really there
    block = SignalBlock(T0 + t, {vss.ACCEL_LONGITUDINAL: lon, vss.SPEED: np.full(t.size, 50.0)})
    events = _detect([block], SensorProfile.PHONE, calibrate=False)
    want = EventKind.HARSH_BRAKE if sign < 0 else EventKind.HARSH_ACCEL
    assert [e.kind for e in events] == [want], f"rate={rate:g}Hz: {events}"
    assert 9.8 <= events[0].start - T0 <= 10.6


def _lateral_block(lat: np.ndarray, yaw: np.ndarray, speed_kmh: float, dt: float) -> SignalBlock:
    t = T0 + np.arange(lat.size) * dt
    return SignalBlock(
        t, {vss.ACCEL_LATERAL: lat, vss.YAW_RATE: yaw, vss.SPEED: np.full(lat.size, speed_kmh)}
    )


def test_a_pothole_is_not_a_corner_when_speed_and_yaw_rate_disagree() -> None:
    dt = 0.01
    t = np.arange(0, 30, dt)
    spike = np.where((t >= 10) & (t < 10.4), 7.0, 0.0)  # a lateral jolt, the car keeps going straight
    block = _lateral_block(spike, np.zeros(t.size), 60.0, dt)
    assert _detect([block], SensorProfile.VEHICLE_BUS, calibrate=False) == []
    # the same lateral acceleration, with the yaw rate a real corner has (a_lat = v * yaw rate): a corner
    corner = np.where((t >= 10) & (t < 12), 5.0, 0.0)
    yaw = np.degrees(corner / (60 / 3.6))
    (event,) = _detect([_lateral_block(corner, yaw, 60.0, dt)], SensorProfile.VEHICLE_BUS, calibrate=False)
    assert event.kind is EventKind.HARSH_CORNER and event.peak == pytest.approx(5.0, abs=0.05)


def test_a_lane_change_is_one_corner() -> None:
    dt = 0.01
    t = np.arange(0, 30, dt)
    s_curve = np.where((t >= 10) & (t < 11.5), 4.5, 0.0) - np.where((t >= 11.5) & (t < 13), 4.5, 0.0)
    yaw = np.degrees(s_curve / (80 / 3.6))
    events = _detect([_lateral_block(s_curve, yaw, 80.0, dt)], SensorProfile.VEHICLE_BUS, calibrate=False)
    assert [(e.kind, e.peak > 0) for e in events] == [(EventKind.HARSH_CORNER, True)]  # the first lobe's side


def test_no_harsh_event_while_standing() -> None:
    dt = 0.02
    t = np.arange(0, 30, dt)
    knock = np.where((t >= 10) & (t < 11), -5.0, 0.0)  # the phone holder knocked while parked
    parked = SignalBlock(T0 + t, {vss.ACCEL_LONGITUDINAL: knock, vss.SPEED: np.zeros(t.size)})
    assert _detect([parked], SensorProfile.PHONE, calibrate=False) == []
    moving = SignalBlock(T0 + t, {vss.ACCEL_LONGITUDINAL: knock, vss.SPEED: np.full(t.size, 40.0)})
    assert [e.kind for e in _detect([moving], SensorProfile.PHONE, calibrate=False)] == [
        EventKind.HARSH_BRAKE
    ]
    # implausible: 3 g is a dropped phone, not a car
    dropped = SignalBlock(T0 + t, {vss.ACCEL_LONGITUDINAL: knock * 6, vss.SPEED: np.full(t.size, 40.0)})
    assert _detect([dropped], SensorProfile.PHONE, calibrate=False) == []


def _drive(calibrator: ThresholdCalibrator, lobe_peaks: np.ndarray, seconds: float, samples: int) -> None:
    """Braking lobes of ``samples`` samples at 10 Hz, one every 20 s, through the detectors' observer."""
    rules = calibrator.apply(thresholds_for(profile=SensorProfile.PHONE))
    detectors = EventDetectors(rules, observe=calibrator.observe)
    dt = 0.1
    n = round(seconds / dt)
    lon = np.zeros(n)
    for i, peak in enumerate(lobe_peaks):
        at = 100 + i * 200
        if at + samples < n:
            lon[at : at + samples] = -peak
    block = SignalBlock(T0 + np.arange(n) * dt, {vss.ACCEL_LONGITUDINAL: lon, vss.SPEED: np.full(n, 50.0)})
    detectors.update(block)
    detectors.flush()
    calibrator.add_driving(block)


def test_self_calibration_stays_within_its_bounds(tmp_path: Path) -> None:
    rng = np.random.default_rng(41)
    phone = thresholds_for(profile=SensorProfile.PHONE)
    brake = abs(next(t.value for t in phone if t.kind is EventKind.HARSH_BRAKE))
    calm = ThresholdCalibrator(learn_s=3600)
    _drive(calm, rng.uniform(0.5, 0.6, 200) * brake, 3700, samples=2)  # small bumps: a calm, steady car
    assert calm.learned and calm.scales["harsh_brake"] == 1.0  # never below the profile
    aggressive = ThresholdCalibrator(learn_s=3600)
    _drive(aggressive, rng.uniform(1.5, 3.0, 200) * brake, 3700, samples=12)  # hard brakes, 1.2 s each
    assert aggressive.scales["harsh_brake"] == 1.0  # manoeuvres do not calibrate themselves away
    rough = ThresholdCalibrator(learn_s=3600)
    _drive(rough, rng.uniform(0.8, 3.0, 200) * brake, 3700, samples=2)  # a rattling holder: sharp spikes
    assert rough.learned and 1.0 < rough.scales["harsh_brake"] <= MAX_SCALE
    raised = rough.apply(phone)
    assert abs(next(t.value for t in raised if t.kind is EventKind.HARSH_BRAKE)) <= brake * MAX_SCALE + 1e-9
    path = tmp_path / "car.calibration.json"
    rough.save(path)
    again = ThresholdCalibrator.load(path)
    assert again.scales == rough.scales and again.learned
    assert ThresholdCalibrator.load(tmp_path / "missing.json").scales == {}


@pytest.mark.parametrize("seed", [31, 32, 33])
def test_mount_calibration_without_speed_finds_forward(seed: int) -> None:
    truth = simulate_truth(seed, minutes=10)
    recording = render(truth, SensorProfile.AFTERMARKET_IMU, 50.0, seed, gps=False)
    assert vss.SPEED not in recording.columns
    calibrator = MountCalibrator(IMU)
    out = list(Pipeline([calibrator]).run(_blocks(recording)))
    where = f"seed={seed} profile=aftermarket-imu rate=50Hz"
    assert calibrator.calibration is not None, where
    assert calibrator.calibration.method == "principal-axis", where
    forward = np.array(recording.meta["rotation_car_to_sensor"])[:, 0]  # the car's x axis, sensor frame
    angle = np.degrees(np.arccos(np.clip(calibrator.calibration.rotation[0] @ forward, -1, 1)))
    assert angle < 10.0, f"{where}: forward off by {angle:.1f} deg"
    assert vss.YAW_RATE in out[-1].signals  # the gyro's rate about "up" is passed on as the yaw rate
