"""``drivesight models train | export | evaluate``.

``train`` fits a model (from simulator data, or ``--data`` labelled CSV) and keeps it in the work directory;
with ``--data FILE --target COLUMN`` it trains churn_risk on any customer table and writes the ONNX model
(parity checked) and its held-out report (table_model.py);
``export`` writes the ONNX file, manifest and model card (by default into the shipped ``models/artifacts``);
``evaluate`` checks an exported model: ONNX against scikit-learn on held-out data, and the metric floors.
Sending a model to cars is a cloud operation: ``drivesight-cloud models publish`` (cloud/model_rollout.py).
scikit-learn is imported only here and in the training modules, so a car never needs it.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import sys
from pathlib import Path
from typing import Any

from . import ARTIFACTS, credit_cli

log = logging.getLogger(__name__)

WORKDIR = Path(".drivesight/models")
#: where a model trained on a customer table goes by default, beside (not over) the simulator-trained one
TABLE_MODEL_DIR = "churn_risk-table"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``models`` command and its subcommands."""
    models = subparsers.add_parser("models", help="train, export and evaluate the ONNX models")
    sub = models.add_subparsers(dest="models_command", required=True)
    names = ["driving_style", "vehicle_health", "churn_risk"]
    train = sub.add_parser("train", help="fit a model and keep it in the work directory")
    train.add_argument("name", choices=[*names, "credit_score"])
    train.add_argument("--seed", type=int, default=7)
    train.add_argument(
        "--data", type=Path, help="labelled CSV (feature columns + label) instead of simulated data"
    )
    train.add_argument("--workdir", type=Path, default=WORKDIR)
    table = train.add_argument_group(
        "a customer table (churn_risk)",
        "--data FILE --target COLUMN: train on any CSV of one row per customer; its columns are sorted into "
        "numeric, categorical and ignored ones, and the ONNX model is written with a report",
    )
    table.add_argument("--target", help="the 0/1, true/false or yes/no column to predict")
    table.add_argument(
        "--id-column", action="append", default=[], metavar="COLUMN", help="a key column to ignore (repeat)"
    )
    table.add_argument(
        "--out", type=Path, help=f"where model.onnx and report.json go (default: WORKDIR/{TABLE_MODEL_DIR})"
    )
    table.add_argument("--json", action="store_true", help="only the report, as JSON, on stdout")
    credit_cli.add_arguments(train)
    train.set_defaults(handler=_train)
    export = sub.add_parser("export", help="write model.onnx, manifest.json and MODEL_CARD.md")
    export.add_argument("name", choices=names)
    export.add_argument("--version", default="1.0.0")
    export.add_argument("--workdir", type=Path, default=WORKDIR)
    export.add_argument("--out", type=Path, help="default: the shipped models/artifacts/NAME")
    export.set_defaults(handler=_export)
    evaluate = sub.add_parser(
        "evaluate", help="parity with scikit-learn and metric floors of an exported model"
    )
    evaluate.add_argument("name", choices=names)
    evaluate.add_argument("--dir", type=Path, help="default: models/artifacts/NAME")
    evaluate.set_defaults(handler=_evaluate)


def _artifact_dir(name: str, given: Path | None) -> Path:
    return given or ARTIFACTS / name


def _train(args: argparse.Namespace) -> int:
    if args.name == "credit_score":
        return credit_cli.train_credit_command(args)
    if args.target is not None:
        return _train_table(args)
    if args.id_column or args.out is not None:
        print("error: --id-column and --out go with --data FILE --target COLUMN", file=sys.stderr)
        return 2
    from .datasets import read_labelled_csv
    from .training import DEFINITIONS, train

    data = None
    if args.data is not None:
        try:
            data = read_labelled_csv(args.data, DEFINITIONS[args.name].features)
        except (OSError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    trained = train(args.name, args.seed, data)
    args.workdir.mkdir(parents=True, exist_ok=True)
    with (args.workdir / f"{args.name}.pkl").open("wb") as handle:
        pickle.dump(trained, handle)
    print(
        json.dumps({"model": args.name, "seed": args.seed, "rows": len(trained.train.X), **trained.metrics})
    )
    return 0


def _train_table(args: argparse.Namespace) -> int:
    """Train churn_risk on a customer table, export it with a parity check, print the held-out report."""
    from .customer_table import TableError, load_customer_table
    from .table_model import ParityError, export_table_model, train_on_table

    if args.name != "churn_risk" or args.data is None:
        print("error: --target trains churn_risk on a customer table: give --data FILE", file=sys.stderr)
        return 2
    out = args.out or args.workdir / TABLE_MODEL_DIR
    print(f"reading {args.data}", file=sys.stderr)
    try:
        table = load_customer_table(args.data, args.target, tuple(args.id_column))
    except TableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for column, reason in table.ignored.items():
        print(f"ignoring column {column!r}: {reason}", file=sys.stderr)
    print(
        f"{len(table.y)} customers, {len(table.numeric)} numeric and {len(table.categorical)} categorical "
        f"features; fitting with seed {args.seed}",
        file=sys.stderr,
    )
    model = train_on_table(table, args.seed)
    try:
        report = export_table_model(model, out)
    except ParityError as exc:
        print(f"error: {exc}; nothing written", file=sys.stderr)
        return 1
    parity = report["onnx"]["parity"]
    print(
        f"ONNX scores the {parity['rows']} held-out rows as scikit-learn does (largest difference "
        f"{parity['max_difference']:.2g}); wrote {out}",
        file=sys.stderr,
    )
    print(json.dumps(report) if args.json else _table_summary(report))
    return 0


def _table_summary(report: dict[str, Any]) -> str:
    m = report["metrics"]
    low, high = m["roc_auc_ci95"]
    lines = [
        f"churn_risk on {report['data']} (target {report['target']!r}, seed {report['seed']}, "
        f"{report['split']['held_out_rows']} held-out of {report['rows']} customers, stratified)",
        f"ROC AUC {m['roc_auc']:.3f} (95% bootstrap {low:.3f}-{high:.3f}; 0.5 is chance)",
        f"precision in the top decile {m['precision_at_top_decile']:.3f} (lift {m['top_decile_lift']:.2f} "
        f"over the base rate {m['base_rate']:.3f})",
        f"Brier score {m['brier_score']:.4f} (predicting the base rate: {m['brier_baseline']:.4f})",
        "decile  rows  positives  rate   lift",
        *[
            f"{d['decile']:>6}  {d['rows']:>4}  {d['positives']:>9}  {d['rate']:.3f}  {d['lift']:.2f}"
            for d in m["deciles"]
        ],
    ]
    if report["ignored"]:
        lines.append("ignored: " + "; ".join(f"{c} ({r})" for c, r in report["ignored"].items()))
    lines.append(f"model: {report['onnx']['path']}")
    return "\n".join(lines)


def _load_trained(workdir: Path, name: str):  # type: ignore[no-untyped-def]
    path = workdir / f"{name}.pkl"
    if not path.exists():
        raise SystemExit(f"no trained {name} in {workdir}: run 'drivesight models train {name}' first")
    with path.open("rb") as handle:
        return pickle.load(handle)


def _export(args: argparse.Namespace) -> int:
    from .export import export

    trained = _load_trained(args.workdir, args.name)
    manifest = export(trained, _artifact_dir(args.name, args.out), args.version)
    print(json.dumps({"model": manifest.name, "version": manifest.version, "sha256": manifest.sha256,
                      "bytes": manifest.size_bytes, "metrics": manifest.metrics}))  # fmt: skip
    below = manifest.check_floors()
    if below:
        print(f"warning: below the documented floors: {'; '.join(below)}", file=sys.stderr)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .evaluation import evaluate_artifact

    report = evaluate_artifact(args.name, _artifact_dir(args.name, args.dir))
    print(json.dumps(report))
    return 0 if report["ok"] else 1
