"""Resampling, filtering and IMU mount calibration."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent import signals as vss
from edge_agent.detectors import EventDetectors
from edge_agent.offline import run_offline
from edge_agent.processing import (
    G,
    LowPass,
    MountCalibrator,
    Pipeline,
    Resampler,
    RingBuffer,
    concat_blocks,
    estimate_mount,
)
from edge_agent.protocol import HARSH_KINDS, EventKind
from edge_agent.signals import SignalBlock
from edge_agent.sources.mapping import load_mapping
from edge_agent.sources.replay import ReplaySource
from simulators.personas import PersonaName
from simulators.vehicle import VehicleSpec, initial_state, simulate_day


def _chunks(block: SignalBlock, size: int) -> list[SignalBlock]:
    return [block.slice(i, i + size) for i in range(0, len(block), size)]


def _run(stages: list, blocks: list[SignalBlock]) -> SignalBlock:
    return concat_blocks(list(Pipeline(stages).run(blocks)))


def test_ring_buffer_keeps_the_last_rows() -> None:
    ring = RingBuffer(4, 2)
    ring.extend(np.array([[1, 1], [2, 2], [3, 3]], dtype=float))
    ring.extend(np.array([[4, 4], [5, 5]], dtype=float))
    assert ring.values()[:, 0].tolist() == [2, 3, 4, 5]
    ring.extend(np.arange(20, dtype=float).reshape(10, 2))
    assert ring.values()[:, 0].tolist() == [12, 14, 16, 18]


def test_resampler_puts_jittered_samples_on_a_grid() -> None:
    rng = np.random.default_rng(1)
    t = 1000.0 + np.cumsum(rng.uniform(0.05, 0.15, 2000))
    block = SignalBlock(t, {vss.SPEED: 3.0 * t, vss.ACCEL_LONGITUDINAL: np.sin(t)})
    out = _run([Resampler(10.0)], _chunks(block, 137))
    assert np.allclose(np.diff(out.t), 0.1)
    assert np.allclose(out.t * 10, np.round(out.t * 10))  # on the k/10 grid
    assert np.allclose(out.signals[vss.SPEED], 3.0 * out.t)  # linear signals are exact
    assert np.max(np.abs(out.signals[vss.ACCEL_LONGITUDINAL] - np.sin(out.t))) < 0.01


def test_resampler_keeps_gaps_and_sparse_signals_apart() -> None:
    t = np.concatenate([np.arange(0, 10, 0.1), np.arange(30, 40, 0.1)])
    sparse = np.where(np.arange(t.size) % 10 == 0, 1.0, np.nan)  # a 1 Hz signal among 10 Hz rows
    block = SignalBlock(t, {vss.SPEED: np.full(t.size, 50.0), vss.FUEL_LEVEL: sparse})
    out = _run([Resampler(10.0, max_gap_s=1.0)], _chunks(block, 33))
    assert not np.any((out.t > 10.0) & (out.t < 29.9))  # no samples invented in the 20 s dropout
    assert np.count_nonzero(~np.isnan(out.signals[vss.FUEL_LEVEL])) > 150  # interpolated between 1 Hz samples


@settings(max_examples=30, deadline=None)
@given(sizes=st.lists(st.integers(1, 300), min_size=1, max_size=20))
def test_resampler_and_filter_do_not_depend_on_chunking(sizes: list[int]) -> None:
    rng = np.random.default_rng(7)
    t = np.cumsum(rng.uniform(0.08, 0.12, 1500))
    block = SignalBlock(t, {vss.ACCEL_LONGITUDINAL: rng.normal(0, 1, t.size), vss.SPEED: t})
    whole = _run([Resampler(10.0), LowPass(2.0, 10.0)], [block])
    pieces, start, i = [], 0, 0
    while start < len(block):
        size = sizes[i % len(sizes)]
        pieces.append(block.slice(start, start + size))
        start, i = start + size, i + 1
    chunked = _run([Resampler(10.0), LowPass(2.0, 10.0)], pieces)
    assert np.allclose(whole.t, chunked.t)
    for name in whole.signals:
        assert np.allclose(whole.signals[name], chunked.signals[name], equal_nan=True)


def test_lowpass_cuts_noise_and_keeps_timing() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(0, 60, 0.1)
    step = np.where(t >= 30.0, -5.0, 0.0)
    block = SignalBlock(t, {vss.ACCEL_LONGITUDINAL: step + rng.normal(0, 0.5, t.size)})
    lowpass = LowPass(1.0, 10.0)
    out = _run([lowpass], _chunks(block, 64))
    assert lowpass.window == 4
    noise_before = np.std(block.signals[vss.ACCEL_LONGITUDINAL][t < 29])
    noise_after = np.std(out.signals[vss.ACCEL_LONGITUDINAL][out.t < 29])
    assert noise_after < 0.6 * noise_before
    crossing = out.t[np.argmax(out.signals[vss.ACCEL_LONGITUDINAL] < -2.5)]
    assert abs(crossing - 30.0) <= 0.1  # the half-window shift puts the edge back where it was


IMU = ("imu.x", "imu.y", "imu.z")


def _harsh(block: SignalBlock) -> list[tuple[EventKind, float]]:
    detectors = EventDetectors()
    events = detectors.update(block) + detectors.flush()
    return [(e.kind, e.start) for e in events if e.kind in HARSH_KINDS]


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.linalg.det(q))  # a proper rotation


def _mounted_trip(seed: int) -> tuple[SignalBlock, SignalBlock, np.ndarray]:
    """A simulated trip, and the same trip as a box mounted at a random angle would record it."""
    spec = VehicleSpec("car1", PersonaName.AGGRESSIVE)
    rng = np.random.default_rng(seed)
    trips, _ = simulate_day(spec, date(2026, 11, 2), initial_state(spec, rng), rng)
    trip = max(trips, key=lambda tr: len(tr.events)).block
    n = len(trip)
    car = np.column_stack(
        [trip.signals[vss.ACCEL_LONGITUDINAL], trip.signals[vss.ACCEL_LATERAL], G + rng.normal(0, 0.05, n)]
    )
    mount = _rotation(rng)
    raw = car @ mount  # device axes: rows of `mount` are the car's axes in device coordinates
    recorded = SignalBlock(
        trip.t,
        {vss.SPEED: trip.signals[vss.SPEED], "imu.x": raw[:, 0], "imu.y": raw[:, 1], "imu.z": raw[:, 2]},
    )
    return trip, recorded, mount


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mount_calibration_recovers_the_cars_axes(seed: int) -> None:
    truth, recorded, mount = _mounted_trip(seed)
    calibrator = MountCalibrator(("imu.x", "imu.y", "imu.z"), warmup_s=300)
    out = _run([calibrator], _chunks(recorded, 600))
    assert calibrator.calibration is not None and calibrator.calibration.method == "speed"
    assert np.allclose(calibrator.calibration.rotation, mount, atol=0.02)
    for name in (vss.ACCEL_LONGITUDINAL, vss.ACCEL_LATERAL):
        assert np.sqrt(np.mean((out.signals[name] - truth.signals[name]) ** 2)) < 0.1
    assert [(k, round(t, 1)) for k, t in _harsh(out)] == [(k, round(t, 1)) for k, t in _harsh(truth)]
    assert len(_harsh(truth)) > 3


def test_no_mount_calibration_without_speed() -> None:
    _, recorded, _ = _mounted_trip(4)
    raw = np.column_stack([recorded.signals[a] for a in ("imu.x", "imu.y", "imu.z")])
    assert estimate_mount(raw, None) is None  # forward cannot be told from sideways
    no_speed = SignalBlock(recorded.t, {k: v for k, v in recorded.signals.items() if k != vss.SPEED})
    calibrator = MountCalibrator(("imu.x", "imu.y", "imu.z"), warmup_s=60, max_buffer_s=300)
    out = _run([calibrator], _chunks(no_speed, 600))
    assert calibrator.calibration is None
    assert len(out) == len(no_speed)  # nothing lost but the raw axes
    assert vss.ACCEL_LONGITUDINAL not in out.signals and "imu.x" not in out.signals


def test_no_calibration_without_gravity() -> None:
    assert estimate_mount(np.random.default_rng(0).normal(0, 1, (500, 3)), None) is None


def test_replay_with_a_misaligned_accelerometer(tmp_path: Path) -> None:
    truth, recorded, _ = _mounted_trip(5)
    t0 = recorded.t[0]
    lines = ["t,speed,ax,ay,az"] + [
        f"{t - t0:.1f},{v:.3f},{x:.4f},{y:.4f},{z:.4f}"
        for t, v, x, y, z in zip(
            recorded.t, recorded.signals[vss.SPEED], *(recorded.signals[a] for a in IMU),
            strict=True,
        )
    ]  # fmt: skip
    (tmp_path / "box.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "box.toml").write_text(
        '[time]\ncolumn = "t"\nformat = "relative_s"\n[signals."Vehicle.Speed"]\ncolumn = "speed"\n'
        "[processing]\nresample_hz = 10\nlowpass_hz = 2\ncalibrate_imu = true\n"
        'imu_columns = ["ax", "ay", "az"]\n'
    )
    source = ReplaySource(tmp_path / "box.csv", load_mapping(tmp_path / "box.toml"))
    result = run_offline(source, time_of=lambda t: source.time_base.from_epoch(t))  # type: ignore[union-attr]
    assert source.calibrator is not None and source.calibrator.calibration is not None
    harsh = [(e["kind"], round(e["start"], 1)) for e in result["events"] if e["kind"].startswith("harsh")]
    want = [(kind.value, round(start - t0, 1)) for kind, start in _harsh(truth)]
    assert len(harsh) == len(want)
    for (kind, start), (want_kind, want_start) in zip(harsh, want, strict=True):
        assert kind == want_kind and abs(start - want_start) <= 0.3
