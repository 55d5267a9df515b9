"""Replaying recorded files: mapping, units, time bases, quality reports, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from edge_agent import signals as vss
from edge_agent.offline import run_offline
from edge_agent.sources.mapping import MappingError, load_mapping
from edge_agent.sources.quality import QualityMonitor
from edge_agent.sources.replay import ReplayError, ReplaySource
from edge_agent.sources.timebase import TimeBase, TimeFormat, detect

MAPPING = """
[time]
column = "{time}"
format = "{fmt}"

[signals."Vehicle.Speed"]
column = "speed_mph"
unit = "mph"

[signals."Vehicle.Acceleration.Longitudinal"]
column = "ax_g"
unit = "g"

[signals."Vehicle.Cabin.HVAC.IsAirConditioningActive"]
column = "ac"
"""


def _recording(path: Path, stamps: list[str], time_col: str = "time") -> Path:
    """60 s at 10 Hz, 40 mph, a 0.5 g brake from 20.0 s to 21.4 s, A/C switched on at 30 s."""
    lines = [f"{time_col},speed_mph,ax_g,ac"]
    for i, stamp in enumerate(stamps):
        ax = -0.5 if 200 <= i < 215 else 0.0
        lines.append(f"{stamp},40,{ax},{'on' if i >= 300 else 'off'}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _mapping(tmp_path: Path, fmt: str = "auto", time_col: str = "time") -> Path:
    path = tmp_path / "mapping.toml"
    path.write_text(MAPPING.format(time=time_col, fmt=fmt))
    return path


T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
FORMATS = {
    "relative_s": ([f"{i / 10:.1f}" for i in range(600)], 20.0, 21.4),
    "relative_ms": ([str(i * 100) for i in range(600)], 20_000.0, 21_400.0),
    "epoch_s": (
        [f"{T0.timestamp() + i / 10:.1f}" for i in range(600)],
        T0.timestamp() + 20,
        T0.timestamp() + 21.4,
    ),
    "epoch_ms": ([str(int(T0.timestamp() * 1000) + i * 100) for i in range(600)], None, None),
    "iso8601": ([(T0 + timedelta(seconds=i / 10)).isoformat() for i in range(600)], None, None),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_events_come_back_in_the_files_own_time_base(tmp_path: Path, fmt: str) -> None:
    stamps, start, end = FORMATS[fmt]
    assert detect(stamps) is TimeFormat(fmt)
    source = ReplaySource(_recording(tmp_path / "r.csv", stamps), load_mapping(_mapping(tmp_path)))
    assert source.time_base is None
    result = run_offline(source, time_of=lambda t: source.time_base.from_epoch(t))  # type: ignore[union-attr]
    (brake,) = [e for e in result["events"] if e["kind"] == "harsh_brake"]
    assert brake["peak"] == pytest.approx(-0.5 * 9.80665, abs=1e-3)  # g converted to m/s^2
    # the conditioning's 0.5 s box rounds the pulse's edges: the threshold is crossed within 0.15 s of them
    if fmt == "epoch_ms":
        assert brake["start"] == pytest.approx(T0.timestamp() * 1000 + 20_000, abs=150)
        assert brake["end"] == pytest.approx(T0.timestamp() * 1000 + 21_400, abs=150)
    elif fmt == "relative_ms":
        assert brake["start"] == pytest.approx(start, abs=150) and brake["end"] == pytest.approx(end, abs=150)
    elif fmt == "iso8601":
        started = datetime.fromisoformat(brake["start"])
        assert abs((started - (T0 + timedelta(seconds=20))).total_seconds()) <= 0.15
    else:
        assert brake["start"] == pytest.approx(start, abs=0.15) and brake["end"] == pytest.approx(
            end, abs=0.15
        )
    (trip,) = result["trips"]
    assert trip["distance_km"] == pytest.approx(40 * 1.609344 * 59.9 / 3600, rel=1e-3)  # mph converted
    assert trip["feature_usage"] == {
        "Vehicle.Cabin.HVAC.IsAirConditioningActive": {"activations": 1, "active_s": 30.0}
    }
    assert source.report.samples == 600 and source.report.out_of_order == 0


def test_relative_time_with_a_start_is_absolute(tmp_path: Path) -> None:
    mapping = _mapping(tmp_path, fmt="relative_s")
    mapping.write_text(
        mapping.read_text().replace(
            'format = "relative_s"', 'format = "relative_s"\nstart = 2026-11-02T23:00:00+08:00'
        )
    )
    source = ReplaySource(_recording(tmp_path / "r.csv", FORMATS["relative_s"][0]), load_mapping(mapping))
    result = run_offline(source)
    assert source.time_base is not None and source.time_base.absolute
    assert result["trips"][0]["started_at"] == datetime(2026, 11, 2, 15, 0, tzinfo=UTC).timestamp()


def test_quality_problems_are_reported_not_passed_on(tmp_path: Path) -> None:
    stamps = [f"{i / 10:.1f}" for i in range(300)]
    stamps = stamps[:100] + stamps[150:]  # a 5 s gap
    stamps.insert(60, "2.0")  # out of order
    stamps.insert(80, stamps[79])  # duplicate
    path = _recording(tmp_path / "r.csv", stamps)
    text = path.read_text().splitlines()
    text[11] = text[11].replace(",40,", ",999,")  # implausible speed
    text[12] = text[12].replace(",40,", ",fast,")  # not a number
    path.write_text("\n".join(text) + "\n")
    source = ReplaySource(path, load_mapping(_mapping(tmp_path)))
    blocks = list(source)
    t = np.concatenate([b.t for b in blocks])
    assert np.all(np.diff(t) > 0)  # what is passed on is strictly in order
    report = source.report.as_dict()
    assert (report["rows"], report["samples"]) == (252, 250)
    assert (report["out_of_order"], report["duplicates"]) == (1, 1)
    assert report["out_of_range"] == {vss.SPEED: 1}
    assert report["unparsable"] == {"speed_mph": 1}
    assert report["gaps"] == [{"start": pytest.approx(43_200 + 9.9), "end": pytest.approx(43_200 + 15.0)}]
    speed = np.concatenate([b.signals[vss.SPEED] for b in blocks])
    # the two refused values are no samples: the detection grid interpolates over them, never through 999
    assert np.nanmax(speed) == pytest.approx(40 * 1.609344)
    assert not np.any((t > 9.9 + 43_200) & (t < 15.0 + 43_200))  # nothing invented in the 5 s gap


def test_events_from_accelerations_and_yaw_alone(tmp_path: Path) -> None:
    n = 600
    lines = ["t,ax,yaw"] + [
        f"{i / 10:.1f},{-4.0 if 100 <= i < 110 else 0.0},{35.0 if 300 <= i < 320 else 0.0}" for i in range(n)
    ]
    (tmp_path / "imu.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "m.toml").write_text(
        '[time]\ncolumn = "t"\n[signals."Vehicle.Acceleration.Longitudinal"]\ncolumn = "ax"\n'
        '[signals."Vehicle.AngularVelocity.Yaw"]\ncolumn = "yaw"\n'
    )
    source = ReplaySource(tmp_path / "imu.csv", load_mapping(tmp_path / "m.toml"))
    result = run_offline(source, time_of=lambda t: source.time_base.from_epoch(t))  # type: ignore[union-attr]
    # a -4.0 m/s^2 pulse just over the -3.4 threshold: the smoothed edge crosses it 0.2 s in
    assert [(e["kind"], e["start"]) for e in result["events"]] == [
        ("harsh_brake", pytest.approx(10.0, abs=0.25)),
        ("harsh_corner", pytest.approx(30.0, abs=0.25)),
    ]
    (trip,) = result["trips"]
    assert trip["distance_km"] == 0.0  # no speed: no distance, but the events are there


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 600
    times = [T0 + timedelta(seconds=i / 10) for i in range(n)]
    table = pa.table({
        "time": pa.array(times, type=pa.timestamp("ms", tz="UTC")),
        "speed_mph": pa.array([40.0] * n),
        "ax_g": pa.array([-0.5 if 200 <= i < 215 else 0.0 for i in range(n)]),
        "ac": pa.array([i >= 300 for i in range(n)]),
    })  # fmt: skip
    pq.write_table(table, tmp_path / "r.parquet")
    source = ReplaySource(tmp_path / "r.parquet", load_mapping(_mapping(tmp_path)), chunk_rows=128)
    result = run_offline(source, time_of=lambda t: source.time_base.from_epoch(t))  # type: ignore[union-attr]
    (brake,) = [e for e in result["events"] if e["kind"] == "harsh_brake"]
    assert abs(datetime.fromisoformat(brake["start"]) - (T0 + timedelta(seconds=20))).total_seconds() <= 0.15
    assert (
        result["trips"][0]["feature_usage"]["Vehicle.Cabin.HVAC.IsAirConditioningActive"]["activations"] == 1
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (
            '[time]\ncolumn = "t"\n[signals."Vehicle.Speed"]\ncolumn = "v"\nunit = "g"',
            "cannot convert from g",
        ),
        (
            '[time]\ncolumn = "t"\n[signals."Vehicle.Speed"]\ncolumn = "v"\nunit = "furlong"',
            "unknown unit 'furlong'",
        ),
        ('[time]\ncolumn = "t"\n[signals."speed"]\ncolumn = "v"', "not a VSS signal path"),
        ('[time]\ncolumn = "t"\n', "names no signals"),
        ('[signals."Vehicle.Speed"]\ncolumn = "v"', "time: Field required"),
        (
            '[time]\ncolumn = "t"\nstart = 2026-01-01T00:00:00\n[signals."Vehicle.Speed"]\ncolumn = "v"',
            "UTC offset",
        ),
        ("[time\n", "not valid TOML"),
        (
            '[time]\ncolumn = "t"\n[signals."Vehicle.Speed"]\ncolumn = "v"\n[processing]\n'
            'gyro_columns = ["a", "b", "c"]',
            "set calibrate_imu = true",
        ),
        (
            '[time]\ncolumn = "t"\n[signals."Vehicle.Speed"]\ncolumn = "v"\n[processing]\nprofile = "tablet"',
            "unknown sensor profile 'tablet'",
        ),
    ],
)
def test_bad_mappings_are_refused_with_the_reason(tmp_path: Path, text: str, fragment: str) -> None:
    (tmp_path / "m.toml").write_text(text)
    with pytest.raises(MappingError, match=fragment):
        load_mapping(tmp_path / "m.toml")


def test_missing_column_names_what_the_file_has(tmp_path: Path) -> None:
    path = _recording(tmp_path / "r.csv", FORMATS["relative_s"][0], time_col="timestamp")
    with pytest.raises(MappingError, match=r"no column 'time'; it has: timestamp, speed_mph, ax_g, ac"):
        list(ReplaySource(path, load_mapping(_mapping(tmp_path))))


def test_unreadable_timestamp_names_the_line(tmp_path: Path) -> None:
    stamps = [(T0 + timedelta(seconds=i)).isoformat() for i in range(10)]
    stamps[4] = "yesterday"
    path = _recording(tmp_path / "r.csv", stamps)
    with pytest.raises(ReplayError, match="row 4: 'yesterday' is not an ISO 8601 timestamp"):
        list(ReplaySource(path, load_mapping(_mapping(tmp_path, fmt="iso8601"))))


def test_monitor_counts_across_chunks() -> None:
    monitor = QualityMonitor(gap_s=1.0)
    monitor.check(np.array([1.0, 2.0, 3.0]), {})
    block = monitor.check(np.array([2.5, 3.0, 5.0]), {})
    assert list(block.t) == [5.0]
    r = monitor.report
    assert (r.out_of_order, r.duplicates, r.gaps_total) == (1, 1, 1)


def test_timebase_round_trip() -> None:
    base = TimeBase(TimeFormat.RELATIVE_MS)
    assert base.from_epoch(float(base.to_epoch(["1500"])[0])) == 1500.0
    assert not base.absolute


def test_replay_cli_json(tmp_path: Path) -> None:
    recording = _recording(tmp_path / "r.csv", FORMATS["relative_s"][0])
    cmd = [sys.executable, "-m", "edge_agent.cli", "replay", str(recording), "--mapping"]
    result = subprocess.run(
        [*cmd, str(_mapping(tmp_path)), "--json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["time_format"] == "relative_s" and document["absolute_time"] is False
    (brake,) = document["events"]
    assert brake["kind"] == "harsh_brake"
    assert (brake["start"], brake["end"]) == (pytest.approx(20.0, abs=0.15), pytest.approx(21.4, abs=0.15))
    assert document["trips"][0]["started_at"] == 0.0 and document["quality"]["rows"] == 600
    bad = subprocess.run([*cmd, str(tmp_path / "missing.toml")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "cannot read mapping" in bad.stderr
    # a phone's thresholds are lower: the same 0.5 g brake, and an unknown profile is refused by name
    phone = subprocess.run(
        [*cmd, str(_mapping(tmp_path)), "--json", "--profile", "phone"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert [e["kind"] for e in json.loads(phone.stdout)["events"]] == ["harsh_brake"]
    unknown = subprocess.run(
        [*cmd, str(_mapping(tmp_path)), "--profile", "watch"], capture_output=True, text=True, timeout=60
    )
    assert unknown.returncode == 2 and "unknown sensor profile 'watch'" in unknown.stderr


@pytest.mark.parametrize("gyro", [True, False], ids=["gyro", "speed-only"])
def test_a_phone_recording_replays_with_its_mappings_profile_and_brakes_read_as_brakes(
    tmp_path: Path, gyro: bool
) -> None:
    """A phone's high-passed acceleration and its GPS speed a second late once made the mount calibration
    point forward backwards (every brake reported as an acceleration). The mapping names the gyroscope and
    the profile; without the gyroscope the speed decides the sign at its best lag."""
    from simulators.sensors import SensorProfile, render, simulate_truth

    seed = 41  # not a seed the thresholds were chosen on (1000-1023)
    recording = render(simulate_truth(seed, minutes=8), SensorProfile.PHONE, 25.0, seed)
    csv_path, mapping_path = recording.write_csv(tmp_path)
    if not gyro:
        mapping_path.write_text("".join(line for line in mapping_path.open() if "gyro" not in line))
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "replay", str(csv_path), "--mapping", str(mapping_path),
         "--json"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["profile"] == "phone"
    events = [(e["kind"], e["start"], e["end"]) for e in document["events"]]
    wanted = {"harsh_brake": "harsh_brake", "harsh_accel": "harsh_accel"}
    longitudinal = [label for label in recording.labels if label.kind in wanted]
    assert len(longitudinal) >= 3, recording.describe()
    for label in longitudinal:
        kinds = {k for k, start, end in events if start <= label.end + 1 and end >= label.start - 1}
        assert wanted[label.kind] in kinds, f"{recording.describe()}: {label} found as {kinds or 'nothing'}"
