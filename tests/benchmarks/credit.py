"""credit_score at size: simulated applicants (simulators/credit_world.py) through the whole training path.

Writes ``--rows`` applicants to a CSV in a temporary directory, then times what ``drivesight models train
credit_score --data FILE --target defaulted --protected gender --protected birth_year`` does: reading and
profiling the table, binning, the regression, the cut-off, the held-out evaluation, the ONNX export and its
parity check. Prints one JSON line: ``rows``, held-out ``auc``, ``ks``, ``brier`` (and ``brier_base_rate``),
``oracle_auc`` (the simulator's hidden probability on the same held-out rows: the best any model could do),
``inputs``, the approval rate at the cut-off, the lowest approval-rate ratio per protected column,
``parity`` (largest ONNX probability difference), ``onnx_rows_per_s`` (batch scoring) and ``seconds``.

No public credit data set (German credit, Taiwan default, Lending Club) is on this machine and nothing is
downloaded, so ``real_data`` says it was skipped; ``--real FILE --real-target COLUMN`` runs the same on one.

    python tests/benchmarks/credit.py                 # 50,000 applicants
    python tests/benchmarks/credit.py --rows 5000     # smoke size
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from models import credit_onnx
from models.credit_report import export_credit_model
from models.credit_training import load_credit_table, train_credit
from simulators.credit_world import write_applicants_csv


def run(path: Path, target: str, protected: tuple[str, ...], seed: int, out: Path) -> dict[str, Any]:
    """Train and export on one file; the figures of its report."""
    started = time.perf_counter()
    model = train_credit(load_credit_table(path, target, protected=protected), seed)
    report = export_credit_model(model, out)
    seconds = time.perf_counter() - started
    X = model.X(model.held_rows)
    model_bytes = (out / "model.onnx").read_bytes()
    scoring = time.perf_counter()
    credit_onnx.run(model_bytes, model.inputs, X)
    scoring = time.perf_counter() - scoring
    m = report["metrics"]
    return {
        "rows": report["rows"], "auc": m["roc_auc"], "ks": m["ks"], "brier": m["brier_score"],
        "brier_base_rate": m["brier_baseline"], "inputs": len(report["inputs"]),
        "approval_rate": m["cutoff"]["approval_rate"],
        "lowest_approval_ratio": {c: f["lowest_ratio"] for c, f in m["fairness"].items()},
        "parity": report["onnx"]["parity"]["max_probability_difference"],
        "onnx_rows_per_s": round(len(X) / scoring), "seconds": round(seconds, 2),
        "held_rows": model.held_rows,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--real", type=Path, help="a public credit table, if one is on this machine")
    parser.add_argument("--real-target", default="default")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "applicants.csv"
        applicants = write_applicants_csv(path, rows=args.rows, seed=args.seed)
        figures = run(path, "defaulted", ("gender", "birth_year"), args.seed, Path(tmp) / "model")
        held = figures.pop("held_rows")
        truth = applicants.columns["defaulted"][held]
        figures["oracle_auc"] = round(float(roc_auc_score(truth, applicants.truth[held])), 4)
        if args.real is not None:
            real = run(args.real, args.real_target, (), args.seed, Path(tmp) / "real")
            real.pop("held_rows")
            figures["real_data"] = {"file": str(args.real), **real}
        else:
            figures["real_data"] = "skipped: no public credit data set on this machine (nothing downloaded)"
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
