"""Recorded CAN logs (candump .log, Vector .asc and .blf) replayed through DBC -> VSS mappings."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import can
import cantools
import numpy as np
import pytest

from edge_agent import signals as vss
from edge_agent.cli import configured_source
from edge_agent.config import EdgeSettings
from edge_agent.sources.can import CanLogSource, load_can_mapping

T0 = 1793577600.0  # 2026-11-02T00:00:00Z

HEADER = 'VERSION ""\nNS_ :\nBS_:\nBU_: ESC TBOX\n'
POWERTRAIN_DBC = (
    HEADER
    + """BO_ 256 ESC_Speed: 8 ESC
 SG_ VehSpd : 0|16@1+ (0.01,0) [0|655.35] "kph" TBOX
"""
)

CHASSIS_DBC = HEADER + 'BO_ 512 ESC_Accel: 8 ESC\n SG_ LongAccel : 0|16@1- (0.001,0) [-33|33] "m/s2" X\n'

MAPPING = """
dbc = ["powertrain.dbc", "chassis.dbc"]
[signals."Vehicle.Speed"]
message = "ESC_Speed"
signal = "VehSpd"
[signals."Vehicle.Acceleration.Longitudinal"]
message = "ESC_Accel"
signal = "LongAccel"
"""


def _setup(tmp_path: Path, suffix: str) -> tuple[Path, Path]:
    """Two DBCs, a mapping naming both, and a 60 s log: 60 km/h, a -5 m/s^2 brake from 20.0 s to 21.5 s."""
    (tmp_path / "powertrain.dbc").write_text(POWERTRAIN_DBC)
    (tmp_path / "chassis.dbc").write_text(CHASSIS_DBC)
    (tmp_path / "map.toml").write_text(MAPPING)
    db = cantools.database.can.Database()
    db.add_dbc_string(POWERTRAIN_DBC)
    db.add_dbc_string(CHASSIS_DBC)
    speed, accel = db.get_message_by_name("ESC_Speed"), db.get_message_by_name("ESC_Accel")
    log = tmp_path / f"drive.{suffix}"
    with can.Logger(log) as writer:
        for i in range(600):
            t = T0 + i / 10
            ax = -5.0 if 200 <= i < 215 else 0.0
            frames = ((0.0, speed, {"VehSpd": 60.0}), (0.004, accel, {"LongAccel": ax}))
            for offset, message, values in frames:
                writer.on_message_received(
                    can.Message(
                        timestamp=t + offset,
                        arbitration_id=message.frame_id,
                        is_extended_id=False,
                        data=message.encode(values),
                        channel=0,
                    )
                )
        # an error frame is counted, never decoded
        writer.on_message_received(can.Message(timestamp=T0 + 60, is_error_frame=True, channel=0))
    return log, tmp_path / "map.toml"


def _replay(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edge_agent.cli", "replay", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("suffix", ["log", "asc", "blf", "trc"])
def test_replay_a_can_log_at_its_own_timestamps(tmp_path: Path, suffix: str) -> None:
    log, mapping = _setup(tmp_path, suffix)
    result = _replay(str(log), "--mapping", str(mapping), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["time_format"] == "epoch_s" and document["absolute_time"] is True
    (brake,) = [e for e in document["events"] if e["kind"] == "harsh_brake"]
    assert brake["start"] == pytest.approx(T0 + 20.0, abs=0.15)
    assert brake["end"] == pytest.approx(T0 + 21.4, abs=0.15)
    assert brake["peak"] == pytest.approx(-5.0, abs=0.01)
    (trip,) = document["trips"]
    assert trip["started_at"] == pytest.approx(T0, abs=0.01)
    assert trip["distance_km"] == pytest.approx(60 * 59.9 / 3600, rel=0.01)  # kph read as km/h
    quality = document["quality"]
    errors = {} if suffix == "trc" else {"error_or_remote_frame": 1}  # python-can's TRC writer drops them
    assert quality["rows"] == 1200 and quality["unparsable"] == errors


def test_dbc_flags_replace_the_mappings_own(tmp_path: Path) -> None:
    log, mapping = _setup(tmp_path, "log")
    mapping.write_text(MAPPING.replace('["powertrain.dbc", "chassis.dbc"]', '"gone.dbc"'))
    assert "cannot load DBC" in _replay(str(log), "--mapping", str(mapping)).stderr
    dbcs = ["--dbc", str(tmp_path / "powertrain.dbc"), "--dbc", str(tmp_path / "chassis.dbc")]
    result = _replay(str(log), "--mapping", str(mapping), *dbcs, "--json")
    assert result.returncode == 0, result.stderr
    assert [e["kind"] for e in json.loads(result.stdout)["events"]] == ["harsh_brake"]
    (tmp_path / "r.csv").write_text("t,v\n0,1\n")
    table = _replay(str(tmp_path / "r.csv"), "--mapping", str(mapping), *dbcs)
    assert table.returncode == 2 and "--dbc is for a CAN log" in table.stderr


def test_run_source_can_reads_a_file_instead_of_the_bus(tmp_path: Path) -> None:
    log, mapping = _setup(tmp_path, "blf")
    settings = EdgeSettings(source="can", source_file=log, mapping_file=mapping)
    source = configured_source(settings, threading.Event())
    assert isinstance(source, CanLogSource)
    blocks = list(source)
    t = np.concatenate([b.t for b in blocks])
    assert t[0] == pytest.approx(T0) and t[-1] == pytest.approx(T0 + 59.904)  # the recording's own time
    speed = np.concatenate([b.signals[vss.SPEED] for b in blocks])
    assert np.nanmax(np.abs(speed - 60.0)) < 0.01


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"source": "obd", "source_file": "x.log"}, "source obd does not use --file"),
        ({"source": "replay", "source_file": "x.csv", "dbc_files": ["a.dbc"]}, "does not use --dbc"),
        ({"source": "can", "source_file": "x.log", "can_channel": "vcan0"}, "does not use --can-channel"),
        ({"source": "can", "obd_port": "/dev/ttyUSB0"}, "source can does not use --obd-port"),
    ],
)
def test_an_option_the_source_ignores_is_an_error(settings: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        configured_source(EdgeSettings(**settings), threading.Event())  # type: ignore[arg-type]


def test_an_option_the_source_ignores_is_an_error_on_the_command_line(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "edge_agent.cli", "run", "--vehicle-id", "VIN1"]
    cmd += ["--state-dir", str(tmp_path), "--source", "obd", "--file", "x.log"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "source obd does not use --file" in result.stderr


def test_a_corrupt_log_is_an_error_with_the_file(tmp_path: Path) -> None:
    _, mapping = _setup(tmp_path, "log")
    (tmp_path / "bad.blf").write_bytes(b"not a blf file at all")
    with pytest.raises(ValueError, match=r"bad\.blf"):
        list(CanLogSource(tmp_path / "bad.blf", load_can_mapping(mapping)))


# What published DBCs look like: an overlap, a 29-bit id without its extended flag, a name starting with a
# digit, an unterminated comment, a value table for a signal that does not exist.
MESSY_DBC = (
    POWERTRAIN_DBC
    + """
BO_ 768 EMS2: 8 ESC
 SG_ CAN_VERS : 0|6@1+ (1,0) [0|63] "" TBOX
 SG_ TQ_STND : 4|8@1+ (1,0) [0|255] "Nm" TBOX

BO_ 275971072 DriverDoorStatus: 1 ESC
 SG_ DriverDoorOpened : 0|1@1+ (1,0) [0|1] "" TBOX

BO_ 1073741824 VECTOR__INDEPENDENT_SIG_MSG: 0 Vector__XXX
 SG_ Orphan : 0|8@1+ (1,0) [0|255] "" TBOX

BO_ 1275 2017_5: 8 ESC
 SG_ counter : 4|5@0+ (1,0) [0|31] "" TBOX

CM_ "Front target"
BO_ 1664 CLUSTER_F: 8 ESC
 SG_ LONG_DIST : 7|13@1+ (0.03,0) [0|245] "m" TBOX

VAL_ 256 VehSpdQual 0 "Valid" 1 "Invalid" ;
CM_ BO_ 275971072 "a 29-bit id, written without its extended flag";
BA_DEF_ BO_ "GenMsgCycleTime" INT 0 65535;
BA_ "GenMsgCycleTime" BO_ 275971072 100;
VAL_ 275971072 DriverDoorOpened 0 "closed" 1 "open" ;
"""
)


def test_a_lenient_dbc_load_reports_what_it_skipped(tmp_path: Path) -> None:
    log, mapping = _setup(tmp_path, "log")
    (tmp_path / "powertrain.dbc").write_text(MESSY_DBC)
    with pytest.raises(ValueError, match=r"cannot load DBC .*powertrain\.dbc.*strict = false"):
        load_can_mapping(mapping)  # strict stays the default
    mapping.write_text("strict = false\n" + MAPPING)
    loaded = load_can_mapping(mapping)
    assert sorted(w.split(": ", 1)[1] for w in loaded.warnings) == [
        "kept message EMS2 as is: The signals TQ_STND and CAN_VERS are overlapping in message EMS2.",
        "read 1 messages with ids wider than 11 bits as extended (29-bit) ids, their flag (bit 31) missing:"
        " DriverDoorStatus 0x1072fc00",
        "skipped line 18: 'BO_ 1275 2017_5: 8 ESC' (syntax)",
        "skipped line 21: 'CM_ \"Front target\"' (syntax)",
        "skipped message VECTOR__INDEPENDENT_SIG_MSG: frame id 0x40000000 is neither a standard (11-bit)"
        " nor an extended (29-bit) id",
        "skipped value table VAL_ 256 VehSpdQual: no such signal",
    ]
    names = {m.name for m in loaded.database.messages}
    assert names == {"ESC_Speed", "EMS2", "CLUSTER_F", "ESC_Accel", "DriverDoorStatus"}
    door = loaded.database.get_message_by_name("DriverDoorStatus")
    assert door.is_extended_frame and door.frame_id == 0x1072FC00 and door.cycle_time == 100
    assert door.comment == "a 29-bit id, written without its extended flag"
    assert door.signals[0].choices == {0: "closed", 1: "open"}  # its value table still names it
    result = _replay(str(log), "--mapping", str(mapping), "--json")
    assert result.returncode == 0, result.stderr
    assert "lenient DBC load: 6 problems" in result.stderr
    document = json.loads(result.stdout)
    assert len(document["quality"]["warnings"]) == 6
    assert [e["kind"] for e in document["events"]] == ["harsh_brake"]  # the good messages still decode


def test_a_29_bit_message_of_a_lenient_dbc_decodes_from_an_extended_frame(tmp_path: Path) -> None:
    (tmp_path / "door.dbc").write_text(MESSY_DBC)
    mapping = 'dbc = "door.dbc"\nstrict = false\n[signals."Vehicle.Cabin.Door.Row1.DriverSide.IsOpen"]\n'
    (tmp_path / "m.toml").write_text(mapping + 'message = "DriverDoorStatus"\nsignal = "DriverDoorOpened"\n')
    log = tmp_path / "door.log"  # candump writes a 29-bit id with 8 digits: an extended frame
    log.write_text(f"({T0:.6f}) can0 1072FC00#01\n({T0 + 1:.6f}) can0 1072FC00#00\n")
    source = CanLogSource(log, load_can_mapping(tmp_path / "m.toml"))
    (block,) = list(source)
    assert block.signals["Vehicle.Cabin.Door.Row1.DriverSide.IsOpen"].tolist() == [1.0, 0.0]


UNITS_DBC = (
    HEADER
    + """BO_ 300 Powertrain: 8 ESC
 SG_ Gear : 0|8@1+ (1,0) [0|255] "" TBOX
 SG_ Torque : 8|16@1- (0.5,0) [-16384|16383] "Nm" TBOX
 SG_ TirePress : 24|16@1+ (0.01,0) [0|655] "Bar" TBOX
 SG_ SteerAngle : 40|16@1- (0.1,0) [-3276|3276] "Deg" TBOX
 SG_ SpeedMph : 56|8@1+ (1,0) [0|255] "MPH" TBOX
VAL_ 300 Gear 0 "PARK" 8 "REVERSE" 16 "NEUTRAL" 32 "DRIVE" 33 "DRIVE" 255 "INVALID" ;
"""
)

UNITS_MAPPING = """
dbc = "units.dbc"
[signals."Vehicle.Powertrain.Transmission.SelectedGear"]
message = "Powertrain"
signal = "Gear"
choices = { PARK = "P", REVERSE = "R", NEUTRAL = "N", DRIVE = "D" }
[signals."Vehicle.Powertrain.CombustionEngine.Torque"]
message = "Powertrain"
signal = "Torque"
[signals."Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"]
message = "Powertrain"
signal = "TirePress"
[signals."Vehicle.Chassis.SteeringWheel.Angle"]
message = "Powertrain"
signal = "SteerAngle"
[signals."Vehicle.Speed"]
message = "Powertrain"
signal = "SpeedMph"
"""


def test_value_tables_and_dbc_units_reach_vss(tmp_path: Path) -> None:
    (tmp_path / "units.dbc").write_text(UNITS_DBC)
    (tmp_path / "m.toml").write_text(UNITS_MAPPING.replace('"Torque"', '"Torque"\nunit = "Unit_NewtoMeter"'))
    db = cantools.database.load_string(UNITS_DBC)
    message = db.get_message_by_name("Powertrain")
    values = {"Torque": 250.5, "TirePress": 2.35, "SteerAngle": -90.5, "SpeedMph": 50}
    with can.Logger(tmp_path / "d.log") as writer:
        for i, gear in enumerate([32, 0, 255, 8, 33]):  # raws; 32 and 33 are both "DRIVE" (as in mazda's)
            data = message.encode({**values, "Gear": gear})
            frame = can.Message(timestamp=T0 + i, arbitration_id=300, data=data, channel=0)
            writer.on_message_received(frame)
    source = CanLogSource(tmp_path / "d.log", load_can_mapping(tmp_path / "m.toml"))
    (block,) = list(source)
    s = block.signals
    gear = s["Vehicle.Powertrain.Transmission.SelectedGear"]
    assert gear[[0, 1, 3, 4]].tolist() == [127.0, 126.0, -1.0, 127.0] and np.isnan(gear[2])  # 127 D, 126 P
    assert source.report.unparsable == {"unmapped_value_Gear": 1}
    assert s["Vehicle.Powertrain.CombustionEngine.Torque"][0] == pytest.approx(250.5)  # Nm
    assert s["Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"][0] == pytest.approx(235.0)  # Bar -> kPa
    assert s["Vehicle.Chassis.SteeringWheel.Angle"][0] == pytest.approx(-90.5)  # Deg
    assert s[vss.SPEED][0] == pytest.approx(50 * 1.609344)  # MPH -> km/h


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (('"MPH"', '"furlong/fortnight"'), r"Vehicle\.Speed from Powertrain\.SpeedMph: unknown unit"),
        (('"MPH"', '""'), r"the DBC gives no unit and Vehicle\.Speed is in km/h; set unit"),
        (('"Bar"', '"Nm"'), "cannot convert from Nm"),
        (('DRIVE = "D"', 'DRIVE = "S"'), "'S' is not a VSS value of .*SelectedGear; known: P, R, N, D"),
        (('DRIVE = "D"', 'Drive = "D"'), "no value 'Drive' in its value table; it has: PARK, REVERSE"),
        (("VAL_ 300 Gear", "VAL_ 300 Torque"), "choices given, but the DBC has no value table"),
    ],
)
def test_units_and_value_tables_that_do_not_fit_are_refused(
    tmp_path: Path, change: tuple[str, str], fragment: str
) -> None:
    (tmp_path / "units.dbc").write_text(UNITS_DBC.replace(*change))
    (tmp_path / "m.toml").write_text(UNITS_MAPPING.replace(*change))
    with pytest.raises(ValueError, match=fragment):
        load_can_mapping(tmp_path / "m.toml")


COMPOSITE_DBC = (
    HEADER
    + """BO_ 400 SAS: 4 ESC
 SG_ AngleMag : 0|15@1+ (0.1,0) [0|3276.7] "deg" TBOX
 SG_ AngleSign : 15|1@1+ (1,0) [0|1] "" TBOX
 SG_ SpdCoarse : 16|8@1+ (1,0) [0|255] "km/h" TBOX
 SG_ SpdFine : 24|4@1+ (0.0625,0) [0|0.9375] "km/h" TBOX
 SG_ Count : 28|4@1+ (1,0) [0|15] "" TBOX
"""
)

COMPOSITE_MAPPING = """
dbc = "sas.dbc"
[signals."Vehicle.Chassis.SteeringWheel.Angle"]
message = "SAS"
value = "-AngleMag if AngleSign else AngleMag"
[signals."Vehicle.Speed"]
message = "SAS"
value = "SpdCoarse + SpdFine"
[signals."Vehicle.Powertrain.CombustionEngine.Torque"]
message = "SAS"
value = "100 / Count"
unit = "Nm"
"""


def test_composite_signals_by_a_safe_expression(tmp_path: Path) -> None:
    (tmp_path / "sas.dbc").write_text(COMPOSITE_DBC)
    (tmp_path / "m.toml").write_text(COMPOSITE_MAPPING)
    message = cantools.database.load_string(COMPOSITE_DBC).get_message_by_name("SAS")
    parts = [(12.5, 1, 50, 0.25, 4), (7.0, 0, 3, 0.5, 0)]
    with can.Logger(tmp_path / "d.asc") as writer:
        for i, (mag, sign, coarse, fine, count) in enumerate(parts):
            values = {
                "AngleMag": mag,
                "AngleSign": sign,
                "SpdCoarse": coarse,
                "SpdFine": fine,
                "Count": count,
            }
            frame = can.Message(timestamp=T0 + i, arbitration_id=400, data=message.encode(values), channel=0)
            writer.on_message_received(frame)
    source = CanLogSource(tmp_path / "d.asc", load_can_mapping(tmp_path / "m.toml"))
    (block,) = list(source)
    assert block.signals["Vehicle.Chassis.SteeringWheel.Angle"].tolist() == [-12.5, 7.0]
    assert block.signals[vss.SPEED].tolist() == [50.25, 3.5]
    torque = block.signals["Vehicle.Powertrain.CombustionEngine.Torque"]
    assert torque[0] == 25.0 and np.isnan(torque[1])  # 100 / 0: no sample, counted
    assert source.report.unparsable == {"no_value_Vehicle.Powertrain.CombustionEngine.Torque": 1}


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('__import__(\\"os\\").system(\\"true\\")', "is not allowed"),
        ("AngleMag ** 2", r"'AngleMag \*\* 2' is not allowed"),
        ("AngleMag.real", "is not allowed"),
        ("Nope * 2", "no signal 'Nope' in the message; it has: AngleMag, AngleSign"),
        ("AngleMag +", "is not an expression"),
        ("AngleMag + SpdFine", "its signals are in deg, km/h; set unit"),
    ],
)
def test_expressions_outside_the_safe_subset_are_refused(tmp_path: Path, value: str, fragment: str) -> None:
    (tmp_path / "sas.dbc").write_text(COMPOSITE_DBC)
    mapping = COMPOSITE_MAPPING.replace('"-AngleMag if AngleSign else AngleMag"', f'"{value}"')
    (tmp_path / "m.toml").write_text(mapping)
    with pytest.raises(ValueError, match=fragment):
        load_can_mapping(tmp_path / "m.toml")


def test_a_candump_log_with_mangled_lines_still_replays(tmp_path: Path) -> None:
    # a real recording passed through a spreadsheet: a payload turned into a number, one cut short
    log, mapping = _setup(tmp_path, "log")
    lines = log.read_text().splitlines()
    lines.insert(100, f"({T0 + 5:.6f}) can0 100#5.90E+90")
    lines.insert(200, "# a logger's comment")
    lines.insert(300, f"({T0 + 15:.6f}) can0 100#ABC")
    lines.insert(400, "garbage")
    log.write_text("\n".join(lines) + "\n")
    source = CanLogSource(log, load_can_mapping(mapping))
    speed = np.concatenate([b.signals[vss.SPEED] for b in source])
    assert np.nanmax(np.abs(speed - 60.0)) < 0.01 and np.isfinite(speed).sum() == 600  # all good frames
    assert source.report.unparsable == {"error_or_remote_frame": 1, "malformed_line": 3}
    (warning,) = source.report.warnings
    assert warning.startswith("drive.log: skipped 3 lines that are not candump frames (line 101: '(")
    assert "5.90E+90" in warning and "line 401: 'garbage'" in warning
    result = _replay(str(log), "--mapping", str(mapping), "--json")
    assert result.returncode == 0, result.stderr
    assert [e["kind"] for e in json.loads(result.stdout)["events"]] == ["harsh_brake"]


def test_candump_frames_fd_remote_error_and_extended() -> None:
    from edge_agent.sources.can import _candump_frame

    fd = _candump_frame("(1.5) can1 1F334455##3" + "11" * 12 + " R")
    assert (fd.is_fd, fd.arbitration_id, fd.is_extended_id, fd.data, fd.channel) == (
        True,
        0x1F334455,
        True,
        b"\x11" * 12,
        "can1",
    )
    assert _candump_frame("(2.0) vcan0 123#R").is_remote_frame
    assert _candump_frame("(2.0) vcan0 20000080#0000000000000000").is_error_frame
    assert _candump_frame("(2.0) can0 0B4#").data == b""
    for bad in ["(2.0) can0 800#00", "(2.0) can0 123#0", "(x) can0 123#00", "(2.0) can0 123#" + "00" * 9]:
        with pytest.raises(ValueError):
            _candump_frame(bad)


# Two buses recorded together, one frame id on each with another meaning (as Toyota's brake module on the
# car's bus and its radar's tracks on the radar bus, both 0x224), each bus with its own DBC
BRAKE_DBC = HEADER + 'BO_ 548 BRAKE_MODULE: 8 ESC\n SG_ BRAKE_PRESSURE : 0|16@1+ (0.1,0) [0|6553] "bar" X\n'
RADAR_DBC = HEADER + 'BO_ 548 TRACK_B_4: 8 ESC\n SG_ LONG_DIST : 0|16@1+ (0.01,0) [0|655] "" X\n'
BUS_MAPPING = """
dbc = ["brake.dbc", "radar.dbc"]
channel = "can0"
[signals."Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"]
message = "BRAKE_MODULE"
signal = "BRAKE_PRESSURE"
[signals."Vehicle.Private.Radar.Track4.Distance"]
message = "TRACK_B_4"
signal = "LONG_DIST"
channel = 1
"""


@pytest.mark.parametrize("suffix", ["log", "asc", "blf", "trc"])
def test_a_mapping_reads_each_signal_from_its_own_bus(tmp_path: Path, suffix: str) -> None:
    (tmp_path / "brake.dbc").write_text(BRAKE_DBC)
    (tmp_path / "radar.dbc").write_text(RADAR_DBC)
    # one mapping for every format: channel numbers count from 0 (ASC and BLF files write 1 for it)
    mapping = BUS_MAPPING if suffix == "log" else BUS_MAPPING.replace('channel = "can0"', "channel = 0")
    (tmp_path / "m.toml").write_text(mapping)
    log = tmp_path / f"two_buses.{suffix}"
    with can.Logger(log) as writer:
        for i in range(10):
            for channel, raw in ((0, 1200 + i), (1, 4000 + i)):  # 120.x bar on bus 0; 40.x m on bus 1
                frame = can.Message(
                    timestamp=T0 + i + channel * 0.01,
                    arbitration_id=548,
                    is_extended_id=False,
                    data=raw.to_bytes(2, "little") + bytes(6),
                    channel=f"can{channel}" if suffix == "log" else channel,
                )
                writer.on_message_received(frame)
    source = CanLogSource(log, load_can_mapping(tmp_path / "m.toml"))
    (block,) = list(source)
    pressure = block.signals["Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"]
    distance = block.signals["Vehicle.Private.Radar.Track4.Distance"]
    # bar -> kPa from bus 0 only; the distance from bus 1 only, decoded with the radar's DBC, not the brake's
    assert np.nanmin(pressure) == pytest.approx(12000.0) and np.nanmax(pressure) == pytest.approx(12090.0)
    assert np.nanmin(distance) == pytest.approx(40.0) and np.nanmax(distance) == pytest.approx(40.09)
    assert np.isfinite(pressure).sum() == 10 and np.isfinite(distance).sum() == 10
    assert source.stats.as_dict()["per_message"] == {"BRAKE_MODULE": 10, "TRACK_B_4": 10}
    assert source.report.warnings == []


def test_a_mapped_message_the_recording_never_carries_is_warned_about(tmp_path: Path) -> None:
    log, mapping = _setup(tmp_path, "log")
    text = MAPPING.replace('signal = "LongAccel"', 'signal = "LongAccel"\nchannel = "can1"')
    mapping.write_text(text)
    source = CanLogSource(log, load_can_mapping(mapping))
    blocks = list(source)
    accel = np.concatenate([b.signals[vss.ACCEL_LONGITUDINAL] for b in blocks])
    assert np.isnan(accel).all()  # the log has can0 only
    assert source.report.warnings == [
        "mapped message ESC_Accel (0x200) never seen on channel can1 in 1201 frames"
    ]
    assert source.stats.other_channel == 600 and source.stats.decoded == 600


# The example mapping for opendbc's Toyota DBC, against a DBC written here with the same message and
# signal names (not opendbc's layout): it must load, read only bus 0, and turn Toyota's signs into VSS's
TOYOTA_NAMES_DBC = (
    HEADER
    + """BO_ 36 KINEMATICS: 8 ESC
 SG_ ACCEL_X : 0|16@1- (0.01,0) [-50|50] "m/s^2" X
 SG_ ACCEL_Y : 16|16@1- (0.01,0) [-50|50] "m/s^2" X
 SG_ YAW_RATE : 32|16@1- (0.01,0) [-300|300] "deg/s" X
BO_ 37 STEER_ANGLE_SENSOR: 8 ESC
 SG_ STEER_ANGLE : 0|16@1- (1.5,0) [-500|500] "deg" X
 SG_ STEER_FRACTION : 16|8@1- (0.1,0) [-0.7|0.7] "deg" X
BO_ 170 WHEEL_SPEEDS: 8 ESC
 SG_ WHEEL_SPEED_FR : 0|16@1+ (0.01,-67.67) [0|250] "km/h" X
 SG_ WHEEL_SPEED_FL : 16|16@1+ (0.01,-67.67) [0|250] "km/h" X
 SG_ WHEEL_SPEED_RR : 32|16@1+ (0.01,-67.67) [0|250] "km/h" X
 SG_ WHEEL_SPEED_RL : 48|16@1+ (0.01,-67.67) [0|250] "km/h" X
BO_ 452 ENGINE_RPM: 8 ESC
 SG_ RPM : 0|16@1- (0.78125,0) [0|0] "rpm" X
BO_ 956 GEAR_PACKET: 8 ESC
 SG_ GEAR : 0|6@1+ (1,0) [0|63] "" X
VAL_ 956 GEAR 0 "D" 1 "S" 8 "N" 16 "R" 32 "P";
"""
)


def test_the_example_toyota_mapping_loads_and_reads_vss_signs(tmp_path: Path) -> None:
    example = Path(__file__).parents[1] / "edge_agent" / "examples" / "can" / "toyota_rav4_2017.toml"
    (tmp_path / "toyota.dbc").write_text(TOYOTA_NAMES_DBC)
    mapping = load_can_mapping(example, [tmp_path / "toyota.dbc"])
    db = cantools.database.load_string(TOYOTA_NAMES_DBC)
    frames = [
        ("KINEMATICS", {"ACCEL_X": 3.0, "ACCEL_Y": 1.5, "YAW_RATE": 4.0}),  # Toyota: braking, right
        ("STEER_ANGLE_SENSOR", {"STEER_ANGLE": 15.0, "STEER_FRACTION": 0.3}),
        (
            "WHEEL_SPEEDS",
            {"WHEEL_SPEED_FR": 50.5, "WHEEL_SPEED_FL": 49.5, "WHEEL_SPEED_RR": 50.0, "WHEEL_SPEED_RL": 50.0},
        ),
        ("ENGINE_RPM", {"RPM": 1500.0}),
        ("GEAR_PACKET", {"GEAR": 32}),
    ]
    with can.Logger(tmp_path / "d.log") as writer:
        for bus in (0, 1):  # bus 1 carries the same ids with other content (radar), to be left alone
            for i, (name, values) in enumerate(frames):
                message = db.get_message_by_name(name)
                data = message.encode(values) if bus == 0 else bytes([0x7F] * 8)
                writer.on_message_received(
                    can.Message(timestamp=T0 + bus * 0.5 + i * 0.01, arbitration_id=message.frame_id,
                                data=data, is_extended_id=False, channel=f"can{bus}")
                )  # fmt: skip
    source = CanLogSource(tmp_path / "d.log", mapping)
    (block,) = list(source)
    got = {name: float(np.nanmax(values)) for name, values in block.signals.items()}
    assert got == pytest.approx(
        {
            vss.ACCEL_LONGITUDINAL: -3.0,  # braking is negative in VSS
            vss.ACCEL_LATERAL: -1.5,  # to the right is negative (ISO 8855: y to the left)
            vss.YAW_RATE: 4.0,
            "Vehicle.Chassis.SteeringWheel.Angle": 15.3,
            vss.SPEED: 50.0,
            "Vehicle.Powertrain.CombustionEngine.Speed": 1500.0,
            "Vehicle.Powertrain.Transmission.SelectedGear": 126.0,  # P
        }
    )
    assert all(np.isfinite(v).sum() == 1 for v in block.signals.values())  # bus 1 never decoded
    assert source.stats.other_channel == 5


# Real cars send some frames shorter than the published DBC says (Hyundai's 5-byte steering angle frame,
# 8 bytes in opendbc's DBC); a multiplexed message with a selector the DBC does not list cannot decode
SHORT_DBC = (
    HEADER
    + """BO_ 688 SAS1: 8 ESC
 SG_ SAS_Angle : 0|16@1- (0.1,0) [-3276.8|3276.7] "Deg" X
 SG_ SAS_Stat : 24|8@1+ (1,0) [0|255] "" X
 SG_ Tail : 48|8@1+ (1,0) [0|255] "" X
BO_ 300 MUXED: 8 ESC
 SG_ Sel M : 0|8@1+ (1,0) [0|255] "" X
 SG_ Speed0 m0 : 8|16@1+ (0.01,0) [0|655] "km/h" X
"""
)
SHORT_MAPPING = """
dbc = "short.dbc"
[signals."Vehicle.Chassis.SteeringWheel.Angle"]
message = "SAS1"
signal = "SAS_Angle"
[signals."Vehicle.Private.Sas.Tail"]
message = "SAS1"
signal = "Tail"
[signals."Vehicle.Speed"]
message = "MUXED"
signal = "Speed0"
"""


def test_frames_shorter_than_their_dbc_message_decode_what_they_carry(tmp_path: Path) -> None:
    (tmp_path / "short.dbc").write_text(SHORT_DBC)
    (tmp_path / "m.toml").write_text(SHORT_MAPPING)
    lines = [
        f"({T0:.6f}) can0 2B0#300000073700AA00",  # whole: 4.8 deg, tail 0xAA
        f"({T0 + 1:.6f}) can0 2B0#D0FF000737",  # 5 bytes, as sent: -4.8 deg; the tail is not there
        f"({T0 + 2:.6f}) can0 12C#0500100000000000",  # selector 5: not in the DBC
        f"({T0 + 3:.6f}) can0 2B0#30",  # 1 byte: carries none of the mapped signals
    ]
    (tmp_path / "d.log").write_text("\n".join(lines) + "\n")
    source = CanLogSource(tmp_path / "d.log", load_can_mapping(tmp_path / "m.toml"))
    (block,) = list(source)
    assert block.signals["Vehicle.Chassis.SteeringWheel.Angle"].tolist() == pytest.approx([4.8, -4.8])
    tail = block.signals["Vehicle.Private.Sas.Tail"]
    assert tail[0] == 0xAA and np.isnan(tail[1])
    assert source.report.unparsable == {
        "truncated_Vehicle.Private.Sas.Tail": 1,
        "undecodable_0x12c": 1,
        "undecodable_0x2b0": 1,
    }
    assert source.report.warnings == [
        "mapped message MUXED (0x12c): none of its 1 frames decodes with the DBC (undecodable_0x12c)"
    ]


def test_a_comparison_repairs_a_signed_signal_the_dbc_declares_unsigned(tmp_path: Path) -> None:
    # opendbc's Hyundai i30: SAS_Angle is 16 bits unsigned with a range of -3276.8..3276.7; left turns
    # arrive as 6553.6 - angle unless the mapping folds them back
    dbc = SHORT_DBC.replace("SAS_Angle : 0|16@1- (0.1,0)", "SAS_Angle : 0|16@1+ (0.1,0)")
    (tmp_path / "short.dbc").write_text(dbc)
    fold = "SAS_Angle - 6553.6 if SAS_Angle > 3276.7 else SAS_Angle"
    (tmp_path / "m.toml").write_text(SHORT_MAPPING.replace('signal = "SAS_Angle"', f'value = "{fold}"'))
    lines = [f"({T0:.6f}) can0 2B0#3000000737000000", f"({T0 + 1:.6f}) can0 2B0#D0FF000737000000"]
    (tmp_path / "d.log").write_text("\n".join(lines) + "\n")
    (block,) = list(CanLogSource(tmp_path / "d.log", load_can_mapping(tmp_path / "m.toml")))
    assert block.signals["Vehicle.Chassis.SteeringWheel.Angle"].tolist() == pytest.approx([4.8, -4.8])
    for bad in ["0 < SAS_Angle < 5", "SAS_Angle in 5", "SAS_Angle > 1 and SAS_Stat"]:
        (tmp_path / "m.toml").write_text(SHORT_MAPPING.replace('signal = "SAS_Angle"', f'value = "{bad}"'))
        with pytest.raises(ValueError, match="is not allowed"):
            load_can_mapping(tmp_path / "m.toml")


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_a_dbc_in_utf8_or_cp1252_keeps_its_degree_sign(tmp_path: Path, strict: bool, encoding: str) -> None:
    # opendbc writes UTF-8 ("°C" is C2 B0 in the file), Vector's tools cp1252 ("°C" is B0)
    dbc = HEADER + 'BO_ 400 TEMP: 2 ESC\n SG_ Coolant : 0|8@1+ (1,-40) [-40|215] "°C" X\n'
    (tmp_path / "t.dbc").write_bytes(dbc.encode(encoding))
    mapping = f'dbc = "t.dbc"\nstrict = {str(strict).lower()}\n[signals."Vehicle.Private.Engine.Coolant"]\n'
    (tmp_path / "m.toml").write_text(mapping + 'message = "TEMP"\nsignal = "Coolant"\n')
    loaded = load_can_mapping(tmp_path / "m.toml")
    assert loaded.database.get_message_by_name("TEMP").signals[0].unit == "°C"


@pytest.mark.parametrize(
    ("unit", "signal", "factor"),
    [
        ("km / h", vss.SPEED, 1.0),  # Cadillac
        ("Unit_MeterPerSecond", vss.SPEED, 3.6),  # Volkswagen MEB
        ("meters/sec", vss.SPEED, 3.6),
        ("Unit_DegreOfArcPerSecon", vss.YAW_RATE, 1.0),
        ("degrees/second", vss.YAW_RATE, 1.0),
        ("radians/sec", vss.YAW_RATE, 57.29577951308232),
        ("Unit_ForceOfGravi", vss.ACCEL_LONGITUDINAL, 9.80665),
        ("m/s**2", vss.ACCEL_LATERAL, 1.0),
        ("Unit_centiNewtoMeter", "Vehicle.Powertrain.CombustionEngine.Torque", 0.01),
        ("Unit_Bar", "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure", 100.0),
        ("MPa", "Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure", 1000.0),
        ("C", "Vehicle.Private.Radar.Temperature", 1.0),  # Ford's radar: a bare C is celsius
        ("Degrees C", "Vehicle.Private.Hvac.Evaporator", 1.0),
        ("Unit_Meter", "Vehicle.Private.Lane.Offset", 1e-3),  # distances reach VSS in km
        ("millimeter", "Vehicle.Private.Suspension.Height", 1e-6),
        ("Amps", "Vehicle.Private.Body.Current", 1.0),
        ("Unit_MilliAmper", "Vehicle.Private.Body.Current", 1e-3),
        ("r/min", "Vehicle.Powertrain.CombustionEngine.Speed", 1.0),
        ("Unit_None", "Vehicle.Powertrain.Transmission.CurrentGear", 1.0),
    ],
)
def test_unit_spellings_of_published_dbcs(unit: str, signal: str, factor: float) -> None:
    from edge_agent.sources.units import conversion

    assert conversion(unit, signal) == pytest.approx(factor)


def test_a_published_unit_of_the_wrong_quantity_is_still_refused() -> None:
    from edge_agent.sources.units import UnitError, conversion

    with pytest.raises(UnitError, match="cannot convert from Amps"):
        conversion("Amps", vss.SPEED)
    with pytest.raises(UnitError, match="unknown unit 'dBsm'"):
        conversion("dBsm", vss.SPEED)


# Hyundai's stability control at power-on: placeholders with the status bit set (-10.23 / +10.24 m/s^2)
STATUS_DBC = (
    HEADER
    + """BO_ 544 StabilityControl: 8 ESC
 SG_ LONG_ACCEL : 0|11@1+ (0.01,-10.23) [-10.23|10.24] "m/s^2" X
 SG_ LONG_ACCEL_STAT : 11|1@1+ (1,0) [0|1] "" X
 SG_ Angle : 16|16@1- (0.1,0) [-3276.8|3276.7] "Deg" X
"""
)
STATUS_MAPPING = """
dbc = "esc.dbc"
[signals."Vehicle.Acceleration.Longitudinal"]
message = "StabilityControl"
signal = "LONG_ACCEL"
valid = "LONG_ACCEL_STAT == 0"
[signals."Vehicle.Chassis.SteeringWheel.Angle"]
message = "StabilityControl"
value = "Angle"
valid = "Angle < 3276"
"""


def test_placeholders_a_sensor_sends_before_it_is_ready_are_no_samples(tmp_path: Path) -> None:
    (tmp_path / "esc.dbc").write_text(STATUS_DBC)
    (tmp_path / "m.toml").write_text(STATUS_MAPPING)
    message = cantools.database.load_string(STATUS_DBC).get_message_by_name("StabilityControl")
    rows = [(10.24, 1, 3276.7), (-10.23, 1, 3276.7), (0.7, 0, 3276.7), (-0.5, 0, 12.5)]
    with can.Logger(tmp_path / "d.log") as writer:
        for i, (accel, stat, angle) in enumerate(rows):
            data = message.encode({"LONG_ACCEL": accel, "LONG_ACCEL_STAT": stat, "Angle": angle})
            writer.on_message_received(
                can.Message(timestamp=T0 + i, arbitration_id=544, data=data, channel=0)
            )
    source = CanLogSource(tmp_path / "d.log", load_can_mapping(tmp_path / "m.toml"))
    (block,) = list(source)
    accel = block.signals[vss.ACCEL_LONGITUDINAL]
    assert np.isnan(accel[:2]).all() and accel[2:].tolist() == pytest.approx([0.7, -0.5])
    angle = block.signals["Vehicle.Chassis.SteeringWheel.Angle"]
    assert np.isnan(angle[:3]).all() and angle[3] == pytest.approx(12.5)
    assert source.report.unparsable == {
        "invalid_Vehicle.Acceleration.Longitudinal": 2,
        "invalid_Vehicle.Chassis.SteeringWheel.Angle": 3,
    }
    (tmp_path / "m.toml").write_text(STATUS_MAPPING.replace("LONG_ACCEL_STAT == 0", "STAT == 0"))
    with pytest.raises(ValueError, match=r"valid = 'STAT == 0': no signal 'STAT' in the message"):
        load_can_mapping(tmp_path / "m.toml")


def test_a_lenient_load_adds_the_bs_and_bu_statements_a_published_dbc_leaves_out(tmp_path: Path) -> None:
    # as projectgus' Kona EV DBCs: VERSION and NS_, then the messages straight away
    dbc = 'VERSION ""\n\nNS_ :\n  NS_DESC_\n\n' + POWERTRAIN_DBC.split("BU_: ESC TBOX\n", 1)[1]
    (tmp_path / "powertrain.dbc").write_text(dbc)
    (tmp_path / "m.toml").write_text('dbc = "powertrain.dbc"\nstrict = false\n' + MAPPING.split("\n", 2)[2])
    mapping = (tmp_path / "m.toml").read_text().split('[signals."Vehicle.Acceleration.Longitudinal"]')[0]
    (tmp_path / "m.toml").write_text(mapping)
    loaded = load_can_mapping(tmp_path / "m.toml")
    assert loaded.warnings == ("powertrain.dbc: added the missing BS_: and BU_: statements before line 6",)
    assert loaded.database.get_message_by_name("ESC_Speed").signals[0].name == "VehSpd"


def test_a_mapped_id_arriving_on_several_buses_without_a_channel_is_warned_about(tmp_path: Path) -> None:
    (tmp_path / "brake.dbc").write_text(BRAKE_DBC)
    mapping = 'dbc = "brake.dbc"\n[signals."Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure"]\n'
    (tmp_path / "m.toml").write_text(mapping + 'message = "BRAKE_MODULE"\nsignal = "BRAKE_PRESSURE"\n')
    lines = [f"({T0 + i:.6f}) can{i % 2} 224#B004000000000000" for i in range(4)]
    (tmp_path / "d.log").write_text("\n".join(lines) + "\n")
    source = CanLogSource(tmp_path / "d.log", load_can_mapping(tmp_path / "m.toml"))
    list(source)
    assert source.report.warnings == [
        "frame id 0x224 arrived on 2 buses (can0, can1) and"
        " Vehicle.Chassis.Axle.Row1.Wheel.Left.Tire.Pressure read it from all of them: if the buses carry"
        " different messages under that id, set channel"
    ]
    (tmp_path / "m.toml").write_text("channel = 0\n" + (tmp_path / "m.toml").read_text())
    source = CanLogSource(tmp_path / "d.log", load_can_mapping(tmp_path / "m.toml"))
    list(source)
    assert source.report.warnings == [] and source.stats.other_channel == 2


def test_a_headerless_dbc_as_opendbc_generates_it_loads_without_repairs(tmp_path: Path) -> None:
    (tmp_path / "powertrain.dbc").write_text('CM_ "AUTOGENERATED FILE";\n' + POWERTRAIN_DBC.split(HEADER)[1])
    (tmp_path / "m.toml").write_text('dbc = "powertrain.dbc"\nstrict = false\n' + MAPPING.split("\n", 2)[2])
    mapping = (tmp_path / "m.toml").read_text().split('[signals."Vehicle.Acceleration.Longitudinal"]')[0]
    (tmp_path / "m.toml").write_text(mapping)
    assert load_can_mapping(tmp_path / "m.toml").warnings == ()


# The example mapping for opendbc's Honda Civic hatchback DBC, against a DBC written here with its names
HONDA_NAMES_DBC = (
    HEADER
    + """BO_ 148 KINEMATICS: 8 ESC
 SG_ LONG_ACCEL : 0|16@1- (-0.02,0) [-20|20] "m/s2" X
BO_ 330 STEERING_SENSORS: 8 ESC
 SG_ STEER_ANGLE : 0|16@1- (-0.1,0) [-500|500] "deg" X
BO_ 380 POWERTRAIN_DATA: 8 ESC
 SG_ PEDAL_GAS : 0|8@1+ (1,0) [0|255] "" X
 SG_ ENGINE_RPM : 8|16@1+ (1,0) [0|15000] "rpm" X
BO_ 464 WHEEL_SPEEDS: 8 ESC
 SG_ WHEEL_SPEED_FL : 0|15@1+ (0.01,0) [0|250] "kph" X
 SG_ WHEEL_SPEED_FR : 15|15@1+ (0.01,0) [0|250] "kph" X
 SG_ WHEEL_SPEED_RL : 30|15@1+ (0.01,0) [0|250] "kph" X
 SG_ WHEEL_SPEED_RR : 45|15@1+ (0.01,0) [0|250] "kph" X
"""
)


def test_the_example_honda_mapping_loads_and_reads_its_units(tmp_path: Path) -> None:
    example = (
        Path(__file__).parents[1] / "edge_agent" / "examples" / "can" / "honda_civic_hatchback_2017.toml"
    )
    (tmp_path / "honda.dbc").write_text(HONDA_NAMES_DBC)
    db = cantools.database.load_string(HONDA_NAMES_DBC)
    frames = [
        ("KINEMATICS", {"LONG_ACCEL": -2.5}),
        ("STEERING_SENSORS", {"STEER_ANGLE": -90.0}),
        ("POWERTRAIN_DATA", {"PEDAL_GAS": 51, "ENGINE_RPM": 2500}),
        (
            "WHEEL_SPEEDS",
            {"WHEEL_SPEED_FL": 30, "WHEEL_SPEED_FR": 31, "WHEEL_SPEED_RL": 29, "WHEEL_SPEED_RR": 30},
        ),
    ]
    lines = []
    for i, (name, values) in enumerate(frames):
        message = db.get_message_by_name(name)
        lines.append(f"({T0 + i * 0.01:.6f}) can0 {message.frame_id:03X}#{message.encode(values).hex()}")
    (tmp_path / "d.log").write_text("\n".join(lines) + "\n")
    source = CanLogSource(tmp_path / "d.log", load_can_mapping(example, [tmp_path / "honda.dbc"]))
    (block,) = list(source)
    got = {name: float(np.nanmax(values)) for name, values in block.signals.items()}
    assert got == pytest.approx(
        {
            vss.ACCEL_LONGITUDINAL: -2.5,
            "Vehicle.Chassis.SteeringWheel.Angle": -90.0,
            "Vehicle.Chassis.Accelerator.PedalPosition": 20.0,  # 51 of 255
            "Vehicle.Powertrain.CombustionEngine.Speed": 2500.0,
            vss.SPEED: 30.0,
        }
    )
