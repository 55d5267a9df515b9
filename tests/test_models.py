"""Models: parity with scikit-learn, floors, manifests, reproducibility, and over-the-air updates."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from cloud.downlink import DownlinkPublisher
from cloud.ingest.worker import IngestWorker
from cloud.model_rollout import chunks
from edge_agent.agent import EdgeAgent
from edge_agent.downlink import Downlink
from edge_agent.inference import ModelInputError, ModelIntegrityError, ModelRunner, load_manifest
from edge_agent.model_store import ModelStore
from edge_agent.outbox import Outbox
from edge_agent.protocol import BrokerAddress, EventKind, EventsV1, PushAction, PushV1, TripSummaryV1, decode
from edge_agent.signals import iter_blocks
from edge_agent.uplink import MqttUplink
from models import ARTIFACTS
from models.evaluation import evaluate_artifact
from models.export import to_onnx_bytes
from models.training import train
from simulators.personas import PersonaName
from simulators.vehicle import Powertrain, VehicleSpec, initial_state, simulate_day
from tests.helpers import wait_until

NAMES = ("driving_style", "vehicle_health", "churn_risk")


@pytest.mark.parametrize("name", NAMES)
def test_shipped_model_matches_scikit_learn_and_its_floors(name: str) -> None:
    report = evaluate_artifact(name, ARTIFACTS / name)
    assert report["parity"]["labels_equal"] is True
    assert report["parity"]["max_difference"] <= 1e-5
    assert report["shipped_vs_retrained"]["label_agreement"] >= 0.99, report
    assert report["ok"] is True
    assert report["below_floors"] == {}, report
    manifest = load_manifest(ARTIFACTS / name / "manifest.json")
    assert manifest.metrics and set(manifest.metric_floors) <= set(manifest.metrics)
    assert manifest.check_floors() == []
    card = (ARTIFACTS / name / "MODEL_CARD.md").read_text()
    assert manifest.sha256 in card and all(f"`{f}`" in card for f in manifest.features)


def test_retraining_from_the_same_seed_gives_the_same_bytes() -> None:
    import os
    import subprocess
    import sys

    first, second = train("churn_risk", 3), train("churn_risk", 3)
    assert to_onnx_bytes(first) == to_onnx_bytes(second)
    assert to_onnx_bytes(train("churn_risk", 4)) != to_onnx_bytes(first)
    # other processes, other string hash seeds (which once reordered the opset list): still the same bytes
    script = (
        "import hashlib; from models.training import train; from models.export import to_onnx_bytes;"
        "print(hashlib.sha256(to_onnx_bytes(train('churn_risk', 3))).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120,
            env={**os.environ, "PYTHONHASHSEED": str(hash_seed)},
        ).stdout.strip()
        for hash_seed in (1, 2, 3)
    }  # fmt: skip
    assert digests == {__import__("hashlib").sha256(to_onnx_bytes(first)).hexdigest()}


def test_runner_validates_inputs_against_the_manifest() -> None:
    runner = ModelRunner.from_directory(ARTIFACTS / "driving_style")
    width = runner.manifest.input.width
    assert runner.run(np.zeros(width))["probabilities"].shape == (1, 4)
    with pytest.raises(ModelInputError, match=f"takes {width} features"):
        runner.run(np.zeros(width - 1))
    bad = np.zeros(width)
    bad[3] = np.nan
    with pytest.raises(ModelInputError, match="speed_std_kmh"):
        runner.run(bad)
    assert set(runner.latency_stats()) == {"p50_us", "p99_us"}


def test_invalid_manifests_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "m"
    shutil.copytree(ARTIFACTS / "driving_style", target)
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["sha256"] = "not-a-hash"
    (target / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelIntegrityError, match="not valid"):
        ModelRunner.from_directory(target)


# ----------------------------------------------------------------------------------------- updates


def _version(tmp_path: Path, name: str, version: str) -> Path:
    """An exported copy of the shipped model under another version number."""
    directory = tmp_path / f"{name}-{version}"
    shutil.copytree(ARTIFACTS / name, directory)
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["version"] = version
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def _install(store: ModelStore, directory: Path, *, data: bytes | None = None, key: bytes | None = None):  # type: ignore[no-untyped-def]
    manifest_json = (directory / "manifest.json").read_text()
    body = data if data is not None else (directory / "model.onnx").read_bytes()
    signature = None
    if key is not None:
        from cloud.model_rollout import sign

        signature = sign(key, json.loads(manifest_json)["sha256"], manifest_json)
    return store.install(manifest_json, body, signature)


def _keys() -> tuple[bytes, bytes]:
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
    return pem, private.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)


def test_bad_updates_are_rejected_and_the_old_model_stays(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "store")
    assert store.get("driving_style").manifest.version == "1.0.0"  # type: ignore[union-attr]
    good = _version(tmp_path, "driving_style", "1.1.0")
    model = (good / "model.onnx").read_bytes()
    corrupted = model[:-10] + bytes(10)
    tampered = _version(tmp_path, "driving_style", "1.2.0")
    manifest = json.loads((tampered / "manifest.json").read_text())
    manifest["self_check"]["expected"]["probabilities"][0][0] += 0.5  # the model cannot reproduce this
    (tampered / "manifest.json").write_text(json.dumps(manifest))
    garbage = _version(tmp_path, "driving_style", "1.3.0")
    junk = b"\x08\x07" + bytes(200)
    manifest = json.loads((garbage / "manifest.json").read_text())
    manifest["sha256"], manifest["size_bytes"] = __import__("hashlib").sha256(junk).hexdigest(), len(junk)
    (garbage / "manifest.json").write_text(json.dumps(manifest))
    outcomes = [
        _install(store, good, data=corrupted),
        _install(store, tampered),
        _install(store, garbage, data=junk),
    ]
    assert [o.installed for o in outcomes] == [False, False, False]
    assert "sha256" in outcomes[0].reason and "SelfCheckFailed" in outcomes[1].reason
    assert "ModelIntegrityError" in outcomes[2].reason
    assert store.get("driving_style").manifest.version == "1.0.0"  # type: ignore[union-attr]
    assert not (tmp_path / "store" / "driving_style" / "ACTIVE").exists()
    assert _install(store, good).installed
    assert store.get("driving_style").manifest.version == "1.1.0"  # type: ignore[union-attr]
    assert (tmp_path / "store" / "driving_style" / "ACTIVE").read_text() == "1.1.0"
    assert ModelStore(tmp_path / "store").get("driving_style").manifest.version == "1.1.0"  # type: ignore[union-attr]


def test_signed_updates_only_when_a_key_is_configured(tmp_path: Path) -> None:
    private, public = _keys()
    other_private, _ = _keys()
    store = ModelStore(tmp_path / "store", public_key_pem=public)
    update = _version(tmp_path, "driving_style", "2.0.0")
    assert "unsigned" in _install(store, update).reason
    assert "does not verify" in _install(store, update, key=other_private).reason
    assert _install(store, update, key=private).installed


# ------------------------------------------------------------------------------- models in the car


def test_trips_get_a_driving_style_and_faults_raise_health_events(tmp_path: Path) -> None:
    spec = VehicleSpec("car1", PersonaName.AGGRESSIVE, Powertrain.ICE, health_fault_rate=1.0, fault_rate=0.0)
    rng = np.random.default_rng(21)
    trips, _ = simulate_day(spec, date(2026, 11, 2), initial_state(spec, rng), rng)
    store = ModelStore(tmp_path / "models")
    outbox = Outbox(tmp_path / "o.db", "car1", max_bytes=1 << 30)
    agent = EdgeAgent(outbox, models=store)
    agent.run(iter_blocks((t.block for t in trips), 600))

    bodies = [decode(i.topic, i.payload).body for i in outbox.pending(limit=10_000)]
    summaries = [b for b in bodies if isinstance(b, TripSummaryV1)]
    assert summaries and all(s.driving_style is not None for s in summaries)
    assert sum(s.driving_style == "aggressive" for s in summaries) >= len(summaries) - 1
    assert all(s.model_versions == {"driving_style": "1.0.0"} for s in summaries)
    anomalies = [
        e for b in bodies if isinstance(b, EventsV1) for e in b.events if e.kind is EventKind.HEALTH_ANOMALY
    ]
    faulty = [t for t in trips if t.health_fault is not None and len(t.block) > 6000]
    assert faulty
    for trip in faulty:
        kind, onset = trip.health_fault  # type: ignore[misc]
        inside = [e for e in anomalies if trip.start <= e.start.timestamp() <= trip.end]
        assert inside, f"{kind} in trip at {trip.start} was not flagged"
        assert min(e.start.timestamp() for e in inside) >= onset - 60  # not before the fault began
    assert agent.status_fields()["models"] == {"driving_style": "1.0.0", "vehicle_health": "1.0.0"}


class _Quiet:
    def show(self, push: PushV1, respond: Callable[[PushAction], None]) -> None:  # pragma: no cover - unused
        pass


def test_over_the_air_update_end_to_end(
    tmp_path: Path,
    database_url: str,
    db: psycopg.Connection,
    broker: BrokerAddress,
    ingest_group: str | None,
    vehicle_prefix: str,
    mqtt_client: object,
) -> None:
    vehicle = vehicle_prefix + "ota"
    worker = IngestWorker(
        database_url, broker, group=ingest_group, client_id=f"ota-{vehicle}", persistent=False
    )
    worker.start()
    outbox = Outbox(tmp_path / "o.db", vehicle)
    store = ModelStore(tmp_path / "models")
    assert store.get("churn_risk").manifest.version == "1.0.0"  # type: ignore[union-attr]
    agent = EdgeAgent(outbox, models=store)
    uplink: list[MqttUplink] = []
    outcomes: list[str] = []

    def on_model(result) -> None:  # type: ignore[no-untyped-def]
        outcomes.append(str(result))
        uplink[0].send_status("online")

    downlink = Downlink(agent, _Quiet(), on_model=on_model)
    uplink.append(MqttUplink(outbox, broker, on_downlink=downlink.receive, status_fields=agent.status_fields))
    uplink[0].start()
    try:
        assert uplink[0].wait_subscribed(10)
        cloud = DownlinkPublisher(mqtt_client)  # type: ignore[arg-type]
        update = _version(tmp_path, "churn_risk", "1.1.0")
        messages = list(chunks(update, chunk_bytes=16 * 1024))
        assert len(messages) == 4
        broken = list(chunks(_version(tmp_path, "churn_risk", "1.2.0"), chunk_bytes=16 * 1024))
        broken[1] = broken[1].model_copy(update={"data": base64.b64encode(b"x" * 100).decode()})
        for message in broken + messages[::-1]:  # chunks may come in any order
            cloud.send(vehicle, message)
        assert wait_until(
            lambda: downlink.poll() >= 0 and store.versions().get("churn_risk") == "1.1.0", timeout=20
        )
        assert uplink[0].flush(15)
        row = "SELECT models, model_update FROM vehicles WHERE vehicle_id = %s"
        assert wait_until(
            lambda: (db.execute(row, (vehicle,)).fetchone() or ({}, ""))[0].get("churn_risk") == "1.1.0"
        )
        assert "installed" in db.execute(row, (vehicle,)).fetchone()[1]  # type: ignore[index]
        assert (tmp_path / "models" / "churn_risk" / "ACTIVE").read_text() == "1.1.0"
        assert outcomes == [
            "churn_risk 1.2.0: rejected, size or sha256 of the received model differ from its manifest",
            "churn_risk 1.1.0: installed",
        ]
    finally:
        uplink[0].stop()
        worker.stop()


def test_models_cli_train_export_evaluate(tmp_path: Path) -> None:
    import subprocess
    import sys

    cli = [sys.executable, "-m", "simulators.cli", "models"]
    work, out = tmp_path / "work", tmp_path / "churn"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], capture_output=True, text=True, timeout=300)

    trained = run("train", "churn_risk", "--seed", "7", "--workdir", str(work))
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout.splitlines()[-1])["roc_auc"] >= 0.75
    exported = run("export", "churn_risk", "--workdir", str(work), "--out", str(out), "--version", "1.0.1")
    assert exported.returncode == 0, exported.stderr
    assert load_manifest(out / "manifest.json").version == "1.0.1"
    evaluated = run("evaluate", "churn_risk", "--dir", str(out))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout.splitlines()[-1])
    assert report["ok"], report
    assert report["reproducible_bytes"], report
    # the shipped artifact was trained with the same seed: the same bytes
    exported_sha = load_manifest(out / "manifest.json").sha256
    shipped_sha = load_manifest(ARTIFACTS / "churn_risk" / "manifest.json").sha256
    assert exported_sha == shipped_sha, (exported_sha, shipped_sha)
    bad = tmp_path / "labels.csv"
    bad.write_text("avg_speed_kmh,label\n1,calm_commuter\n")
    refused = run("train", "driving_style", "--data", str(bad), "--workdir", str(work))
    assert refused.returncode == 2, refused.stderr
    assert "lacks columns" in refused.stderr, refused.stderr
    missing = run("export", "vehicle_health", "--workdir", str(work), "--out", str(tmp_path / "h"))
    assert missing.returncode != 0, missing.stderr
    assert "run 'drivesight models train vehicle_health' first" in missing.stderr, missing.stderr


def test_labelled_csv_errors_name_the_line(tmp_path: Path) -> None:
    from edge_agent.features import STYLE_FEATURES
    from models.datasets import read_labelled_csv

    rows = [",".join([*STYLE_FEATURES, "label"]), ",".join(["1"] * len(STYLE_FEATURES) + ["aggressive"])]
    rows.append(",".join(["1"] * (len(STYLE_FEATURES) - 1) + ["fast", "calm_commuter"]))
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(ValueError, match=r"l\.csv line 3"):
        read_labelled_csv(tmp_path / "l.csv", STYLE_FEATURES)


def test_models_publish_command_sends_the_model(
    tmp_path: Path, broker: BrokerAddress, database_url: str
) -> None:
    import os
    import subprocess
    import sys
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from edge_agent.protocol import ModelChunkV1, downlink_topic

    vehicle = "pub-" + tmp_path.name[-8:].replace("_", "-")
    received: list[ModelChunkV1] = []
    subscribed = threading.Event()
    client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    client.on_subscribe = lambda *a: subscribed.set()
    client.on_message = lambda c, u, m: received.append(decode(m.topic, bytes(m.payload)).body)  # type: ignore[arg-type]
    client.connect(broker.host, broker.port)
    client.loop_start()
    client.subscribe(downlink_topic(vehicle, "model"), qos=1)
    try:
        assert subscribed.wait(10)
        env = {**os.environ, "DRIVESIGHT_MQTT_URL": broker.url(), "DRIVESIGHT_DATABASE_URL": database_url}
        cmd = [sys.executable, "-m", "cloud.cli", "models", "publish", "vehicle_health"]
        result = subprocess.run(
            [*cmd, "--vehicle", vehicle], capture_output=True, text=True, timeout=60, env=env
        )
        assert result.returncode == 0, result.stderr
        assert wait_until(lambda: len(received) == 1, timeout=10)
        # to a segment: the vehicles of its customers
        customer = "cust-" + vehicle
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("INSERT INTO customers (customer_id) VALUES (%s)", (customer,))
            conn.execute(
                "INSERT INTO vehicles (vehicle_id, first_seen, last_seen, customer_id)"
                " VALUES (%s, now(), now(), %s)"
                " ON CONFLICT (vehicle_id) DO UPDATE SET customer_id = excluded.customer_id",
                (vehicle, customer),
            )
            segment = "seg_" + vehicle.replace("-", "_")
            conn.execute("INSERT INTO segments VALUES (%s, '{}', 1, now())", (segment,))
            conn.execute("INSERT INTO segment_members VALUES (%s, %s)", (segment, customer))
        result = subprocess.run(
            [*cmd, "--segment", segment], capture_output=True, text=True, timeout=60, env=env
        )
        assert result.returncode == 0, result.stderr
        assert wait_until(lambda: len(received) == 2, timeout=10)
        unknown = subprocess.run(
            [*cmd, "--segment", "nope"], capture_output=True, text=True, timeout=60, env=env
        )
        assert unknown.returncode == 2 and "unknown segment(s) nope" in unknown.stderr
    finally:
        client.disconnect()
        client.loop_stop()
    chunk = received[0]
    assert base64.b64decode(chunk.data) == (ARTIFACTS / "vehicle_health" / "model.onnx").read_bytes()
    assert (chunk.name, chunk.version, chunk.chunks) == ("vehicle_health", "1.0.0", 1)
    nobody = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert nobody.returncode == 2 and "no target vehicles" in nobody.stderr
