"""Conventions every command keeps: one version from the package metadata; with ``--json`` only JSON on
stdout; progress and logs on stderr; errors on stderr with a non-zero exit status. (The analytics, dead-letter
and replay commands are checked the same way in their own test modules.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
ENTRY_POINTS = ("drivesight", "drivesight-edge", "drivesight-cloud")


def _run(
    *cmd: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DRIVESIGHT_")}
    return subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=300, env={**clean, **(env or {})}, cwd=cwd
    )


def _refused(result: subprocess.CompletedProcess[str], code: int, message: str) -> None:
    assert (result.returncode, result.stdout) == (code, ""), result.stdout + result.stderr[-2000:]
    assert message in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("command", ENTRY_POINTS)
def test_each_entry_point_reports_the_one_package_version(command: str) -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = _run(str(BIN / command), "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [command, declared]


def test_the_cloud_entry_point_loads_no_simulator_or_training_code() -> None:
    probe = (
        "import sys; from cloud import cli; cli.build_parser();"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'simulators', 'models', 'sklearn'}))"
    )
    result = _run(sys.executable, "-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


UNREACHABLE = "postgresql://nobody@127.0.0.1:9/none?connect_timeout=2"


@pytest.mark.parametrize(
    "args",
    [
        ("db", "migrate", "--json"),
        ("db", "maintain", "--json"),
        ("analytics", "run", "--json"),
        ("deadletters", "list", "--json"),
        ("deadletters", "replay", "--reason", "invalid", "--json"),
    ],
    ids=" ".join,
)
def test_an_unreachable_database_is_one_line_on_stderr(args: tuple[str, ...]) -> None:
    result = _run(str(BIN / "drivesight-cloud"), *args, env={"DRIVESIGHT_DATABASE_URL": UNREACHABLE})
    _refused(result, 1, "database unreachable")
    assert "Traceback" not in result.stderr


def test_a_missing_database_setting_is_an_error_on_stderr() -> None:
    _refused(_run(str(BIN / "drivesight-cloud"), "db", "migrate", "--json"), 1, "DRIVESIGHT_DATABASE_URL")


def test_edge_run_without_a_source_says_which_setting_is_missing(tmp_path: Path) -> None:
    result = _run(
        str(BIN / "drivesight-edge"), "run", "--vehicle-id", "VIN1", "--state-dir", str(tmp_path / "state")
    )
    _refused(result, 2, "DRIVESIGHT_EDGE_SOURCE")
    replay = _run(
        str(BIN / "drivesight-edge"), "run", "--vehicle-id", "VIN1", "--state-dir", str(tmp_path / "state"),
        env={"DRIVESIGHT_EDGE_SOURCE": "replay"},
    )  # fmt: skip
    _refused(replay, 2, "DRIVESIGHT_EDGE_SOURCE_FILE")
    bad = _run(str(BIN / "drivesight-edge"), "run", env={"DRIVESIGHT_EDGE_SOURCE": "carrier-pigeon"})
    _refused(bad, 2, "edge settings refused")


def test_sim_population_json_is_one_document(tmp_path: Path) -> None:
    population = ("sim", "population", "--customers", "20", "--days", "5")
    result = _run(str(BIN / "drivesight"), *population, "--out", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["customers"] == 20 and report["imported"] is None
    assert all(Path(f).exists() for f in report["files"].values())
