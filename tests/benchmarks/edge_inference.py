"""Edge inference latency: the shipped ONNX models through the edge runner against scikit-learn.

Prints one JSON line: ``onnx_p50_us`` / ``onnx_p99_us`` for one trip's driving-style verdict (one row, one
thread, input validation included, as the car runs it), ``sklearn_p50_us`` / ``sklearn_p99_us`` for the same
model rebuilt from the manifest's seed on the same inputs in the same run, and the same for the vehicle-health
model (``health_onnx_p99_us``). Calls of the two are interleaved so that machine noise hits both alike.

    python tests/benchmarks/edge_inference.py                 # 5,000 calls each
    python tests/benchmarks/edge_inference.py --calls 500     # smoke size

Target (issue 4): ONNX p99 <= 1 ms per window on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_agent.inference import ModelRunner
from models import ARTIFACTS
from models.training import train


def percentiles(samples: list[float]) -> tuple[float, float]:
    values = np.asarray(samples)
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def measure(name: str, calls: int) -> dict[str, float]:
    runner = ModelRunner.from_directory(ARTIFACTS / name)
    trained = train(name, runner.manifest.training.seed)
    rows = trained.held_out.X.astype(np.float64)
    sk = trained.model.score_samples if trained.definition.task == "anomaly" else trained.model.predict_proba
    onnx_us: list[float] = []
    sklearn_us: list[float] = []
    for i in range(calls):
        row = rows[i % len(rows)]
        start = time.perf_counter()
        runner.run(row)
        onnx_us.append((time.perf_counter() - start) * 1e6)
        start = time.perf_counter()
        sk(row[None, :])
        sklearn_us.append((time.perf_counter() - start) * 1e6)
    (o50, o99), (s50, s99) = percentiles(onnx_us[calls // 10 :]), percentiles(sklearn_us[calls // 10 :])
    return {"onnx_p50_us": o50, "onnx_p99_us": o99, "sklearn_p50_us": s50, "sklearn_p99_us": s99}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    style = measure("driving_style", args.calls)
    health = measure("vehicle_health", args.calls)
    result = {k: round(v, 1) for k, v in style.items()}
    result.update({f"health_{k}": round(v, 1) for k, v in health.items() if k.endswith("p99_us")})
    result["calls"] = args.calls
    print(json.dumps(result))


if __name__ == "__main__":
    main()
