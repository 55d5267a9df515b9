"""``drivesight models train credit_score --data FILE --target COLUMN``: the options and the command.

The options shared with churn_risk's table training (``--data``, ``--target``, ``--id-column``, ``--seed``,
``--out``, ``--json``, ``--workdir``) are models/cli.py's; the scorecard's own are added here. Exit status
2 with one ``error:`` line for a refused table or bad option, 1 when the ONNX model does not score like
scikit-learn; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

#: where the scorecard goes by default, under the models work directory
CREDIT_MODEL_DIR = "credit_score-table"


def add_arguments(train: argparse.ArgumentParser) -> None:
    """The scorecard's options on ``models train``."""
    group = train.add_argument_group(
        "a credit scorecard (credit_score)",
        "--data FILE --target COLUMN (1 = default): binned inputs, weight of evidence, a logistic "
        "regression, points; protected attributes are refused as inputs (see models/credit_README.md)",
    )
    group.add_argument(
        "--protected", action="append", default=[], metavar="COLUMN",
        help="a protected attribute (gender, birth year...): kept out of the model, used only to report "
             "approval rates per group (repeat)",
    )  # fmt: skip
    cut = group.add_mutually_exclusive_group()
    cut.add_argument("--cutoff", type=float, help="approve at or above this score")
    cut.add_argument(
        "--approval-rate",
        type=float,
        help="set the cut-off to approve this share of training applicants (0.8)",
    )
    group.add_argument("--base-score", type=float, default=600.0, help="the score at --base-odds (600)")
    group.add_argument("--base-odds", type=float, default=50.0, help="good:bad odds at --base-score (50)")
    group.add_argument("--pdo", type=float, default=20.0, help="points to double the odds (20)")
    group.add_argument(
        "--min-bin-share",
        type=float,
        default=0.05,
        help="the smallest share of training rows in a bin (0.05)",
    )


def train_credit_command(args: argparse.Namespace) -> int:
    """Train, check and write a credit scorecard; print its held-out report."""
    from .credit_report import export_credit_model
    from .credit_scorecard import Scaling
    from .credit_training import load_credit_table, train_credit
    from .customer_table import TableError
    from .table_model import ParityError

    if args.data is None or args.target is None:
        _say("error: credit_score trains on your table: give --data FILE --target COLUMN")
        return 2
    if args.pdo <= 0 or args.base_odds <= 0 or not 0 < args.min_bin_share < 0.5:
        _say("error: --pdo and --base-odds must be positive, --min-bin-share between 0 and 0.5")
        return 2
    out = args.out or args.workdir / CREDIT_MODEL_DIR
    _say(f"reading {args.data}")
    try:
        data = load_credit_table(args.data, args.target, tuple(args.id_column), tuple(args.protected))
        for column, reason in data.table.ignored.items():
            _say(f"not an input: {column!r}: {reason}")
        _say(f"{len(data.table.y)} applicants; fitting with seed {args.seed}")
        model = train_credit(
            data, args.seed, Scaling(args.base_score, args.base_odds, args.pdo), args.approval_rate,
            args.cutoff, args.min_bin_share,
        )  # fmt: skip
    except TableError as exc:
        _say(f"error: {exc}")
        return 2
    try:
        report = export_credit_model(model, out)
    except ParityError as exc:
        _say(f"error: {exc}; nothing written")
        return 1
    _say(f"wrote {out} (ONNX parity on {report['onnx']['parity']['rows']} held-out rows)")
    sys.stdout.write((json.dumps(report) if args.json else summary(report)) + "\n")
    return 0


def _say(line: str) -> None:
    """Progress and errors go to stderr, so that stdout holds only the report."""
    sys.stderr.write(line + "\n")


def summary(report: dict[str, Any]) -> str:
    """The report in a few lines for a terminal."""
    m, cut = report["metrics"], report["metrics"]["cutoff"]
    lines = [
        f"credit_score on {report['data']} (target {report['target']!r}, seed {report['seed']}, "
        f"{report['split']['held_out_rows']} held-out of {report['rows']} applicants)",
        f"inputs: {', '.join(report['inputs'])}",
        f"ROC AUC {m['roc_auc']:.3f} (95% {m['roc_auc_ci95'][0]:.3f}-{m['roc_auc_ci95'][1]:.3f}), "
        f"KS {m['ks']:.3f}, Brier {m['brier_score']:.4f} (base rate: {m['brier_baseline']:.4f})",
        f"cut-off {cut['score']:.1f} ({cut['rule']}): approves {cut['approval_rate']:.1%}, default rate "
        f"{cut['default_rate_approved']} approved / {cut['default_rate_declined']} declined",
    ]
    for column, fair in m["fairness"].items():
        rates = ", ".join(f"{g['group']} {g['approval_rate']:.3f}" for g in fair["groups"])
        lines.append(f"approval by {column}: {rates}; four-fifths rule {fair['four_fifths_rule']}")
    lines.append(f"model card: {report['onnx']['path'].removesuffix('model.onnx')}MODEL_CARD.md")
    return "\n".join(lines)
