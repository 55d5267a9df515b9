"""churn_risk trained on a customer's own table: the pipeline, the held-out evaluation and the ONNX export.

The pipeline does all the preparing, so the ONNX graph does it too: a median imputer for the numeric
columns, and a one-hot encoder for the categorical ones (a missing value is a category of its own; values
seen on fewer than ``MIN_CATEGORY_ROWS`` training rows, or beyond the ``MAX_CATEGORIES`` most frequent, share
one "infrequent" column; a value never seen in training sets none of the column's indicators), then the
gradient-boosted trees of the simulator-trained churn_risk. The split is stratified and seeded.

The ONNX model takes one input per feature column, named in ``TableModel.inputs`` (float32 numbers, NaN
when missing; strings, "" when missing), each of shape (n, 1), and gives ``label`` and ``probabilities``
(of [stay, churn]). Its inputs are not the one float tensor of a manifest (edge_agent/protocol/manifest.py),
so it is written with a report of its own rather than as a model package for cars. Before anything is
written, the ONNX model scores every held-out row and must give scikit-learn's labels and probabilities
within ``PARITY_TOLERANCE``; otherwise :class:`ParityError`.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import skl2onnx
import sklearn
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType, StringTensorType
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from .customer_table import CustomerTable
from .onnx_common import PARITY_TOLERANCE, TARGET_OPSET, sorted_opsets
from .risk_metrics import RiskReport, risk_report

HELD_OUT_SHARE = 0.25
MIN_CATEGORY_ROWS = 10
MAX_CATEGORIES = 30


class ParityError(RuntimeError):
    """The exported ONNX model does not score the held-out rows as scikit-learn does."""


@dataclass(frozen=True, slots=True)
class ModelInput:
    """One ONNX input: the table column it takes and its element type."""

    name: str
    column: str
    dtype: str  # float32 | string


@dataclass
class TableModel:
    """A fitted pipeline with its split, held-out report and ONNX inputs."""

    pipeline: Pipeline
    table: CustomerTable
    seed: int
    train_rows: np.ndarray
    held_rows: np.ndarray
    report: RiskReport
    inputs: tuple[ModelInput, ...]


def build_pipeline(numeric: int, categorical: int, seed: int) -> Pipeline:
    """Imputer and one-hot encoder by column position (numeric columns first), then boosted trees."""
    prepare = ColumnTransformer(
        [
            ("numeric", SimpleImputer(strategy="median"), list(range(numeric))),
            (
                "categorical",
                # "ignore": an unseen value sets no indicator, in scikit-learn and in the ONNX OneHotEncoder
                OneHotEncoder(
                    handle_unknown="ignore", min_frequency=MIN_CATEGORY_ROWS, max_categories=MAX_CATEGORIES,
                    sparse_output=False,
                ),
                list(range(numeric, numeric + categorical)),
            ),
        ],
        sparse_threshold=0.0,
    )  # fmt: skip
    # the hyperparameters of the simulator-trained churn_risk (training.py)
    boost = GradientBoostingClassifier(n_estimators=120, max_depth=3, learning_rate=0.1, random_state=seed)
    return Pipeline([("prepare", prepare), ("boost", boost)])


def onnx_inputs(table: CustomerTable) -> tuple[ModelInput, ...]:
    """One input per feature column, named after it (letters, digits and underscores; unique)."""
    taken: set[str] = set()
    inputs = []
    for column in table.features:
        base = re.sub(r"\W", "_", column, flags=re.ASCII) or "column"
        base = f"c_{base}" if base[0].isdigit() else base
        name, n = base, 2
        while name in taken:
            name, n = f"{base}_{n}", n + 1
        taken.add(name)
        inputs.append(ModelInput(name, column, "float32" if column in table.numeric else "string"))
    return tuple(inputs)


def train_on_table(table: CustomerTable, seed: int) -> TableModel:
    """Stratified, seeded split; fit on the training part; the risk report on the held-out part."""
    rows = np.arange(len(table.y))
    train_rows, held_rows = train_test_split(
        rows, test_size=HELD_OUT_SHARE, stratify=table.y, random_state=seed
    )
    pipeline = build_pipeline(len(table.numeric), len(table.categorical), seed)
    pipeline.fit(table.X[train_rows], table.y[train_rows])
    risk = pipeline.predict_proba(table.X[held_rows])[:, 1]
    report = risk_report(table.y[held_rows], risk, seed)
    return TableModel(pipeline, table, seed, train_rows, held_rows, report, onnx_inputs(table))


def feeds(model: TableModel, X: np.ndarray) -> dict[str, np.ndarray]:
    """The ONNX inputs for rows of the table's feature matrix."""
    return {
        i.name: X[:, j : j + 1].astype(np.float32 if i.dtype == "float32" else str)
        for j, i in enumerate(model.inputs)
    }


def to_onnx_bytes(model: TableModel) -> bytes:
    """The whole pipeline (imputer, encoder, trees) as one ONNX graph; the same bytes for the same seed."""
    types = [
        (i.name, FloatTensorType([None, 1]) if i.dtype == "float32" else StringTensorType([None, 1]))
        for i in model.inputs
    ]
    options = {id(model.pipeline.steps[-1][1]): {"zipmap": False}}
    graph = to_onnx(model.pipeline, initial_types=types, options=options, target_opset=TARGET_OPSET)
    graph.graph.doc_string = "drivesight churn_risk trained on a customer table"
    sorted_opsets(graph)
    return bytes(graph.SerializeToString())


def parity(model: TableModel, model_bytes: bytes) -> dict[str, Any]:
    """ONNX against scikit-learn on every held-out row: labels equal, probabilities within the tolerance."""
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    X = model.table.X[model.held_rows]
    label, probabilities = session.run(["label", "probabilities"], feeds(model, X))
    expected = model.pipeline.predict_proba(X)
    difference = float(np.max(np.abs(probabilities - expected)))
    labels_equal = bool(np.array_equal(label.ravel(), model.pipeline.predict(X)))
    return {
        "rows": len(X),
        "labels_equal": labels_equal,
        "max_difference": difference,
        "tolerance": PARITY_TOLERANCE,
        "ok": labels_equal and difference <= PARITY_TOLERANCE,
    }


def describe(model: TableModel) -> dict[str, Any]:
    """What was trained on what, and how it did on the held-out customers (JSON-ready)."""
    table = model.table
    return {
        "model": "churn_risk",
        "data": table.source,
        "target": table.target,
        "rows": len(table.y),
        "rows_without_target": table.rows_without_target,
        "seed": model.seed,
        "split": {
            "held_out_share": HELD_OUT_SHARE, "stratified": True,
            "train_rows": len(model.train_rows), "held_out_rows": len(model.held_rows),
        },
        "features": {"numeric": list(table.numeric), "categorical": list(table.categorical)},
        "ignored": table.ignored,
        "metrics": model.report.as_dict(),
    }  # fmt: skip


def export_table_model(model: TableModel, directory: Path) -> dict[str, Any]:
    """Check parity, then write ``model.onnx``, the pickled pipeline and ``report.json`` (returned) into
    ``directory``."""
    model_bytes = to_onnx_bytes(model)
    checked = parity(model, model_bytes)
    if not checked["ok"]:
        raise ParityError(
            f"the ONNX model differs from scikit-learn on the held-out rows: labels equal "
            f"{checked['labels_equal']}, largest probability difference {checked['max_difference']:.3g} "
            f"(tolerance {PARITY_TOLERANCE})"
        )
    onnx_info = {
        "path": str(directory / "model.onnx"),
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "bytes": len(model_bytes),
        "inputs": [{"name": i.name, "column": i.column, "dtype": i.dtype} for i in model.inputs],
        "outputs": {"label": "1 likely to churn", "probabilities": "probability of [stay, churn]"},
        "parity": checked,
        "libraries": {
            "scikit-learn": sklearn.__version__, "skl2onnx": skl2onnx.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
        },
    }  # fmt: skip
    report = {**describe(model), "onnx": onnx_info}
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(model_bytes)
    with (directory / "pipeline.pkl").open("wb") as handle:
        pickle.dump({"pipeline": model.pipeline, "features": model.table.features}, handle)
    (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report
