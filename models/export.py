"""ONNX export with skl2onnx, the manifest beside it, and a model card written from the manifest.

Reproducibility: the same seed and library versions give the same ``model.onnx`` bytes (same sha256), in any
process; the manifest differs only in ``created_at``. ``tests/test_models.py`` retrains in processes with
different hash seeds and compares.
"""

from __future__ import annotations

import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import skl2onnx
import sklearn
from skl2onnx import to_onnx

from edge_agent.inference import ModelManifest, ModelRunner, SelfCheck, TensorSpec, TrainingInfo, sha256_of

from .onnx_common import TARGET_OPSET, sorted_opsets
from .training import Trained

INPUT_NAME = "features"
SELF_CHECK_ROWS = 5


def to_onnx_bytes(trained: Trained) -> bytes:
    """The fitted pipeline as an ONNX graph with one float32 input of the feature width."""
    sample = trained.train.X[:1].astype(trained.definition.onnx_dtype)
    options: dict[Any, Any] = {}
    if trained.definition.onnx_options:
        options = {id(trained.model.steps[-1][1]): trained.definition.onnx_options}
    graph = to_onnx(
        trained.model, sample, options=options, target_opset=TARGET_OPSET, initial_types=None, naming=""
    )
    graph.graph.input[0].name = INPUT_NAME
    for node in graph.graph.node:  # the input was named "X" by the converter
        node.input[:] = [INPUT_NAME if n == "X" else n for n in node.input]
    graph.doc_string = f"drivesight {trained.definition.name}"
    sorted_opsets(graph)
    return bytes(graph.SerializeToString())


def build_manifest(trained: Trained, model_bytes: bytes, version: str) -> ModelManifest:
    """Describe an exported model; the self-check records what ONNX gives for a few held-out rows."""
    d = trained.definition
    rows = trained.held_out.X[:SELF_CHECK_ROWS].astype(d.onnx_dtype)
    provisional = ModelManifest(
        name=d.name, version=version, task=d.task, sha256=sha256_of(model_bytes), size_bytes=len(model_bytes),
        input=TensorSpec(name=INPUT_NAME, dtype=d.onnx_dtype, width=rows.shape[1]),
        features=list(trained.train.features),
        outputs=d.outputs, classes=_classes(trained), threshold=getattr(trained.model, "threshold_", None),
        training=TrainingInfo(
            data=trained.train.description, seed=trained.seed, samples=len(trained.train.X),
            held_out=len(trained.held_out.X),
            libraries={
                "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__,
                "onnx": onnx.__version__,
                "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
            },
        ),
        metrics={k: round(v, 6) for k, v in trained.metrics.items()}, metric_floors=d.floors,
        self_check=SelfCheck(inputs=rows.tolist(), expected={}),
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )  # fmt: skip
    outputs = ModelRunner(provisional, model_bytes).run(rows)
    expected = {
        name: np.asarray(outputs[name], dtype=np.float64).reshape(len(rows), -1).tolist()
        for name in d.outputs
        if np.issubdtype(outputs[name].dtype, np.number)
    }
    return provisional.model_copy(update={"self_check": SelfCheck(inputs=rows.tolist(), expected=expected)})


def _classes(trained: Trained) -> list[str] | None:
    classes = getattr(trained.model, "classes_", None)
    return [str(c) for c in classes] if classes is not None else None


def model_card(manifest: ModelManifest) -> str:
    """A Markdown model card generated from the manifest."""
    floors = manifest.metric_floors
    lines = [
        f"# Model card: {manifest.name} {manifest.version}",
        "",
        f"Task: {manifest.task}. Created {manifest.created_at}.",
        f"sha256 `{manifest.sha256}` ({manifest.size_bytes} bytes).",
        "",
        "## Inputs",
        "",
        f"One {manifest.input.dtype} tensor `{manifest.input.name}` of shape (n, {manifest.input.width}),",
        "features in this order:",
        "",
        *[f"{i}. `{name}`" for i, name in enumerate(manifest.features)],
        "",
        "## Outputs",
        "",
        *[f"- `{name}`: {meaning}" for name, meaning in manifest.outputs.items()],
    ]
    if manifest.classes:
        lines += ["", f"Classes, in probability order: {', '.join(manifest.classes)}."]
    if manifest.threshold is not None:
        lines += ["", f"Threshold: {manifest.threshold:.6g}."]
    lines += [
        "",
        "## Training",
        "",
        f"- Data: {manifest.training.data}",
        f"- Seed {manifest.training.seed}; {manifest.training.samples} training rows, "
        f"{manifest.training.held_out} held-out rows (whole vehicles or customers not seen in training)",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in manifest.training.libraries.items()),
        "",
        "## Held-out metrics",
        "",
        "| metric | value | floor |",
        "| --- | --- | --- |",
        *[f"| {k} | {v:.4f} | {floors.get(k, '')} |" for k, v in manifest.metrics.items()],
        "",
        "## Limits",
        "",
        "Trained on simulated vehicles and customers: it has learned the simulator's personas, faults",
        "and churn model, not real drivers. Retrain on labelled real data",
        "(`drivesight models train NAME --data FILE.csv`) before it informs decisions about people.",
        "",
    ]
    return "\n".join(lines)


def export(trained: Trained, directory: Path, version: str) -> ModelManifest:
    """Write ``model.onnx``, ``manifest.json`` and ``MODEL_CARD.md`` into ``directory``."""
    model_bytes = to_onnx_bytes(trained)
    manifest = build_manifest(trained, model_bytes, version)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(model_bytes)
    (directory / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    (directory / "MODEL_CARD.md").write_text(model_card(manifest), encoding="utf-8")
    return manifest
