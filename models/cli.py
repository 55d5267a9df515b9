"""``drivesight models train | export | evaluate``.

``train`` fits a model (from simulator data, or ``--data`` labelled CSV) and keeps it in the work directory;
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

from . import ARTIFACTS

log = logging.getLogger(__name__)

WORKDIR = Path(".drivesight/models")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``models`` command and its subcommands."""
    models = subparsers.add_parser("models", help="train, export and evaluate the ONNX models")
    sub = models.add_subparsers(dest="models_command", required=True)
    names = ["driving_style", "vehicle_health", "churn_risk"]
    train = sub.add_parser("train", help="fit a model and keep it in the work directory")
    train.add_argument("name", choices=names)
    train.add_argument("--seed", type=int, default=7)
    train.add_argument(
        "--data", type=Path, help="labelled CSV (feature columns + label) instead of simulated data"
    )
    train.add_argument("--workdir", type=Path, default=WORKDIR)
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
