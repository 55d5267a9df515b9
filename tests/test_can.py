"""CAN decoding over python-can's virtual bus with a realistic DBC."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import can
import cantools
import numpy as np
import pytest

from edge_agent import signals as vss
from edge_agent.offline import run_offline
from edge_agent.processing import Pipeline, Resampler
from edge_agent.protocol import HARSH_KINDS
from edge_agent.sources.can import CanSource, load_can_mapping
from edge_agent.sources.mapping import MappingError
from simulators.personas import PersonaName
from simulators.vehicle import VehicleSpec, initial_state, simulate_day

DATA = Path(__file__).parent / "data"


def _frames(trip_block, db) -> list[can.Message]:  # type: ignore[no-untyped-def]
    """Encode a simulated trip the way its ECUs would put it on the bus, each message at its own rate."""
    s = trip_block.signals
    frames = []
    speed, inertial = db.get_message_by_name("ESC_VehicleSpeed"), db.get_message_by_name("ESC_Inertial")
    engine, comfort = db.get_message_by_name("ECM_Engine"), db.get_message_by_name("BCM_Comfort")
    for i, t in enumerate(trip_block.t):
        frames.append(
            can.Message(
                timestamp=t,
                arbitration_id=inertial.frame_id,
                is_extended_id=False,
                data=inertial.encode(
                    {
                        "LongAccel": s[vss.ACCEL_LONGITUDINAL][i],
                        "LatAccel": s[vss.ACCEL_LATERAL][i],
                        "YawRate": s[vss.YAW_RATE][i],
                    }
                ),
            )
        )
        frames.append(
            can.Message(
                timestamp=t + 0.003,
                arbitration_id=speed.frame_id,
                is_extended_id=False,
                data=speed.encode({"VehSpd": s[vss.SPEED][i], "VehSpd_Qual": 0, "ESC_Counter": i % 16}),
            )
        )
        if i % 10 == 0:
            frames.append(
                can.Message(
                    timestamp=t + 0.005,
                    arbitration_id=engine.frame_id,
                    is_extended_id=False,
                    data=engine.encode(
                        {"EngSpd": s[vss.ENGINE_SPEED][i], "FuelLvl": s[vss.FUEL_LEVEL][i], "CoolantTemp": 90}
                    ),
                )
            )
        if i % 5 == 0:
            frames.append(
                can.Message(
                    timestamp=t + 0.007,
                    arbitration_id=comfort.frame_id,
                    is_extended_id=False,
                    data=comfort.encode(
                        {
                            "AC_Active": int(s[vss.AIR_CONDITIONING][i]),
                            "Cruise_Active": int(s[vss.CRUISE_CONTROL][i]),
                            "SeatHeat_Driver": 0,
                        }
                    ),
                )
            )
    return frames  # fmt: skip


def test_a_simulated_trip_over_the_virtual_bus() -> None:
    spec = VehicleSpec("car1", PersonaName.AGGRESSIVE)
    rng = np.random.default_rng(12)
    trips, _ = simulate_day(spec, date(2026, 11, 2), initial_state(spec, rng), rng)
    trip = max(trips, key=lambda tr: len(tr.events))
    mapping = load_can_mapping(DATA / "vehicle_can.toml")
    db = cantools.database.load_file(str(DATA / "vehicle.dbc"))
    channel = f"ds-{uuid.uuid4().hex[:8]}"
    with (
        can.Bus(interface="virtual", channel=channel, preserve_timestamps=True) as ecu,
        can.Bus(interface="virtual", channel=channel) as tbox,
    ):
        frames = _frames(trip.block, db)
        for frame in frames:
            ecu.send(frame)
        ecu.send(can.Message(arbitration_id=0x7FF, data=b"\x00"))  # unmapped traffic is ignored
        ecu.send(can.Message(arbitration_id=0x130, data=b"\x01", is_extended_id=False))  # too short to decode
        source = CanSource(tbox, mapping, idle_timeout_s=0.5)
        result = run_offline(Pipeline([Resampler(10.0)]).run(source))
    assert source.frames == len(frames) + 2
    assert source.report.unparsable == {"undecodable_0x130": 1}
    harsh = [e for e in result["events"] if e["kind"] in {k.value for k in HARSH_KINDS}]
    assert [e["kind"] for e in harsh] == [e.kind.value for e in trip.events]
    for got, want in zip(harsh, trip.events, strict=True):
        assert abs(got["start"] - want.start) <= 0.3 and abs(got["end"] - want.end) <= 0.3
    (summary,) = result["trips"]
    assert summary["distance_km"] == pytest.approx(trip.distance_km, rel=0.01)
    usage = summary["feature_usage"]
    assert usage[vss.AIR_CONDITIONING]["activations"] == trip.features[vss.AIR_CONDITIONING][0]
    assert usage[vss.CRUISE_CONTROL]["activations"] == trip.features[vss.CRUISE_CONTROL][0]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (
            ('message = "ESC_Inertial"', 'message = "ESC_Nope"'),
            "no message 'ESC_Nope' in the DBC; it has: ESC_VehicleSpeed",
        ),
        (
            ('signal = "YawRate"', 'signal = "Yaw"'),
            "ESC_Inertial has no signal 'Yaw'; it has: LongAccel, LatAccel, YawRate",
        ),
        (('signal = "FuelLvl"', 'signal = "FuelLvl"\nunit = "rpm"'), "cannot convert from rpm"),
        (('dbc = "vehicle.dbc"', 'dbc = "missing.dbc"'), "cannot load DBC"),
    ],
)
def test_bad_can_mappings_are_refused(tmp_path: Path, change: tuple[str, str], fragment: str) -> None:
    (tmp_path / "vehicle.dbc").write_text((DATA / "vehicle.dbc").read_text())
    text = (DATA / "vehicle_can.toml").read_text().replace(*change, 1)
    (tmp_path / "m.toml").write_text(text)
    with pytest.raises(MappingError, match=fragment):
        load_can_mapping(tmp_path / "m.toml")
