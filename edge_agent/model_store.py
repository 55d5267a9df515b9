"""The car's models: the active version of each, and over-the-air updates with rollback.

Layout under ``root``::

    <name>/<version>/model.onnx, manifest.json   installed versions
    <name>/ACTIVE                                the active version (replaced atomically)
    incoming/<name>-<version>/<chunk>            chunks of an update still arriving (they survive a restart)

Without an installed version, a model comes from the artifacts shipped in the distribution (``models/
artifacts``), so a fresh car works offline. An update is installed only when every chunk is there, its size
and sha256 match the manifest, its signature verifies (when a public key is configured; then an unsigned
update is refused), it loads, and it reproduces its manifest's self-check; then ACTIVE is switched with an
atomic rename and the in-memory runner swapped. Any failure leaves the current model active (the rollback)
and is reported in the next status message.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from .inference import ModelError, ModelIntegrityError, ModelManifest, ModelRunner, sha256_of
from .protocol import ModelChunkV1
from .protocol.manifest import shipped_models, signed_message

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UpdateResult:
    """What became of an update."""

    name: str
    version: str
    installed: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}: {'installed' if self.installed else 'rejected, ' + self.reason}"


class ModelStore:
    """Loads, updates and rolls back the car's models. Thread-safe."""

    def __init__(
        self, root: Path, *, public_key_pem: bytes | None = None, shipped: Path | None = None
    ) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.shipped = shipped if shipped is not None else shipped_models()
        self._verifier = _load_public_key(public_key_pem) if public_key_pem else None
        self._lock = threading.Lock()
        self._runners: dict[str, ModelRunner] = {}
        self.last_update: UpdateResult | None = None

    # loading -----------------------------------------------------------------------------------------
    def _installed_dir(self, name: str) -> Path | None:
        active = self.root / name / "ACTIVE"
        if active.exists():
            directory = self.root / name / active.read_text(encoding="utf-8").strip()
            if directory.is_dir():
                return directory
        if self.shipped is not None and (self.shipped / name / "manifest.json").exists():
            return self.shipped / name
        return None

    def get(self, name: str) -> ModelRunner | None:
        """The active model ``name``, loading it on first use; None when there is none or it cannot load."""
        with self._lock:
            runner = self._runners.get(name)
            if runner is not None:
                return runner
            directory = self._installed_dir(name)
            if directory is None:
                return None
            try:
                runner = ModelRunner.from_directory(directory)
                runner.self_check()
            except ModelError as exc:
                log.error("model %s in %s is unusable: %s", name, directory, exc)
                return None
            self._runners[name] = runner
            return runner

    def versions(self) -> dict[str, str]:
        """Active version of every model loaded so far."""
        with self._lock:
            return {name: r.manifest.version for name, r in self._runners.items()}

    # over the air ------------------------------------------------------------------------------------
    def receive(self, chunk: ModelChunkV1) -> UpdateResult | None:
        """Keep one chunk; when the update is complete, install it. Returns the outcome once complete."""
        incoming = self.root / "incoming" / f"{chunk.name}-{chunk.version}"
        incoming.mkdir(parents=True, exist_ok=True)
        try:
            data = base64.b64decode(chunk.data, validate=True)
        except binascii.Error:
            return self._finish(
                incoming, UpdateResult(chunk.name, chunk.version, False, "a chunk is not base64")
            )
        part = incoming / f"{chunk.chunk:04d}"
        tmp = part.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, part)
        present = sorted(p for p in incoming.iterdir() if p.suffix != ".tmp")
        if len(present) < chunk.chunks:
            return None
        model_bytes = b"".join(p.read_bytes() for p in present[: chunk.chunks])
        return self._finish(
            incoming, self.install(chunk.manifest, model_bytes, chunk.signature, chunk.sha256)
        )

    def _finish(self, incoming: Path, result: UpdateResult) -> UpdateResult:
        shutil.rmtree(incoming, ignore_errors=True)
        self.last_update = result
        (log.info if result.installed else log.error)("model update %s", result)
        return result

    def install(
        self,
        manifest_json: str,
        model_bytes: bytes,
        signature: str | None,
        announced_sha256: str | None = None,
    ) -> UpdateResult:
        """Verify, load beside the current model, self-check, switch atomically; else keep the old one."""
        try:
            manifest = ModelManifest.model_validate_json(manifest_json)
        except ValueError as exc:
            return UpdateResult("?", "?", False, f"manifest is not valid: {str(exc)[:200]}")
        name, version = manifest.name, manifest.version

        def reject(reason: str) -> UpdateResult:
            return UpdateResult(name, version, False, reason)

        if announced_sha256 is not None and announced_sha256 != manifest.sha256:
            return reject("the announced sha256 differs from the manifest's")
        if len(model_bytes) != manifest.size_bytes or sha256_of(model_bytes) != manifest.sha256:
            return reject("size or sha256 of the received model differ from its manifest")
        if self._verifier is not None:
            if signature is None:
                return reject("unsigned, and this car only accepts signed models")
            if not self._verify(manifest.sha256, manifest_json, signature):
                return reject("the signature does not verify")
        try:
            runner = ModelRunner(manifest, model_bytes)
            runner.self_check()
        except ModelError as exc:
            return reject(f"{type(exc).__name__}: {exc}")
        directory = self.root / name / version
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "model.onnx").write_bytes(model_bytes)
        (directory / "manifest.json").write_text(manifest_json, encoding="utf-8")
        active = self.root / name / "ACTIVE"
        tmp = active.with_suffix(".tmp")
        tmp.write_text(version, encoding="utf-8")
        with self._lock:
            os.replace(tmp, active)  # atomic: a crash leaves either the old or the new version active
            self._runners[name] = runner
        return UpdateResult(name, version, True, "")

    def _verify(self, sha256: str, manifest_json: str, signature: str) -> bool:
        from cryptography.exceptions import InvalidSignature

        assert self._verifier is not None
        try:
            self._verifier.verify(base64.b64decode(signature), signed_message(sha256, manifest_json))
        except (InvalidSignature, binascii.Error, ValueError):
            return False
        return True


def _load_public_key(pem: bytes):  # type: ignore[no-untyped-def]
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key
    except ImportError:
        raise ModelIntegrityError(
            "verifying model signatures needs cryptography: pip install 'drivesight[edge]'"
        ) from None
    key = load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ModelIntegrityError("the model signing key must be an Ed25519 public key")
    return key
