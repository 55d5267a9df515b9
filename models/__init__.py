"""Training (scikit-learn), ONNX export, manifests, model cards and the shipped model artifacts."""

from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
