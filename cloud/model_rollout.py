"""Sending a model to cars over the air: chunks of the ONNX file on ``ds/v1/{vehicle}/down/model``.

Each chunk repeats the manifest and, with a signing key, an Ed25519 signature over the model's sha256 and
manifest, so a car can check an update before it touches its active model. This is a cloud operation (it
picks cars from the database and sends through the downlink); the model package format is the contract's
(``edge_agent.protocol.manifest``), so neither the training code nor the car's internals are imported here.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from pathlib import Path

from edge_agent.protocol import MODEL_CHUNK_BYTES, ModelChunkV1
from edge_agent.protocol.manifest import read_manifest, signed_message

from .config import CloudSettings
from .downlink import DownlinkPublisher, connect_service

log = logging.getLogger(__name__)


def sign(private_key_pem: bytes, sha256: str, manifest_json: str) -> str:
    """Base64 Ed25519 signature of a model, as cars verify it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the model signing key must be an Ed25519 private key")
    return base64.b64encode(key.sign(signed_message(sha256, manifest_json))).decode("ascii")


def chunks(
    directory: Path, *, signing_key_pem: bytes | None = None, chunk_bytes: int = MODEL_CHUNK_BYTES
) -> Iterator[ModelChunkV1]:
    """The update messages for the exported model in ``directory``."""
    if not 0 < chunk_bytes <= MODEL_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be in 1..{MODEL_CHUNK_BYTES}")
    manifest = read_manifest(directory / "manifest.json")
    manifest_json = (directory / "manifest.json").read_text(encoding="utf-8")
    data = (directory / "model.onnx").read_bytes()
    signature = sign(signing_key_pem, manifest.sha256, manifest_json) if signing_key_pem else None
    count = max(1, -(-len(data) // chunk_bytes))
    for i in range(count):
        piece = data[i * chunk_bytes : (i + 1) * chunk_bytes]
        yield ModelChunkV1(
            name=manifest.name, version=manifest.version, sha256=manifest.sha256, size_bytes=len(data),
            chunk=i, chunks=count, data=base64.b64encode(piece).decode("ascii"), manifest=manifest_json,
            signature=signature,
        )  # fmt: skip


def publish(
    name: str,
    directory: Path,
    vehicles: list[str],
    online: bool,
    key: Path | None,
    segments: list[str] | None = None,
) -> int:
    """``drivesight-cloud models publish``: send the model to the listed vehicles, with ``online`` to every
    vehicle whose last status is online, and to the vehicles of the customers in ``segments`` (computed by
    the analytics job). Returns a process exit code."""
    settings = CloudSettings()
    targets = list(dict.fromkeys(vehicles))
    if online or segments:
        import psycopg

        with psycopg.connect(settings.require_database_url()) as conn:
            if online:
                targets += [
                    str(r[0]) for r in conn.execute("SELECT vehicle_id FROM vehicles WHERE status = 'online'")
                ]
            if segments:
                known = {str(r[0]) for r in conn.execute("SELECT name FROM segments")}
                unknown = sorted(set(segments) - known)
                if unknown:
                    log.error(
                        "unknown segment(s) %s; segments: %s", ", ".join(unknown), ", ".join(sorted(known))
                    )
                    return 2
                targets += [
                    str(r[0])
                    for r in conn.execute(
                        "SELECT DISTINCT v.vehicle_id FROM segment_members m"
                        " JOIN vehicles v USING (customer_id) WHERE m.segment = ANY(%s) ORDER BY 1",
                        (segments,),
                    )
                ]
    if not targets:
        log.error("no target vehicles: give --vehicle ID (repeatable), --online or --segment NAME")
        return 2
    messages = list(chunks(directory, signing_key_pem=key.read_bytes() if key else None))
    # the downlink identity: password from DRIVESIGHT_MQTT_PASSWORD_FILE or a client certificate
    client = connect_service(settings)
    try:
        publisher = DownlinkPublisher(client)
        for vehicle in dict.fromkeys(targets):
            for message in messages:
                publisher.send(vehicle, message)
            log.info("sent %s %s to %s in %d chunks", name, messages[0].version, vehicle, len(messages))
    finally:
        client.disconnect()
        client.loop_stop()
    log.info("sent %s %s to %d vehicles", name, messages[0].version, len(dict.fromkeys(targets)))
    return 0
