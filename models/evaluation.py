"""Judging an exported model: ONNX against its scikit-learn original, metrics against the floors.

The scikit-learn original is rebuilt from the manifest's seed (training is deterministic), so an artifact can
be checked anywhere: labels must be identical and probabilities or scores within 1e-5 on the held-out data,
the held-out metrics computed from the ONNX outputs must reach the documented floors, and re-exporting must
reproduce the artifact's bytes (reported, since other library versions may legitimately differ).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.inference import ModelRunner

from .export import to_onnx_bytes
from .training import Trained, train

PARITY_TOLERANCE = 1e-5


def parity(runner: ModelRunner, trained: Trained) -> dict[str, float | bool]:
    """Compare ONNX and scikit-learn on the held-out rows (the same float64 values fed to both)."""
    X = trained.held_out.X.astype(np.float64)
    onnx_out = runner.run(X)
    model = trained.model
    if trained.definition.task == "anomaly":
        expected = model.score_samples(X)
        got = onnx_out["score_samples"].ravel()
        labels_equal = bool(np.array_equal(got < model.threshold_, expected < model.threshold_))
    else:
        expected = model.predict_proba(X)
        got = onnx_out["probabilities"]
        labels_equal = bool(np.array_equal(onnx_out["label"].astype(str), model.predict(X).astype(str)))
    difference = float(np.max(np.abs(got - expected)))
    return {
        "labels_equal": labels_equal,
        "max_difference": difference,
        "ok": labels_equal and difference <= PARITY_TOLERANCE,
    }


def onnx_metrics(runner: ModelRunner, trained: Trained) -> dict[str, float]:
    """The definition's metrics, computed from what the ONNX model says."""

    class _OnnxAsEstimator:
        threshold_ = runner.manifest.threshold

        def predict(self, X: np.ndarray) -> np.ndarray:
            return runner.run(X)["label"].ravel()

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            return runner.run(X)["probabilities"]

        def score_samples(self, X: np.ndarray) -> np.ndarray:
            return runner.run(X)["score_samples"].ravel()

    return trained.definition.evaluate(_OnnxAsEstimator(), trained.held_out)


def evaluate_artifact(name: str, directory: Path) -> dict[str, Any]:
    """Parity, metrics against floors and reproducibility of the exported model in ``directory``."""
    runner = ModelRunner.from_directory(directory)
    runner.self_check()
    manifest = runner.manifest
    trained = train(name, manifest.training.seed)
    metrics = onnx_metrics(runner, trained)
    floors = manifest.metric_floors
    below = {k: v for k, v in metrics.items() if k in floors and v < floors[k]}
    checks = parity(runner, trained)
    reproducible = to_onnx_bytes(trained) == (directory / "model.onnx").read_bytes()
    return {
        "model": name,
        "version": manifest.version,
        "parity": checks,
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "floors": floors,
        "below_floors": below,
        "reproducible_bytes": reproducible,
        "ok": bool(checks["ok"]) and not below,
    }
