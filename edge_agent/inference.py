"""ONNX models on the edge: the manifest that describes a model, and a runner that checks and times it.

A model is an ONNX file plus ``manifest.json``. The manifest names the input tensor and the order of its
features, what each output means, how the model was trained and how well it did on held-out data, and a
self-check: a few inputs with the outputs the model must give. The runner refuses a file whose sha256 or size
differ from the manifest, refuses an input of the wrong width or with a NaN, runs single-threaded (a small CPU
shares its cores with the rest of the car), and keeps its latencies.

Errors::

    ModelError
     ├── ModelIntegrityError   file missing, wrong size or sha256, bad signature, not loadable
     ├── SelfCheckFailed       the loaded model does not reproduce the manifest's expected outputs
     └── ModelInputError       an input vector that does not fit the manifest
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from .protocol.manifest import (
    MODEL_NAME_PATTERN,
    ManifestError,
    ModelManifest,
    SelfCheck,
    TensorSpec,
    TrainingInfo,
    read_manifest,
)

__all__ = [
    "MODEL_NAME_PATTERN", "ModelError", "ModelInputError", "ModelIntegrityError", "ModelManifest",
    "ModelRunner", "SelfCheck", "SelfCheckFailed", "TensorSpec", "TrainingInfo", "load_manifest", "sha256_of",
]  # fmt: skip


class ModelError(RuntimeError):
    """A model that cannot be used."""


class ModelIntegrityError(ModelError):
    """The model file does not match its manifest or does not load."""


class SelfCheckFailed(ModelError):
    """The model loads but does not give the outputs its manifest promises."""


class ModelInputError(ModelError, ValueError):
    """An input that does not fit the model."""


def sha256_of(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def load_manifest(path: Path) -> ModelManifest:
    """Read and validate a manifest file (:class:`ModelIntegrityError` when it is refused)."""
    try:
        return read_manifest(path)
    except ManifestError as exc:
        raise ModelIntegrityError(str(exc)) from exc


class ModelRunner:
    """One loaded model: validated inputs in, named outputs out, latencies kept."""

    def __init__(self, manifest: ModelManifest, model_bytes: bytes, *, latency_window: int = 1000) -> None:
        if len(model_bytes) != manifest.size_bytes or sha256_of(model_bytes) != manifest.sha256:
            raise ModelIntegrityError(
                f"{manifest.name} {manifest.version}: the file does not match its manifest (size or sha256)"
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unloadable graphs
            raise ModelIntegrityError(f"{manifest.name} {manifest.version} does not load: {exc}") from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or inputs[0].name != manifest.input.name:
            raise ModelIntegrityError(f"{manifest.name}: the graph's inputs do not match the manifest")
        self.manifest = manifest
        self.output_names = [o.name for o in self.session.get_outputs()]
        missing = set(manifest.outputs) - set(self.output_names)
        if missing:
            raise ModelIntegrityError(f"{manifest.name}: outputs {sorted(missing)} are not in the graph")
        self.latencies_us: deque[float] = deque(maxlen=latency_window)

    @classmethod
    def from_directory(cls, directory: Path) -> ModelRunner:
        """Load ``model.onnx`` with its ``manifest.json``."""
        manifest = load_manifest(directory / "manifest.json")
        try:
            data = (directory / "model.onnx").read_bytes()
        except OSError as exc:
            raise ModelIntegrityError(f"cannot read {directory / 'model.onnx'}: {exc.strerror}") from exc
        return cls(manifest, data)

    def _validate(self, features: np.ndarray) -> np.ndarray:
        x = np.asarray(features, dtype=np.float64 if self.manifest.input.dtype == "float64" else np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.manifest.input.width:
            raise ModelInputError(
                f"{self.manifest.name} takes {self.manifest.input.width} features "
                f"({', '.join(self.manifest.features)}), got shape {tuple(x.shape)}"
            )
        if not np.all(np.isfinite(x)):
            bad = [self.manifest.features[i] for i in np.flatnonzero(~np.isfinite(x).all(axis=0))]
            raise ModelInputError(f"{self.manifest.name}: features {bad} are not finite")
        return x

    def run(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for one row (or a batch of rows) of features."""
        x = self._validate(features)
        start = time.perf_counter()
        results = self.session.run(None, {self.manifest.input.name: x})
        self.latencies_us.append((time.perf_counter() - start) * 1e6)
        return {name: np.asarray(value) for name, value in zip(self.output_names, results, strict=True)}

    def self_check(self) -> None:
        """Reproduce the manifest's expected outputs, or raise :class:`SelfCheckFailed`."""
        check = self.manifest.self_check
        outputs = self.run(np.asarray(check.inputs))
        for name, expected in check.expected.items():
            got = outputs.get(name)
            if got is None:
                raise SelfCheckFailed(f"{self.manifest.name}: no output {name!r}")
            want = np.asarray(expected, dtype=np.float64)
            if got.reshape(want.shape).shape != want.shape or not np.allclose(
                got.reshape(want.shape), want, atol=check.tolerance, rtol=0
            ):
                raise SelfCheckFailed(
                    f"{self.manifest.name} {self.manifest.version}: output {name!r} differs from the manifest"
                )

    def latency_stats(self) -> dict[str, float]:
        """p50 and p99 of the recent run latencies, in microseconds."""
        if not self.latencies_us:
            return {}
        values = np.asarray(self.latencies_us)
        return {"p50_us": float(np.percentile(values, 50)), "p99_us": float(np.percentile(values, 99))}


def describe(runner: ModelRunner) -> dict[str, Any]:
    """Name, version and latency of a loaded model, for status reports."""
    return {"version": runner.manifest.version, **runner.latency_stats()}
