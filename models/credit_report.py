"""The held-out evaluation of a credit scorecard, its report and model card, and writing the model.

On the held-out applicants: risk_metrics.py's ROC AUC (bootstrap interval), Brier score and deciles; the
Kolmogorov-Smirnov statistic (the largest gap between the score distributions of defaulters and the others);
a calibration table (per tenth of the scores: the range, mean predicted and observed default rate); at the
cut-off the approval rate and the default rates of approved and declined; per protected column the approval
rate of each group and its ratio to the highest group's (below 0.8 fails the four-fifths rule; groups under
``MIN_GROUP_ROWS`` held-out applicants are marked too small to judge); and the reason codes of the declined.

:func:`export_credit_model` checks ONNX parity first (:class:`models.table_model.ParityError` otherwise), then
writes ``model.onnx``, ``scorecard.pkl``, ``report.json`` and ``MODEL_CARD.md``.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import platform
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import sklearn
from sklearn.metrics import roc_curve

from . import credit_onnx
from .credit_scorecard import reason_codes
from .credit_training import CreditModel
from .risk_metrics import risk_report
from .table_model import HELD_OUT_SHARE, ParityError

BANDS = 10
FOUR_FIFTHS = 0.8
MIN_GROUP_ROWS = 30
EXAMPLES = 5


def ks_statistic(truth: np.ndarray, risk: np.ndarray) -> float:
    """The largest gap between the cumulative distributions of defaulters and non-defaulters."""
    fpr, tpr, _ = roc_curve(truth, risk)
    return float(np.max(tpr - fpr))


def calibration(truth: np.ndarray, probability: np.ndarray, score: np.ndarray) -> list[dict[str, Any]]:
    """Per tenth of the scores (lowest first): score range, rows, mean predicted and observed default rate."""
    order = np.argsort(score, kind="stable")
    table = []
    for number, part in enumerate(np.array_split(order, BANDS), start=1):
        if not len(part):
            continue
        table.append({
            "band": number, "score_min": round(float(score[part].min()), 1),
            "score_max": round(float(score[part].max()), 1), "rows": len(part),
            "predicted_default_rate": round(float(probability[part].mean()), 4),
            "observed_default_rate": round(float(truth[part].mean()), 4),
        })  # fmt: skip
    return table


def approval_by_group(groups: np.ndarray, approved: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Approval rate per group, its ratio to the highest group's, and the four-fifths rule."""
    rows = []
    for group in sorted(set(groups.tolist())):
        member = groups == group
        rows.append({
            "group": group, "rows": int(member.sum()), "approval_rate": float(approved[member].mean()),
            "observed_default_rate": round(float(truth[member].mean()), 4),
        })  # fmt: skip
    judged = [r for r in rows if r["rows"] >= MIN_GROUP_ROWS] or rows
    highest = max(r["approval_rate"] for r in judged)
    for r in rows:
        r["ratio_to_highest"] = round(r["approval_rate"] / highest, 4) if highest else None
        r["too_small_to_judge"] = r["rows"] < MIN_GROUP_ROWS
        r["approval_rate"] = round(r["approval_rate"], 4)
    lowest = min((r["ratio_to_highest"] for r in rows if not r["too_small_to_judge"]), default=None)
    return {
        "groups": rows,
        "lowest_ratio": lowest,
        "four_fifths_rule": "passes" if lowest is None or lowest >= FOUR_FIFTHS else "fails",
    }


def evaluate(model: CreditModel) -> dict[str, Any]:
    """The held-out metrics, the cut-off's effect, fairness across protected groups and reason codes."""
    held = model.held_rows
    X, truth = model.X(held), model.data.table.y[held]
    probability, score = model.card.probability(X), model.card.score(X)
    risk = risk_report(truth, probability, model.seed).as_dict()
    approved = score >= model.cutoff
    declined = np.flatnonzero(~approved)
    codes = reason_codes(model.card, X[declined]) if len(declined) else []
    first = Counter(c[0].column for c in codes if c)
    lowest = np.argsort(score[declined], kind="stable")[:EXAMPLES]  # positions among the declined
    examples = [
        {"score": round(float(score[declined[k]]), 1), "reasons": [asdict(r) for r in codes[k]]}
        for k in lowest
    ]
    return {
        "roc_auc": risk["roc_auc"],
        "roc_auc_ci95": risk["roc_auc_ci95"],
        "gini": round(2 * float(risk["roc_auc"]) - 1, 4),  # type: ignore[arg-type]
        "ks": round(ks_statistic(truth, probability), 4),
        "brier_score": risk["brier_score"],
        "brier_baseline": risk["brier_baseline"],
        "base_rate": risk["base_rate"],
        "rows": risk["rows"],
        "defaults": risk["positives"],
        "calibration": calibration(truth, probability, score),
        "cutoff": {
            "score": model.cutoff,
            "rule": model.cutoff_rule,
            "odds_at_cutoff": round(model.card.scaling.odds(model.cutoff), 3),
            "approval_rate": round(float(approved.mean()), 4),
            "default_rate_approved": round(float(truth[approved].mean()), 4) if approved.any() else None,
            "default_rate_declined": round(float(truth[~approved].mean()), 4) if (~approved).any() else None,
        },
        "fairness": {
            column: approval_by_group(groups[held], approved, truth)
            for column, groups in model.data.protected.items()
        },
        "reason_codes": {
            "declined": len(declined),
            "first_reason": dict(first.most_common()),
            "lowest_scores": examples,
        },
    }


def describe(model: CreditModel, metrics: dict[str, Any]) -> dict[str, Any]:
    """What was trained on what, the scaling, the points table and the held-out evaluation (JSON-ready)."""
    table, card, scaling = model.data.table, model.card, model.card.scaling
    return {
        "model": "credit_score",
        "data": table.source,
        "target": table.target,
        "target_meaning": "1 = default (bad); the score ranks the other way: higher is better",
        "rows": len(table.y),
        "rows_without_target": table.rows_without_target,
        "seed": model.seed,
        "split": {
            "held_out_share": HELD_OUT_SHARE, "stratified": True,
            "train_rows": len(model.train_rows), "held_out_rows": len(model.held_rows),
        },
        "inputs": list(card.columns),
        "not_inputs": {**table.ignored, **card.dropped},
        "protected": list(model.data.protected),
        "scaling": {
            "base_score": scaling.base_score, "base_odds": scaling.base_odds, "pdo": scaling.pdo,
            "factor": round(scaling.factor, 6), "offset": round(scaling.offset, 6),
            "base_points": round(card.base_points, 4),
        },
        "points_table": card.points_table(),
        "metrics": metrics,
    }  # fmt: skip


def export_credit_model(model: CreditModel, directory: Path) -> dict[str, Any]:
    """Check ONNX parity on the held-out rows, then write the model, report and model card (returned)."""
    model_bytes = credit_onnx.to_onnx_bytes(model.card, model.inputs)
    checked = credit_onnx.parity(model.card, model_bytes, model.inputs, model.X(model.held_rows))
    if not checked["ok"]:
        raise ParityError(
            f"the ONNX scorecard differs from scikit-learn on the held-out rows: probability by "
            f"{checked['max_probability_difference']:.3g}, score by {checked['max_score_difference']:.3g}"
        )
    report = describe(model, evaluate(model))
    report["onnx"] = {
        "path": str(directory / "model.onnx"),
        "sha256": hashlib.sha256(model_bytes).hexdigest(),
        "bytes": len(model_bytes),
        "inputs": [{"name": i.name, "column": i.column, "dtype": i.dtype} for i in model.inputs],
        "outputs": {
            "probability": "probability of default, (n, 1) float64",
            "score": "points, (n, 1) float64: higher is better",
            "points": "points per input in the order of inputs, (n, inputs) float64: for reason codes",
        },
        "parity": checked,
        "libraries": {
            "scikit-learn": sklearn.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "python": platform.python_version(),
        },
    }  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(model_bytes)
    with (directory / "scorecard.pkl").open("wb") as handle:
        pickle.dump({"scorecard": model.card, "cutoff": model.cutoff}, handle)
    (directory / "report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (directory / "MODEL_CARD.md").write_text(model_card(report), encoding="utf-8")
    return report


def model_card(report: dict[str, Any]) -> str:
    """The model card (Markdown) of a credit scorecard report."""
    m, s, cut = report["metrics"], report["scaling"], report["metrics"]["cutoff"]
    lines = [
        "# Model card: credit_score (scorecard)",
        "",
        f"Trained on `{report['data']}`, target `{report['target']}` ({report['target_meaning']}); seed "
        f"{report['seed']}, {report['split']['train_rows']} training and {report['split']['held_out_rows']} "
        "held-out applicants (stratified split).",
        "",
        "## Scaling",
        "",
        f"Score {s['base_score']:g} at good:bad odds {s['base_odds']:g}:1; every {s['pdo']:g} points double "
        f"the odds (score = {s['offset']:.2f} + {s['factor']:.4f} ln(odds)). Base points "
        f"{s['base_points']:.1f} plus the points of each input's bin.",
        "",
        "## Inputs and points",
        "",
        "| input | bin | training rows | default rate | WoE | points |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for entry in report["points_table"]:
        for b in entry["bins"]:
            rate = "" if b["default_rate"] is None else f"{b['default_rate']:.3f}"
            cells = [entry["input"], b["bin"], b["rows"], rate, f"{b['woe']:.3f}", f"{b['points']:.1f}"]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += ["", "Not inputs:", "", *[f"- `{c}`: {r}" for c, r in report["not_inputs"].items()], ""]
    lines += [
        "## Held-out results",
        "",
        f"- ROC AUC {m['roc_auc']:.3f} (95% bootstrap {m['roc_auc_ci95'][0]:.3f}-"
        f"{m['roc_auc_ci95'][1]:.3f}), Gini {m['gini']:.3f}, KS {m['ks']:.3f}",
        f"- Brier score {m['brier_score']:.4f} (predicting the base rate {m['base_rate']:.3f}: "
        f"{m['brier_baseline']:.4f})",
        f"- Cut-off {cut['score']:.1f} ({cut['rule']}; odds {cut['odds_at_cutoff']:.1f}:1): approves "
        f"{cut['approval_rate']:.1%} of the held-out applicants; default rate approved "
        f"{cut['default_rate_approved']}, declined {cut['default_rate_declined']}",
        "",
        "| score band | rows | predicted default rate | observed |",
        "| --- | --- | --- | --- |",
        *[f"| {c['score_min']:.0f}-{c['score_max']:.0f} | {c['rows']} | {c['predicted_default_rate']:.3f} | "
          f"{c['observed_default_rate']:.3f} |" for c in m["calibration"]],
        "",
        "## Approval rates across protected groups",
        "",
    ]  # fmt: skip
    if not m["fairness"]:
        lines.append(
            "No protected column was given (--protected COL): approval rates across groups not measured."
        )
    for column, fair in m["fairness"].items():
        lines += [
            f"`{column}` (never an input): four-fifths rule {fair['four_fifths_rule']} (lowest ratio "
            f"{fair['lowest_ratio']}).",
            "",
            "| group | rows | approval rate | ratio to highest | observed default rate |",
            "| --- | --- | --- | --- | --- |",
            *[f"| {g['group']} | {g['rows']} | {g['approval_rate']:.3f} | {g['ratio_to_highest']} "
              f"{'(too few to judge)' if g['too_small_to_judge'] else ''} | "
              f"{g['observed_default_rate']:.3f} |"
              for g in fair["groups"]],
            "",
        ]  # fmt: skip
    lines += [
        "",
        "## Use and limits",
        "",
        "Reason codes: for every applicant below the cut-off, the three inputs whose bins lost the most "
        "points against the best bin of the same input (the ONNX output `points` gives them per applicant).",
        "A scorecard learns the past approvals' outcomes only (applicants declined before have no outcome), "
        "and name-based checks cannot see a proxy for a protected attribute under an innocent name: read the "
        "approval-rate ratios before using the score in offers.",
        "",
    ]
    return "\n".join(lines)
