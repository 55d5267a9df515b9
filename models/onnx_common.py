"""What every ONNX export here shares: the opset, the parity tolerance and byte-stable serialization."""

from __future__ import annotations

import onnx

TARGET_OPSET = 17
#: ONNX and scikit-learn must agree within this on every checked row (probabilities or scores)
PARITY_TOLERANCE = 1e-5


def sorted_opsets(graph: onnx.ModelProto) -> None:
    """Sort the graph's opset imports in place.

    skl2onnx lists the opset domains in set order, which follows the process's string hash seed: sorted, the
    same model serializes to the same bytes from one process to the next.
    """
    imports = sorted(graph.opset_import, key=lambda o: o.domain)
    del graph.opset_import[:]
    graph.opset_import.extend(imports)
