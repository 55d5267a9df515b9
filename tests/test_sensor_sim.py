"""The realistic sensor simulator (simulators/sensors.py): physics of the truth, what each sensor profile does
to it, and the files it writes. Every assertion message names seed, profile and rate, so a failure
reproduces with ``render(simulate_truth(seed, ...), profile, rate, seed)``."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from edge_agent import signals as vss
from edge_agent.cli import main as edge_main
from edge_agent.sources.can import CanLogSource, load_can_mapping
from edge_agent.sources.mapping import load_mapping
from edge_agent.sources.replay import IMU_AXES
from simulators.candump import write_candump
from simulators.cli import main as cli_main
from simulators.sensors import (
    EVENT_KINDS,
    GYRO_AXES,
    PHONE_LINEAR,
    SELECTED_GEAR,
    G,
    Recording,
    SensorProfile,
    Truth,
    render,
    simulate_truth,
)

#: seeds of these tests; the benchmark and any tuning use others
SEED = 20261
MINUTES = 10.0


@pytest.fixture(scope="module")
def truth() -> Truth:
    return simulate_truth(SEED, minutes=MINUTES)


@pytest.fixture(scope="module")
def short_truth() -> Truth:
    return simulate_truth(SEED + 3, minutes=3.0)


@pytest.fixture(scope="module")
def calm_truth() -> Truth:
    return simulate_truth(SEED + 1, minutes=MINUTES, calm_only=True)


def _where(truth: Truth) -> str:
    return f"seed={truth.seed} truth ({truth.duration_s:.0f} s at {truth.rate_hz:g} Hz)"


def _inside(t: np.ndarray, intervals: list[tuple[float, float]]) -> np.ndarray:
    mask = np.zeros(t.size, dtype=bool)
    for a, b in intervals:
        mask |= (t >= a) & (t <= b)
    return mask


def test_speed_is_the_integral_of_acceleration_and_a_lat_is_v_times_yaw_rate(truth: Truth) -> None:
    where = _where(truth)
    dt = 1.0 / truth.rate_hz
    integral = np.concatenate([[0.0], np.cumsum(truth.a_long[:-1]) * dt])
    assert np.max(np.abs(truth.speed - integral)) < 1e-6, where
    assert truth.speed.min() >= 0.0, where
    assert 60 / 3.6 < truth.speed.max() < 130 / 3.6, where
    moving = truth.speed > 1.0
    omega = np.radians(truth.yaw_rate[moving])  # deg/s in the truth, like VSS
    np.testing.assert_allclose(truth.a_lat[moving], truth.speed[moving] * omega, atol=1e-9, err_msg=where)
    assert np.all(truth.a_lat[truth.speed <= 0.5] == 0.0), where
    # turns at walking pace make yaw rates of tens of deg/s, as in a real car
    assert 10.0 < np.abs(truth.yaw_rate).max() < 60.0, where


def test_manoeuvres_are_labelled_near_the_thresholds_with_realistic_shapes(truth: Truth) -> None:
    where = _where(truth)
    kinds = {e.kind for e in truth.labels}
    assert kinds == set(EVENT_KINDS), f"{where}: kinds {kinds}"
    assert len(truth.labels) >= 8, where
    for e in truth.labels:
        what = f"{where} {e}"
        assert 2.5 <= abs(e.peak) <= 4.0 + 1e-6, what
        signal = truth.a_long if e.kind in ("harsh_brake", "harsh_accel") else truth.a_lat
        inside = (truth.t >= e.start) & (truth.t <= e.end)
        values = signal[inside]
        if e.kind == "lane_change":
            # an S: one lobe, then the opposite one of a similar size, within 2-4 s
            assert 2.0 <= e.end - e.start <= 4.0, what
            half = values.size // 2
            first, second = values[:half], values[half:]
            assert np.sign(first[np.argmax(np.abs(first))]) == np.sign(e.peak), what
            assert np.sign(second[np.argmax(np.abs(second))]) == -np.sign(e.peak), what
            assert np.abs(second).max() > 0.8 * abs(e.peak), what
        else:
            # half-peak width of 1-3 s, no rectangle: the signal ramps in over a few tenths of a second
            assert 0.9 <= e.end - e.start <= 3.1, what
            assert np.all(np.sign(values) == np.sign(e.peak)), what
            assert np.abs(values).min() >= 0.5 * abs(e.peak) - 1e-9, what
            assert np.abs(values).max() == pytest.approx(abs(e.peak), abs=1e-3), what
            step = np.abs(np.diff(signal)).max() * truth.rate_hz  # jerk, m/s^3
            assert step < 40.0, what
        if e.kind == "harsh_brake":
            assert e.peak < 0, what
        if e.kind == "harsh_accel":
            assert e.peak > 0, what


def test_calm_stretches_are_calm_and_calm_only_drives_have_no_labels(truth: Truth, calm_truth: Truth) -> None:
    for drive in (truth, calm_truth):
        where = _where(drive)
        calm = _inside(drive.t, drive.calm)
        assert calm.mean() > 0.4, where
        assert np.abs(drive.a_long[calm]).max() <= 1.6, where
        assert np.abs(drive.a_lat[calm]).max() <= 2.0, where
        assert np.any(drive.speed[calm] == 0.0), f"{where}: no standstill"
        for e in drive.labels:
            assert not _inside(np.array([e.start, e.end]), drive.calm).any(), f"{where} {e}"
    assert calm_truth.labels == [], _where(calm_truth)
    assert calm_truth.calm == [(calm_truth.t[0], calm_truth.t[-1])], _where(calm_truth)


def test_the_same_seed_gives_the_same_drive_and_sensor_another_seed_another(truth: Truth) -> None:
    again = simulate_truth(SEED, minutes=MINUTES)
    np.testing.assert_array_equal(truth.a_long, again.a_long)
    np.testing.assert_array_equal(truth.a_lat, again.a_lat)
    assert truth.labels == again.labels
    other = simulate_truth(SEED + 7, minutes=MINUTES)
    assert other.labels != truth.labels
    short = simulate_truth(SEED, minutes=2.0)
    for profile in SensorProfile:
        a, b = render(short, profile, 50, 3), render(short, profile, 50, 3)
        assert a.columns.keys() == b.columns.keys()
        for name in a.columns:
            np.testing.assert_array_equal(a.columns[name], b.columns[name], err_msg=f"{a.describe()} {name}")
        c = render(short, profile, 50, 4)
        assert c.meta != a.meta, a.describe()
        assert not np.array_equal(c.columns[c.edge_columns()[-1]], a.columns[a.edge_columns()[-1]]), (
            a.describe()
        )


@pytest.mark.parametrize("rate", [10, 25, 37, 50, 100])
@pytest.mark.parametrize("profile", list(SensorProfile))
def test_every_rate_gives_that_many_samples_in_time_order(
    short_truth: Truth, profile: SensorProfile, rate: int
) -> None:
    truth = short_truth
    rec = render(truth, profile, rate, 11)
    where = rec.describe()
    assert rec.t.dtype == np.float64, where
    assert np.all(np.diff(rec.t) >= 0), where
    assert rec.t.size == pytest.approx(truth.duration_s * rate, rel=0.01), where
    dt = np.diff(rec.t)
    assert np.median(dt) == pytest.approx(1.0 / rate, rel=0.01), where
    if profile is SensorProfile.PHONE:
        assert dt.std() > 0.1e-3, f"{where}: phone sample times should jitter"
    for name, column in rec.columns.items():
        assert column.shape == rec.t.shape, f"{where} {name}"
        if name != vss.SPEED or profile is SensorProfile.VEHICLE_BUS:
            assert not np.isnan(column).any(), f"{where} {name}"
    expected = {
        SensorProfile.VEHICLE_BUS: {vss.SPEED, vss.ACCEL_LONGITUDINAL, vss.ACCEL_LATERAL, vss.YAW_RATE},
        SensorProfile.PHONE: {vss.SPEED, *IMU_AXES},
        SensorProfile.AFTERMARKET_IMU: {vss.SPEED, *IMU_AXES},
    }[profile]
    assert expected <= set(rec.edge_columns()), where
    if profile is not SensorProfile.VEHICLE_BUS:
        assert vss.ACCEL_LONGITUDINAL not in rec.columns, f"{where}: a misaligned sensor has no car frame"


def test_one_seed_is_one_sensor_at_every_rate(short_truth: Truth) -> None:
    # the benchmark compares rates: only the sampling may differ, never the phone, its mount or its noise
    slow = render(short_truth, SensorProfile.PHONE, 10, 8)
    fast = render(short_truth, SensorProfile.PHONE, 100, 8)
    assert slow.meta == fast.meta, slow.describe()
    both = np.intersect1d(np.round(slow.t, 3), np.round(fast.t, 3))
    assert both.size > 50, slow.describe()
    gravity = [np.interp(both, r.t, r.columns["phone.gravity.z"]) for r in (slow, fast)]
    np.testing.assert_allclose(gravity[0], gravity[1], atol=0.05, err_msg=slow.describe())


def _rest(rec: Recording, truth: Truth, *, first: bool = False) -> np.ndarray:
    """Samples at standstill (``first``: only the first one, a single slope and temperature)."""
    rest = np.interp(rec.t, truth.t, truth.speed) == 0.0
    if first:
        rest &= rec.t < rec.t[0] + 5.0
    return rest


def test_a_phone_brake_spike_is_followed_by_a_rebound_the_bus_has_not(truth: Truth) -> None:
    brakes = [e for e in truth.labels if e.kind == "harsh_brake"]
    assert len(brakes) >= 2, _where(truth)
    phone, bus = render(truth, SensorProfile.PHONE, 50, 5), render(truth, SensorProfile.VEHICLE_BUS, 50, 5)
    to_car = np.array(phone.meta["rotation_car_to_sensor"])
    # sensor = R @ car, so the car's x component of a sensor vector s is (R.T @ s)[0] = s . R[:, 0]
    longitudinal = np.column_stack([phone.columns[a] for a in PHONE_LINEAR]) @ to_car[:, 0]
    for e in brakes:
        where = f"{phone.describe()} {e}"
        spike = (phone.t >= e.start) & (phone.t <= e.end)
        after = (phone.t > e.end) & (phone.t <= e.end + 4.0)
        low = longitudinal[spike].min()
        assert low < -0.5 * abs(e.peak), where  # the spike is there ...
        # ... then the high-pass's memory of it comes back with the opposite sign
        assert longitudinal[after].max() > 0.3 * abs(low), where
        assert longitudinal[after].max() > 1.0, where
        bus_after = bus.columns[vss.ACCEL_LONGITUDINAL][(bus.t > e.end + 0.5) & (bus.t <= e.end + 4.0)]
        assert bus_after.max() < 0.8, f"{bus.describe()} {e}: the ESC signal has no rebound"


def test_a_misaligned_mount_rotates_the_axes_and_keeps_the_norm(short_truth: Truth) -> None:
    truth = short_truth
    for seed in (1, 2, 3):
        rec = render(truth, SensorProfile.AFTERMARKET_IMU, 50, seed)
        where = rec.describe()
        r = np.array(rec.meta["rotation_car_to_sensor"])
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-4, err_msg=where)
        raw = np.column_stack([rec.columns[a] for a in IMU_AXES])
        rest = _rest(rec, truth)
        mean = raw[rest].mean(axis=0)
        # gravity alone at rest: its norm is g in any frame, and it points where the mount says "up" is
        assert np.linalg.norm(mean) == pytest.approx(G, abs=0.4), where
        np.testing.assert_allclose(mean, r @ np.array([0.0, 0.0, G]), atol=0.5, err_msg=where)
        # and no sensor axis is vertical: the mount is tilted off every axis, not only permuted
        assert np.abs(mean).max() / np.linalg.norm(mean) < np.cos(np.radians(3.0)), where
        # while driving, the norm of the horizontal specific force in the sensor frame equals the car's
        driving = np.interp(rec.t, truth.t, truth.speed) > 5.0
        horizontal = np.hypot(np.interp(rec.t, truth.t, truth.a_long), np.interp(rec.t, truth.t, truth.a_lat))
        total = np.linalg.norm(raw[driving], axis=1)
        expected = np.sqrt(G**2 + horizontal[driving] ** 2)
        assert np.median(np.abs(total - expected)) < 0.5, where


def test_gps_speed_comes_once_a_second_late_and_with_dropouts(short_truth: Truth) -> None:
    truth = short_truth
    rec = render(truth, SensorProfile.PHONE, 25, 9)
    where = rec.describe()
    speed = rec.columns[vss.SPEED]
    fixes = np.flatnonzero(~np.isnan(speed))
    gaps = np.diff(rec.t[fixes])
    assert np.median(gaps) == pytest.approx(1.0, abs=0.05), where
    assert gaps.max() >= 3.0, f"{where}: no dropout"
    assert rec.t[fixes[0]] - rec.t[0] >= 5.0, f"{where}: a fix before the receiver could have one"
    t, v = rec.t[fixes], speed[fixes] / 3.6
    latency = rec.meta["gps"]["latency_s"]
    now = np.abs(v - np.interp(t, truth.t, truth.speed)).mean()
    late = np.abs(v - np.interp(t - latency, truth.t, truth.speed)).mean()
    assert 0.7 <= latency <= 1.3 and late < now, f"{where}: error now {now:.3f}, {latency} s ago {late:.3f}"
    assert render(truth, SensorProfile.AFTERMARKET_IMU, 25, 9, gps=False).columns.get(vss.SPEED) is None


def test_phone_vibration_aliases_at_low_rates(short_truth: Truth) -> None:
    truth = short_truth
    # No anti-alias filter before the phone's sampler: at 10 Hz the 10-40 Hz vibration folds down instead of
    # vanishing, so the noise at standstill is as large as at 100 Hz (an ideal filter would remove most).
    fast, slow = render(truth, SensorProfile.PHONE, 100, 2), render(truth, SensorProfile.PHONE, 10, 2)
    rms = []
    for rec in (fast, slow):
        lin = np.column_stack([rec.columns[a] for a in PHONE_LINEAR])[_rest(rec, truth, first=True)]
        rms.append(float(np.sqrt(np.mean((lin - lin.mean(axis=0)) ** 2))))
    assert rms[0] > 0.04, f"{fast.describe()}: standstill RMS {rms[0]:.3f}"
    assert rms[1] > 0.7 * rms[0], f"{slow.describe()}: RMS {rms[1]:.3f} vs {rms[0]:.3f} at 100 Hz"
    bus = render(truth, SensorProfile.VEHICLE_BUS, 100, 2)
    bus_rest = bus.columns[vss.ACCEL_LONGITUDINAL][_rest(bus, truth, first=True)]
    assert bus_rest.std() < 0.5 * rms[0], f"{bus.describe()}: the ECU's filter keeps the bus quiet"


def test_blocks_cover_the_recording_once(truth: Truth) -> None:
    rec = render(truth, SensorProfile.PHONE, 37, 1)
    blocks = list(rec.to_blocks(block_s=45.0))
    assert all(b.t[-1] - b.t[0] < 45.0 for b in blocks), rec.describe()
    np.testing.assert_array_equal(np.concatenate([b.t for b in blocks]), rec.t)
    assert set(blocks[0].signals) == {vss.SPEED, *IMU_AXES, *GYRO_AXES}, rec.describe()
    joined = np.concatenate([b.signals["imu.y"] for b in blocks])
    np.testing.assert_array_equal(joined, rec.columns["imu.y"])
    assert set(PHONE_LINEAR) <= set(next(rec.to_blocks(everything=True)).signals), rec.describe()


@pytest.mark.parametrize("profile", list(SensorProfile))
def test_the_csv_holds_every_column_and_its_mapping_loads(tmp_path: Path, profile: SensorProfile) -> None:
    truth = simulate_truth(3, minutes=3.0)
    rec = render(truth, profile, 25, 3)
    where = rec.describe()
    csv_path, mapping_path = rec.write_csv(tmp_path)
    mapping = load_mapping(mapping_path)
    assert mapping.processing.calibrate_imu is (profile is not SensorProfile.VEHICLE_BUS), where
    if mapping.processing.calibrate_imu:
        assert mapping.processing.imu_columns == IMU_AXES, where
    labels = json.loads(csv_path.with_suffix(".labels.json").read_text())
    assert (labels["seed"], labels["profile"], labels["rate_hz"]) == (3, profile.value, 25), where
    assert [tuple(x.values()) for x in labels["labels"]] == [
        (e.kind, e.start, e.end, e.peak) for e in truth.labels
    ], where
    with csv_path.open() as f:
        header = f.readline().strip().split(",")
        rows = [line.rstrip("\n").split(",") for line in f]
    assert header[0] == "timestamp" and header[1:] == list(rec.columns), where
    assert set(mapping.columns()) <= set(header), where
    assert len(rows) == rec.t.size, where
    t = np.array([float(r[0]) for r in rows])
    np.testing.assert_allclose(t, rec.t, atol=1e-6, err_msg=where)
    speed = np.array([float(r[1 + list(rec.columns).index(vss.SPEED)] or "nan") for r in rows])
    np.testing.assert_allclose(speed, rec.columns[vss.SPEED], rtol=1e-5, atol=1e-3, err_msg=where)
    # no sample is an empty cell, never "nan" (which the replay would count as unparsable)
    assert "nan" not in csv_path.read_text(), where


def test_a_bus_recording_replays_as_a_candump_log_through_its_dbc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # brakes far above the car threshold (-3.4 m/s^2 held 0.5 s): the CAN path must find each one, on time,
    # and nothing else (the calm driving between them stays under every threshold)
    truth = simulate_truth(
        SEED + 2, minutes=6.0, peak_range=(5.0, 6.0), kinds=("harsh_brake",), event_probability=1.0
    )
    rec = render(truth, SensorProfile.VEHICLE_BUS, 25, SEED + 2)
    where = rec.describe()
    assert len(rec.labels) >= 2, where
    files = write_candump(rec, tmp_path / "drive.log", dbc_path=tmp_path / "dbc" / "car.dbc")
    first = files.log.read_text().splitlines()[0]
    assert re.fullmatch(r"\(\d+\.\d{6}\) can0 [0-9A-F]{3}#[0-9A-F]{16}", first), first
    # the command's own entry point, in this process (a subprocess would only add its start-up time)
    code = edge_main(
        ["replay", str(files.log), "--mapping", str(files.mapping), "--dbc", str(files.dbc), "--json"]
    )
    out, err = capsys.readouterr()
    assert code == 0, f"{where}: {err[-2000:]}"
    document = json.loads(out)
    assert len(document["trips"]) == 1, where
    harsh = [e for e in document["events"] if e["kind"].startswith("harsh")]
    assert [e["kind"] for e in harsh] == ["harsh_brake"] * len(rec.labels), (
        f"{where}: {harsh} vs {rec.labels}"
    )
    for event, label in zip(harsh, rec.labels, strict=True):
        assert event["start"] == pytest.approx(label.start, abs=0.5), f"{where} {label}: {event}"
        assert event["end"] == pytest.approx(label.end, abs=0.5), f"{where} {label}: {event}"
        assert event["peak"] == pytest.approx(label.peak, abs=0.8), f"{where} {label}: {event}"
    # the gear lever's value table reaches VSS as the selected gear's enumeration: park, then drive
    source = CanLogSource(files.log, load_can_mapping(files.mapping))
    gear = np.concatenate([b.signals[SELECTED_GEAR] for b in source if SELECTED_GEAR in b.signals])
    gear = gear[~np.isnan(gear)]
    assert gear[0] == 126.0 and set(np.unique(gear)) == {126.0, 127.0}, where


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli_main(["sim", "sensors", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_writes_the_files_prints_json_and_the_seed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(
        capsys, "--profile", "vehicle-bus", "--rate", "25", "--minutes", "2", "--seed", "77",
        "--out", str(tmp_path), "--candump", "--dbc-out", str(tmp_path / "bus.dbc"), "--json",
    )  # fmt: skip
    assert code == 0, err[-2000:]
    assert "seed 77" in err
    report = json.loads(out)  # stdout is that one document and nothing else
    assert (report["seed"], report["profile"], report["rate_hz"]) == (77, "vehicle-bus", 25.0)
    assert report["dbc"] == str(tmp_path / "bus.dbc")
    for key in ("csv", "mapping", "labels_file", "candump", "dbc", "can_mapping"):
        assert Path(report[key]).is_file(), key
    labels = json.loads(Path(report["labels_file"]).read_text())
    assert len(labels["labels"]) == report["labels"]
    # an unseeded run draws a seed and says which
    code, out, err = _cli(capsys, "--minutes", "1", "--out", str(tmp_path / "calm"), "--calm-only", "--json")
    assert code == 0, err[-2000:]
    drawn = json.loads(out)["seed"]
    assert f"seed {drawn}" in err and json.loads(out)["labels"] == 0
    code, out, err = _cli(capsys, "--profile", "phone", "--out", str(tmp_path / "x"), "--candump", "--json")
    assert (code, out) == (2, ""), out
    assert "needs --profile vehicle-bus" in err
