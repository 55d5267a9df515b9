"""A vehicle-bus :class:`~simulators.sensors.Recording` as the CAN traffic it came from: a candump ``.log``
encoded through a DBC with cantools, the DBC itself and a CAN mapping, so that

    drivesight-edge replay drive.log --mapping drive.can.toml --dbc drive.dbc

exercises the whole CAN path (log reader, DBC decoding, value tables, units, resampling) on a drive whose
ground truth is known.

The DBC (:data:`DBC_TEXT`) is written like a real car's: big-endian (Motorola) signals, signed and
offset-encoded ones, units spelled as in published DBCs (``kph``, ``m/s2``), rolling counters, and a gear
lever with a value table. Messages come at their own rates: the ESP's inertial and wheel-speed messages at
the recording's rate (the bus rate), engine and gear at 10 Hz, each id a little later than the previous in
the cycle, as a real ECU schedules them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent import signals as vss

from .sensors import GEAR_D, GEAR_P, SELECTED_GEAR, Recording, SensorProfile

#: the simulated car's DBC: ESP wheel speed and inertial sensors, engine, transmission. The speed,
#: acceleration and yaw-rate factors equal the recording's quantisation (``sensors.BUS_*_LSB``), so encoding
#: loses nothing.
DBC_TEXT = """VERSION ""

NS_ :
    NS_DESC_
    CM_
    BA_DEF_
    BA_
    VAL_
    BA_DEF_DEF_

BS_:

BU_: ESP ECM TCU TBOX

BO_ 496 ESP_WheelSpeed: 8 ESP
 SG_ VehSpd : 7|16@0+ (0.01,0) [0|655.35] "kph" TBOX
 SG_ VehSpd_Valid : 23|1@0+ (1,0) [0|1] "" TBOX
 SG_ WhlSpd_Counter : 19|4@0+ (1,0) [0|15] "" TBOX

BO_ 380 ESP_Inertial: 8 ESP
 SG_ LongAccel : 7|16@0- (0.01,0) [-327.68|327.67] "m/s2" TBOX
 SG_ LatAccel : 23|16@0+ (0.01,-327.68) [-327.68|327.67] "m/s2" TBOX
 SG_ YawRate : 39|16@0- (0.01,0) [-327.68|327.67] "deg/s" TBOX
 SG_ Inertial_Counter : 51|4@0+ (1,0) [0|15] "" TBOX

BO_ 201 ECM_Engine: 8 ECM
 SG_ EngSpd : 7|16@0+ (0.25,0) [0|16383.75] "rpm" TBOX

BO_ 944 TCU_Gear: 8 TCU
 SG_ GearLever : 3|4@0+ (1,0) [0|15] "" TBOX

CM_ BO_ 496 "Vehicle speed from the four wheel-speed sensors, bus rate";
CM_ BO_ 380 "ESP inertial sensor cluster, filtered by the ESP, bus rate";
CM_ BO_ 201 "Engine status, 10 Hz";
CM_ BO_ 944 "Transmission gear lever, 10 Hz";
VAL_ 496 VehSpd_Valid 0 "Invalid" 1 "Valid" ;
VAL_ 944 GearLever 0 "P" 1 "R" 2 "N" 5 "D" 15 "Invalid" ;
"""

#: DBC message and signal of each VSS signal of a vehicle-bus recording
SIGNALS = {
    vss.SPEED: ("ESP_WheelSpeed", "VehSpd"),
    vss.ACCEL_LONGITUDINAL: ("ESP_Inertial", "LongAccel"),
    vss.ACCEL_LATERAL: ("ESP_Inertial", "LatAccel"),
    vss.YAW_RATE: ("ESP_Inertial", "YawRate"),
    vss.ENGINE_SPEED: ("ECM_Engine", "EngSpd"),
    SELECTED_GEAR: ("TCU_Gear", "GearLever"),
}
#: the gear lever's raw values for the VSS selected gear (126 park, 127 drive)
_GEAR_RAW = {GEAR_P: 0, GEAR_D: 5}
#: where each message sits in the ECU's cycle after the row's instant, seconds
_SLOT_S = {"ESP_WheelSpeed": 0.0, "ESP_Inertial": 0.0008, "ECM_Engine": 0.0016, "TCU_Gear": 0.0024}


def can_mapping_toml(dbc_name: str) -> str:
    """The CAN mapping (``edge_agent.sources.can``) of :data:`DBC_TEXT` for ``dbc_name`` beside it."""
    lines = [f'dbc = "{dbc_name}"']
    for name, (message, signal) in SIGNALS.items():
        lines += ["", f'[signals."{name}"]', f'message = "{message}"', f'signal = "{signal}"']
        if name == SELECTED_GEAR:
            lines.append('choices = { P = "P", R = "R", N = "N", D = "D" }')
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class CandumpFiles:
    """What :func:`write_candump` wrote, and how many frames."""

    log: Path
    dbc: Path
    mapping: Path
    frames: int


def write_candump(
    recording: Recording,
    log_path: str | Path,
    *,
    dbc_path: str | Path | None = None,
    mapping_path: str | Path | None = None,
    channel: str = "can0",
) -> CandumpFiles:
    """Encode a vehicle-bus recording as candump frames ``(ts) can0 ID#DATA`` in ``log_path``; write the
    DBC (default: beside the log, ``.dbc``) and a CAN mapping naming it (default: ``.can.toml``)."""
    import cantools

    if recording.profile is not SensorProfile.VEHICLE_BUS:
        raise ValueError(
            f"a candump log needs a vehicle-bus recording; this one is {recording.profile.value}"
        )
    log_path = Path(log_path)
    dbc_path = Path(dbc_path) if dbc_path is not None else log_path.with_suffix(".dbc")
    mapping_path = Path(mapping_path) if mapping_path is not None else log_path.with_suffix(".can.toml")
    for p in (log_path, dbc_path, mapping_path):
        p.parent.mkdir(parents=True, exist_ok=True)
    dbc_path.write_text(DBC_TEXT, encoding="utf-8")
    # the mapping names the DBC relative to itself, as a user would keep them side by side
    dbc_ref = Path(_relative(dbc_path, mapping_path.parent)).as_posix()
    mapping_path.write_text(can_mapping_toml(dbc_ref), encoding="utf-8")
    db = cantools.database.load_string(DBC_TEXT, "dbc")
    t = recording.t
    c = recording.columns
    missing = [name for name in SIGNALS if name not in c]
    if missing:
        raise ValueError(f"{recording.describe()}: no column {', '.join(missing)}")
    slow = np.concatenate(
        [[True], np.diff(np.floor(t * 10.0)) > 0]
    )  # a 10 Hz message: first row of each 0.1 s
    frames: list[tuple[float, int, bytes]] = []
    messages = {name: db.get_message_by_name(name) for name in _SLOT_S}
    for i in range(t.size):
        ti = float(t[i])
        values = {
            "ESP_WheelSpeed": {
                "VehSpd": float(c[vss.SPEED][i]),
                "VehSpd_Valid": 1,
                "WhlSpd_Counter": i % 16,
            },
            "ESP_Inertial": {
                "LongAccel": float(c[vss.ACCEL_LONGITUDINAL][i]),
                "LatAccel": float(c[vss.ACCEL_LATERAL][i]),
                "YawRate": float(c[vss.YAW_RATE][i]),
                "Inertial_Counter": i % 16,
            },
        }
        if slow[i]:
            values["ECM_Engine"] = {"EngSpd": float(c[vss.ENGINE_SPEED][i])}
            values["TCU_Gear"] = {"GearLever": _GEAR_RAW.get(float(c[SELECTED_GEAR][i]), 15)}
        for name, signals in values.items():
            message = messages[name]
            # round to the signal's own step first: cantools truncates, the recording is already quantised
            for key, value in signals.items():
                scale = message.get_signal_by_name(key).scale
                signals[key] = round(value / scale) * scale if isinstance(value, float) else value
            frames.append((ti + _SLOT_S[name], message.frame_id, message.encode(signals)))
    frames.sort(key=lambda f: f[0])
    with log_path.open("w", encoding="ascii") as out:
        for ts, frame_id, data in frames:
            out.write(f"({ts:.6f}) {channel} {frame_id:03X}#{data.hex().upper()}\n")
    return CandumpFiles(log_path, dbc_path, mapping_path, len(frames))


def _relative(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` when it can be, else absolute."""
    try:
        return os.path.relpath(path.resolve(), start.resolve())
    except ValueError:  # another drive on Windows
        return str(path.resolve())
