"""The layering DESIGN.md draws holds by itself: the import contracts in pyproject.toml pass, each one fails
when the import it forbids is added, and a car's install (``.[edge]``) runs without cloud, simulator or
training code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("edge_agent", "cloud", "models", "simulators")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


#: pip's options for the fresh installs: no bytecode compiled ahead (it took two thirds of the cloud install's
#: minute; Python compiles what it imports anyway), no version nag
PIP_QUIET = ("--quiet", "--disable-pip-version-check", "--no-compile")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(root)},
    )


def test_the_import_contracts_hold() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


# (module file, the forbidden import appended to it, the contract that must break)
VIOLATIONS = [
    ("edge_agent/protocol/wire.py", "from edge_agent import outbox", "The contract imports neither side"),
    ("edge_agent/features.py", "import psycopg", "The edge imports only the contract"),
    ("edge_agent/features.py", "from simulators import personas", "The edge imports only the contract"),
    ("cloud/downlink.py", "from edge_agent import outbox", "The cloud imports the contract"),
    ("cloud/downlink.py", "from simulators import fleet", "The cloud imports the contract"),
    ("models/export.py", "from cloud import config", "Training code imports no cloud"),
    ("simulators/customers.py", "from models import datasets", "No cycles between the top-level packages"),
    ("cloud/db/dialect.py", "from cloud.db import migrate", "No cycles between the modules of a package"),
]


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages and pyproject.toml, copied so that a test may add a forbidden import."""
    root = tmp_path_factory.mktemp("layering")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__", "*.onnx")
        )
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


@pytest.mark.parametrize(
    ("module", "line", "contract"), VIOLATIONS, ids=[v[1] + " in " + v[0] for v in VIOLATIONS]
)
def test_each_contract_breaks_on_the_import_it_forbids(
    tree_copy: Path, module: str, line: str, contract: str
) -> None:
    path = tree_copy / module
    original = path.read_text()
    path.write_text(original + f"\n{line}  # noqa\n")
    try:
        result = _lint_imports(tree_copy)
    finally:
        path.write_text(original)
    assert result.returncode != 0
    broken = [s for s in result.stdout.replace("\n", " ").split(" KEPT") if contract in s and "BROKEN" in s]
    assert broken, f"{contract!r} did not break:\n{result.stdout[-3000:]}"


REPLAY_MAPPING = """
[time]
column = "t"
[signals."Vehicle.Speed"]
column = "v"
[signals."Vehicle.Acceleration.Longitudinal"]
column = "ax"
"""

# Run inside the edge-only environment: every edge module imports, and none of them pulls in other sides.
IMPORT_CHECK = """
import importlib, json, pkgutil, sys
import edge_agent
for info in pkgutil.walk_packages(edge_agent.__path__, "edge_agent."):
    if info.name.startswith(("edge_agent.sources.can", "edge_agent.sources.obd")):
        continue  # optional extras (python-can, obd)
    importlib.import_module(info.name)
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("cloud", "models", "simulators", "sklearn",
                "psycopg", "fastapi", "uvicorn", "prometheus_client"))
print(json.dumps(loaded))
"""


@pytest.mark.slow
def test_a_car_install_runs_without_cloud_or_simulator_code(tmp_path: Path) -> None:
    """``pip install .[edge]`` into a fresh environment; ``drivesight-edge`` replays a recording there."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, bin_dir = env_dir / "bin" / "python", env_dir / "bin"
    source = tmp_path / "src"  # a copy, so the build leaves no egg-info or build/ in the checkout
    shutil.copytree(
        ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "__pycache__", "*.egg-info", "build", ".*cache*", "tests"
        ),
    )
    install = subprocess.run(
        [str(python), "-m", "pip", "install", *PIP_QUIET, f"{source}[edge]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIVESIGHT_", "PYTHON"))}
    run = lambda *cmd: subprocess.run(  # noqa: E731
        cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=clean_env
    )
    # the cloud's libraries are not there, so any import of cloud code would fail loudly
    absent = run(str(python), "-c", "import psycopg")
    assert absent.returncode != 0
    imported = run(str(python), "-c", IMPORT_CHECK)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert json.loads(imported.stdout) == []

    helped = run(str(bin_dir / "drivesight-edge"), "--help")
    assert helped.returncode == 0 and "replay" in helped.stdout, helped.stderr
    version = run(str(bin_dir / "drivesight-edge"), "--version")
    assert version.returncode == 0 and version.stdout.split()[-1][0].isdigit(), version.stdout

    rows = ["t,v,ax"] + [
        f"{1793577600 + i / 10:.1f},60,{-5.0 if 300 <= i < 315 else 0.0}" for i in range(1200)
    ]
    (tmp_path / "rec.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "map.toml").write_text(REPLAY_MAPPING)
    replay = run(str(bin_dir / "drivesight-edge"), "replay", "rec.csv", "--mapping", "map.toml", "--json")
    assert replay.returncode == 0, replay.stderr[-3000:]
    document = json.loads(replay.stdout)
    assert len(document["trips"]) == 1
    assert "harsh_brake" in {e["kind"] for e in document["events"]}


CLOUD_IMPORT_CHECK = """
import importlib, json, pkgutil, sys
import cloud
for info in pkgutil.walk_packages(cloud.__path__, "cloud."):
    importlib.import_module(info.name)
loaded = {m.split(".")[0] for m in sys.modules}
print(json.dumps(sorted(loaded & {"simulators", "models", "pgserver", "amqtt"})))
"""


@pytest.mark.slow
def test_the_cloud_image_install_runs_without_simulators(tmp_path: Path, admin_database_url: str) -> None:
    """What deploy/Dockerfile copies and installs (``.[cloud]``) runs every cloud module and migrates a
    database, with no simulator code in the image."""
    from tests.helpers import scratch_database

    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    copied = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    source = tmp_path / "image"
    source.mkdir()
    for names in copied:
        for name in names:
            if (ROOT / name).is_dir():
                shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(ROOT / name, source / name)
    assert not (source / "simulators").exists(), "the cloud image must not carry the simulators"
    extra = dockerfile.split("pip install --no-cache-dir '.[", 1)[1].split("]", 1)[0]
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python, cloud_cli = env_dir / "bin" / "python", env_dir / "bin" / "drivesight-cloud"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", *PIP_QUIET, f"{source}[{extra}]"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("DRIVESIGHT_", "PYTHON"))}
    imported = subprocess.run(
        [str(python), "-c", CLOUD_IMPORT_CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=clean_env,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert json.loads(imported.stdout) == []
    with scratch_database(admin_database_url, "drivesight_image") as url:
        migrated = subprocess.run(
            [str(cloud_cli), "db", "migrate", "--json"],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,
            env={**clean_env, "DRIVESIGHT_DATABASE_URL": url},
        )
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert json.loads(migrated.stdout)["applied"]
