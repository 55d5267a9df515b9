"""OBD-II through python-OBD, against the ELM327 emulator on a real pseudo-terminal."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from edge_agent import signals as vss
from edge_agent.offline import run_offline
from edge_agent.sources.obd import ObdSource
from edge_agent.trips import TripSettings


@pytest.fixture
def elm327(tmp_path: Path) -> Iterator[str]:
    """The emulator's serial device (the emulator is a dev dependency: it is always there)."""
    beside_python = Path(sys.executable).parent / "elm"  # the venv's scripts, also when it is not on PATH
    binary = str(beside_python) if beside_python.exists() else shutil.which("elm") or "elm"
    out = tmp_path / "elm.out"
    # run in tmp_path: the emulator writes its elm.log into its working directory
    process = subprocess.Popen(
        [binary, "-s", "car", "-b", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (out.exists() and out.read_text().strip()):
        time.sleep(0.1)
    try:
        yield out.read_text().splitlines()[0].strip()
    finally:
        process.terminate()
        process.wait(10)


def test_polls_pids_and_fault_codes_from_an_elm327(elm327: str) -> None:
    source = ObdSource.open(elm327, poll_hz=10, block_s=1.0, max_polls=25)
    try:
        blocks = list(source)
    finally:
        source.connection.close()
    assert sum(len(b) for b in blocks) == 25 and len(blocks) >= 2
    speed = np.concatenate([b.signals[vss.SPEED] for b in blocks])
    rpm = np.concatenate([b.signals[vss.ENGINE_SPEED] for b in blocks])
    fuel = np.concatenate([b.signals[vss.FUEL_LEVEL] for b in blocks])
    assert np.all((speed >= 0) & (speed < 300)) and np.all((rpm >= 0) & (rpm < 9000))
    assert np.all((fuel > 0) & (fuel <= 100))
    assert len(set(speed.tolist())) > 3 and len(set(rpm.tolist())) > 3  # answers, not a constant stand-in
    assert all(np.all(np.diff(b.t) > 0) for b in blocks)
    assert source.report.samples == 25 and source.report.unparsable == {}
    result = run_offline(blocks, trip_settings=TripSettings(min_trip_s=0))  # 2.5 s of polling is a short trip
    assert len(result["trips"]) == 1 and result["trips"][0]["samples"] == 25


def test_no_adapter_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConnectionError, match="no OBD-II adapter answered"):
        ObdSource.open(str(tmp_path / "no-such-tty"))
