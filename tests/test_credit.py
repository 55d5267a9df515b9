"""credit_score: ``drivesight models train credit_score --data FILE --target COLUMN [--protected COL]``.

Applicants from simulators/credit_world.py (hidden default probability; gender and birth_year as protected
columns weakly correlated with real inputs). The scorecard must refuse protected columns as inputs unless
named with --protected (and then keep them out of the model), give reason codes that are the inputs that
cost the most points, double the odds every ``pdo`` points, score in ONNX as in scikit-learn, and refuse bad
files with one error line and exit status 2.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import credit_onnx
from models.credit_protected import ProtectedColumnError, protected_kind
from models.credit_scorecard import Scaling, reason_codes
from models.credit_training import CreditModel, load_credit_table, train_credit
from models.customer_table import TableError
from simulators.credit_world import write_applicants_csv

ROOT = Path(__file__).resolve().parent.parent
PROTECTED = ("gender", "birth_year")


@pytest.fixture(scope="module")
def applicants_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("credit") / "applicants.csv"
    write_applicants_csv(path, rows=4000, seed=3)
    return path


@pytest.fixture(scope="module")
def model(applicants_csv: Path) -> CreditModel:
    return train_credit(load_credit_table(applicants_csv, "defaulted", protected=PROTECTED), seed=11)


def _write(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(header)
        out.writerows(rows)
    return path


@pytest.mark.parametrize(
    "name",
    ["gender", "Sex", "DateOfBirth", "birth_year", "dob", "customer_age", "MaritalStatus", "first_name",
     "Title", "ethnicity", "Religion", "nationality", "foreign_worker", "personal_status_sex", "Photo"],
)  # fmt: skip
def test_protected_names_are_recognised(name: str) -> None:
    assert protected_kind(name) is not None


@pytest.mark.parametrize(
    "name",
    ["vehicle_age", "mileage", "usage_hours", "message_count", "income", "region", "trace", "dealer_name"],
)
def test_ordinary_names_are_not_protected(name: str) -> None:
    assert protected_kind(name) is None


def test_a_protected_column_is_refused_as_an_input(applicants_csv: Path) -> None:
    with pytest.raises(ProtectedColumnError, match=r"'gender'.*--protected gender"):
        load_credit_table(applicants_csv, "defaulted")
    with pytest.raises(ProtectedColumnError, match="'birth_year'"):
        load_credit_table(applicants_csv, "defaulted", protected=("gender",))


def test_protected_columns_only_feed_the_approval_report(model: CreditModel) -> None:
    assert not set(PROTECTED) & set(model.card.columns)
    assert not set(PROTECTED) & {i.column for i in model.inputs}
    assert not set(PROTECTED) & set(model.data.table.features)  # not even offered to the binning
    assert {"debt_to_income", "past_delinquencies"} <= set(model.card.columns)
    assert "applicant_id" not in model.card.columns
    from models.credit_report import evaluate

    fairness = evaluate(model)["fairness"]
    assert set(fairness) == set(PROTECTED)
    groups = {g["group"] for g in fairness["gender"]["groups"]}
    assert groups == {"female", "male", "diverse"}
    assert len(fairness["birth_year"]["groups"]) == 5  # quantile bands of a many-valued number
    for fair in fairness.values():
        judged = [g for g in fair["groups"] if not g["too_small_to_judge"]]
        highest = max(g["approval_rate"] for g in judged)
        for g in fair["groups"]:  # each ratio is the group's approval rate over the highest judged group's
            assert g["ratio_to_highest"] == pytest.approx(g["approval_rate"] / highest, abs=1e-3)
        assert fair["lowest_ratio"] == pytest.approx(min(g["ratio_to_highest"] for g in judged), abs=1e-3)
        assert fair["four_fifths_rule"] == ("passes" if fair["lowest_ratio"] >= 0.8 else "fails")


def test_numeric_bins_are_monotone(model: CreditModel) -> None:
    checked = 0
    for binning in model.card.binnings:
        if binning.numeric and binning.trend != "flat":
            checked += 1
            rates = [b.bads / b.rows for b in binning.bins[:-1]]  # the missing bin stands apart
            steps = np.diff(rates)
            assert np.all(steps >= 0) or np.all(steps <= 0), (binning.column, rates)
            assert min(b.rows for b in binning.bins[:-1]) >= 0.05 * len(model.train_rows) - 1
    assert checked >= 3  # income, debt to income, delinquencies... each with a trend


def test_reason_codes_name_the_inputs_that_cost_the_most_points(model: CreditModel) -> None:
    X = model.X(model.held_rows)
    card = model.card
    points = card.points(X)
    best = np.array([card.best_points(j) for j in range(len(card.columns))])
    low = np.argsort(card.score(X))[:50]
    for i, codes in zip(low, reason_codes(card, X[low]), strict=True):
        assert 1 <= len(codes) <= 3
        lost = best - points[i]
        expected = [card.columns[j] for j in np.argsort(-lost, kind="stable")[: len(codes)]]
        assert [c.column for c in codes] == expected
        assert [c.points_lost for c in codes] == sorted((c.points_lost for c in codes), reverse=True)
        assert all(c.points_lost > 0 for c in codes)
    # an applicant in the best bin of every input has nothing to explain: built from training rows, each
    # input's value taken from a row that has that input's best points
    train = model.X(model.train_rows)
    train_points = card.points(train)
    ideal = train[:1].copy()
    for j in range(len(card.columns)):
        (rows,) = np.nonzero(np.isclose(train_points[:, j], best[j]))
        assert len(rows), card.columns[j]  # every best bin was learnt from training rows
        ideal[0, j] = train[rows[0], j]
    assert card.points(ideal)[0] == pytest.approx(best)
    assert reason_codes(card, ideal) == [[]]


def test_points_double_the_odds_every_pdo(model: CreditModel) -> None:
    scaling = model.card.scaling
    assert scaling.score(np.array([1 / 51]))[0] == pytest.approx(600.0)  # odds 50:1 at 600
    assert scaling.score(np.array([1 / 101]))[0] == pytest.approx(620.0)  # odds 100:1 at 620
    X = model.X(model.held_rows[:200])
    p = model.card.probability(X)
    score = model.card.score(X)
    np.testing.assert_allclose(score, scaling.score(p), atol=1e-8)
    odds = (1 - p) / p
    np.testing.assert_allclose(score[1:] - score[0], scaling.pdo * np.log2(odds[1:] / odds[0]), atol=1e-8)
    wider = train_credit(model.data, seed=11, scaling=Scaling(500, 20, 40))
    np.testing.assert_allclose(wider.card.score(X), 500 + 40 * np.log2(odds / 20), atol=1e-6)


def test_onnx_scores_like_scikit_learn_with_missing_and_unseen_values(model: CreditModel) -> None:
    X = model.X(model.held_rows).copy()
    columns = model.card.columns
    for j, column in enumerate(columns):
        if column in model.data.table.numeric:
            X[:20, j] = math.nan
        else:
            X[:10, j], X[10:20, j] = "", "never seen"
    model_bytes = credit_onnx.to_onnx_bytes(model.card, model.inputs)
    checked = credit_onnx.parity(model.card, model_bytes, model.inputs, X)
    assert checked["ok"], checked
    assert checked["max_probability_difference"] < 1e-9
    assert credit_onnx.to_onnx_bytes(model.card, model.inputs) == model_bytes  # the same bytes again


@pytest.mark.parametrize(
    ("header", "rows", "target", "message"),
    [
        (["income", "y"], [[i, i % 2] for i in range(100)], "defaulted", "no target column 'defaulted'"),
        (["income", "y"], [[i, 0] for i in range(100)], "y", "one class only"),
        (["income", "notes", "y"], [[i, "", i % 2] for i in range(100)], "y", "empty columns .*notes"),
        (["income", "y"], [[i, "maybe"] for i in range(100)], "y", "not binary"),
    ],
)
def test_bad_files_are_refused(tmp_path: Path, header: list[str], rows: list[list[object]], target: str,
                               message: str) -> None:  # fmt: skip
    with pytest.raises(TableError, match=message):
        load_credit_table(_write(tmp_path / "bad.csv", header, rows), target)


def test_unknown_protected_column_is_refused(applicants_csv: Path) -> None:
    with pytest.raises(TableError, match="--protected religion not in the table"):
        load_credit_table(applicants_csv, "defaulted", protected=(*PROTECTED, "religion"))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "simulators.cli", "models", "train", "credit_score", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_the_command_prints_one_json_report_and_writes_the_model(
    applicants_csv: Path, tmp_path: Path
) -> None:
    out = tmp_path / "card"
    result = _cli("--data", str(applicants_csv), "--target", "defaulted", "--protected", "gender",
                  "--protected", "birth_year", "--seed", "5", "--out", str(out), "--approval-rate", "0.7",
                  "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)  # exactly one JSON document
    assert report["model"] == "credit_score" and report["seed"] == 5
    assert not set(PROTECTED) & set(report["inputs"])
    assert report["not_inputs"]["gender"].startswith("protected attribute")
    m = report["metrics"]
    assert m["roc_auc"] > 0.65 and 0.2 < m["ks"] < 1 and m["brier_score"] < m["brier_baseline"]
    assert m["cutoff"]["approval_rate"] == pytest.approx(0.7, abs=0.05)
    assert set(m["fairness"]) == set(PROTECTED)
    assert len(m["calibration"]) == 10 and report["points_table"]
    assert report["onnx"]["parity"]["ok"]
    assert {p.name for p in out.iterdir()} == {"model.onnx", "scorecard.pkl", "report.json", "MODEL_CARD.md"}
    card = (out / "MODEL_CARD.md").read_text()
    assert "four-fifths rule" in card and "| debt_to_income |" in card


def test_the_command_refuses_a_protected_column_with_exit_2(applicants_csv: Path, tmp_path: Path) -> None:
    result = _cli(
        "--data", str(applicants_csv), "--target", "defaulted", "--workdir", str(tmp_path), "--json"
    )
    assert result.returncode == 2
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'gender'" in errors[0] and "--protected gender" in errors[0]
    assert not (tmp_path / "credit_score-table").exists()


def test_the_command_refuses_a_one_class_file_with_exit_2(tmp_path: Path) -> None:
    bad = _write(tmp_path / "one.csv", ["income", "defaulted"], [[1000 + i, 0] for i in range(80)])
    result = _cli("--data", str(bad), "--target", "defaulted", "--workdir", str(tmp_path))
    assert result.returncode == 2 and result.stdout == ""
    assert "one class only" in result.stderr
