"""Judging an exported model: ONNX against its scikit-learn original, metrics against the floors.

The scikit-learn original is rebuilt from the manifest's seed, so an artifact can be checked anywhere:

- parity: the retrained model exported here must agree with itself in ONNX (identical labels, probabilities
  or scores within 1e-5 on the held-out data): the exporter is right on this machine;
- the shipped artifact's held-out metrics, computed from its ONNX outputs, must reach the documented floors,
  and its labels must agree with the retrained model's on at least 99% of the held-out rows;
- how far the shipped artifact's scores are from the retrained model's, and whether re-exporting reproduces
  its bytes, are reported: training is deterministic on one machine and library set, but a Gaussian mixture
  fitted on another CPU or BLAS ends a few ulps apart after its EM iterations, and log-likelihoods far out
  in the tail then differ visibly (found when a fresh install here gave a 40-unit gap at -6e5 while every
  label still agreed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.inference import ModelRunner, sha256_of

from .export import to_onnx_bytes
from .onnx_common import PARITY_TOLERANCE
from .training import Trained, train

MIN_LABEL_AGREEMENT = 0.99


def parity(runner: ModelRunner, trained: Trained) -> dict[str, float | bool]:
    """Compare ONNX and scikit-learn on the held-out rows (the same float64 values fed to both)."""
    X = trained.held_out.X.astype(np.float64)
    onnx_out = runner.run(X)
    model = trained.model
    if trained.definition.task == "anomaly":
        expected = model.score_samples(X)
        got = onnx_out["score_samples"].ravel()
        labels_equal = bool(np.array_equal(got < model.threshold_, expected < model.threshold_))
        agreement = float(np.mean((got < model.threshold_) == (expected < model.threshold_)))
    else:
        expected = model.predict_proba(X)
        got = onnx_out["probabilities"]
        labels_equal = bool(np.array_equal(onnx_out["label"].astype(str), model.predict(X).astype(str)))
        agreement = float(np.mean(onnx_out["label"].astype(str) == model.predict(X).astype(str)))
    difference = float(np.max(np.abs(got - expected)))
    return {
        "labels_equal": labels_equal,
        "label_agreement": agreement,
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
    exported = to_onnx_bytes(trained)
    fresh = ModelRunner(
        manifest.model_copy(update={"size_bytes": len(exported), "sha256": sha256_of(exported)}), exported
    )
    checks = parity(fresh, trained)
    shipped = parity(runner, trained)
    agrees = shipped["label_agreement"] >= MIN_LABEL_AGREEMENT
    return {
        "model": name,
        "version": manifest.version,
        "parity": checks,
        "shipped_vs_retrained": {
            "label_agreement": shipped["label_agreement"],
            "max_difference": shipped["max_difference"],
        },
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "floors": floors,
        "below_floors": below,
        "reproducible_bytes": exported == (directory / "model.onnx").read_bytes(),
        "ok": bool(checks["ok"]) and not below and agrees,
    }
