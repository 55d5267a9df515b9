"""The scorecard as one ONNX graph: binning, WoE, the logistic regression, the points and the score.

skl2onnx has no converter for the binning, so the graph is written here with ``onnx.helper``, a few nodes per
input: a number's bin is how many thresholds it is above (``Greater`` against the float32 thresholds, summed),
a NaN goes to the missing bin (``IsNaN``, ``Where``); a category's bin comes from an ``ai.onnx.ml``
``LabelEncoder`` whose default is the "other" bin. ``Gather`` turns bins into WoE (float64 from here on, as
scikit-learn computes), then ``MatMul`` with the coefficients, the intercept and ``Sigmoid`` give the
probability of default, and the WoE times ``-factor * coefficient`` give the points.

Inputs: one per model input, named as in :func:`models.table_model.onnx_inputs` (float32 with NaN missing,
or string with "" missing; shape (n, 1)). Outputs: ``probability`` (n, 1) of default, ``score`` (n, 1) and
``points`` (n, inputs), all float64. Before anything is written, :func:`parity` runs the graph on the
held-out rows against scikit-learn's probabilities and the Python score.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from .credit_scorecard import Scorecard
from .customer_table import CustomerTable
from .onnx_common import PARITY_TOLERANCE, TARGET_OPSET, sorted_opsets
from .table_model import ModelInput, onnx_inputs

ML_OPSET = 3
#: the score is in points (hundreds): float64 agrees to far less than this
SCORE_TOLERANCE = 1e-6
_ELEMENT = {"float32": TensorProto.FLOAT, "string": TensorProto.STRING}


def model_inputs(card: Scorecard, table: CustomerTable) -> tuple[ModelInput, ...]:
    """The ONNX inputs of the scorecard's columns, named as the churn table model names them."""
    numeric = tuple(c for c in card.columns if c in table.numeric)
    categorical = tuple(c for c in card.columns if c in table.categorical)
    return onnx_inputs(dataclasses.replace(table, numeric=numeric, categorical=categorical))


def feeds(inputs: tuple[ModelInput, ...], X: np.ndarray) -> dict[str, np.ndarray]:
    """The ONNX inputs for rows holding the scorecard's columns."""
    return {
        i.name: X[:, j : j + 1].astype(np.float32 if i.dtype == "float32" else str)
        for j, i in enumerate(inputs)
    }


def _const(name: str, value: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name))


def to_onnx_bytes(card: Scorecard, inputs: tuple[ModelInput, ...]) -> bytes:
    """The scorecard as ONNX bytes (the same bytes for the same scorecard)."""
    nodes: list[onnx.NodeProto] = []
    woe_names = []
    for j, (binning, spec) in enumerate(zip(card.binnings, inputs, strict=True)):
        x, p = spec.name, f"in{j}_"
        if binning.numeric:
            # a single bin has no threshold; +inf keeps Greater's shape and is never exceeded
            thresholds = binning.thresholds if len(binning.thresholds) else np.array([np.inf], np.float32)
            nodes += [
                _const(p + "thresholds", thresholds.astype(np.float32).reshape(1, -1)),
                _const(p + "axis", np.array([1], np.int64)),
                _const(p + "missing", np.array(binning.missing_bin, np.int64)),
                helper.make_node("Greater", [x, p + "thresholds"], [p + "above"]),
                helper.make_node("Cast", [p + "above"], [p + "above_n"], to=TensorProto.INT64),
                helper.make_node("ReduceSum", [p + "above_n", p + "axis"], [p + "counted"], keepdims=1),
                helper.make_node("IsNaN", [x], [p + "nan"]),
                helper.make_node("Where", [p + "nan", p + "missing", p + "counted"], [p + "bin"]),
            ]
        else:
            keys = sorted(binning.categories)
            nodes.append(
                helper.make_node(
                    "LabelEncoder", [x], [p + "bin"], domain="ai.onnx.ml", keys_strings=keys,
                    values_int64s=[binning.categories[k] for k in keys], default_int64=binning.other_bin,
                )
            )  # fmt: skip
        nodes += [
            _const(p + "woe_table", binning.woe),
            helper.make_node("Gather", [p + "woe_table", p + "bin"], [p + "woe"], axis=0),
        ]
        woe_names.append(p + "woe")
    coefficients = card.coefficients
    nodes += [
        helper.make_node("Concat", woe_names, ["woe"], axis=1),
        _const("coefficients", coefficients.reshape(-1, 1)),
        _const("intercept", np.array([card.intercept], np.float64)),
        helper.make_node("MatMul", ["woe", "coefficients"], ["slope"]),
        helper.make_node("Add", ["slope", "intercept"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["probability"]),
        _const("points_per_woe", (-card.scaling.factor * coefficients).reshape(1, -1)),
        helper.make_node("Mul", ["woe", "points_per_woe"], ["points"]),
        _const("one_axis", np.array([1], np.int64)),
        helper.make_node("ReduceSum", ["points", "one_axis"], ["bin_points"], keepdims=1),
        _const("base_points", np.array([card.base_points], np.float64)),
        helper.make_node("Add", ["bin_points", "base_points"], ["score"]),
    ]
    graph = helper.make_graph(
        nodes, "credit_score",
        [helper.make_tensor_value_info(i.name, _ELEMENT[i.dtype], [None, 1]) for i in inputs],
        [helper.make_tensor_value_info("probability", TensorProto.DOUBLE, [None, 1]),
         helper.make_tensor_value_info("score", TensorProto.DOUBLE, [None, 1]),
         helper.make_tensor_value_info("points", TensorProto.DOUBLE, [None, len(inputs)])],
    )  # fmt: skip
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", TARGET_OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="drivesight", doc_string="drivesight credit_score scorecard",
    )  # fmt: skip
    model.ir_version = 8  # what onnxruntime reads for opset 17
    onnx.checker.check_model(model)
    sorted_opsets(model)
    return bytes(model.SerializeToString())


def run(model_bytes: bytes, inputs: tuple[ModelInput, ...], X: np.ndarray) -> dict[str, np.ndarray]:
    """Score rows with the ONNX model: ``probability``, ``score`` and ``points``."""
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    probability, score, points = session.run(["probability", "score", "points"], feeds(inputs, X))
    return {"probability": probability, "score": score, "points": points}


def parity(
    card: Scorecard, model_bytes: bytes, inputs: tuple[ModelInput, ...], X: np.ndarray
) -> dict[str, Any]:
    """ONNX against scikit-learn's probability of default and the Python score and points, on rows ``X``."""
    got = run(model_bytes, inputs, X)
    probability = float(np.max(np.abs(got["probability"].ravel() - card.probability(X))))
    score = float(np.max(np.abs(got["score"].ravel() - card.score(X))))
    points = float(np.max(np.abs(got["points"] - card.points(X))))
    return {
        "rows": len(X),
        "max_probability_difference": probability,
        "max_score_difference": score,
        "max_points_difference": points,
        "tolerance": {"probability": PARITY_TOLERANCE, "points": SCORE_TOLERANCE},
        "ok": probability <= PARITY_TOLERANCE and max(score, points) <= SCORE_TOLERANCE,
    }
