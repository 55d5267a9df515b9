"""credit_score on a customer table: reading it (protected columns apart), the split, the fit, the cut-off.

The table is read as churn_risk reads one (customer_table.py: numeric, categorical and ignored columns, the
same refusals), after the protected-attribute check (credit_protected.py). Columns given with ``--protected``
are ignored as inputs and kept as group labels for the approval-rate report only.

The split is stratified and seeded, a quarter held out (table_model.py's share); bins, WoE, the regression and
the cut-off are fitted on the training part only. The cut-off is a score: given (``cutoff``), or the score
above which ``approval_rate`` of the training applicants fall (default 0.8); an applicant at or above it is
approved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from .credit_binning import MAX_BINS, MIN_BIN_SHARE
from .credit_onnx import model_inputs
from .credit_protected import check_columns, group_labels
from .credit_scorecard import Scaling, Scorecard, fit_scorecard
from .customer_table import CustomerTable, TableError, load_customer_table, parse_target, read_rows
from .table_model import HELD_OUT_SHARE, ModelInput

DEFAULT_APPROVAL_RATE = 0.8
PROTECTED_REASON = "protected attribute (--protected): never an input, used only for the approval-rate report"


@dataclass
class CreditTable:
    """A customer table with its protected columns apart: one group label per labelled row."""

    table: CustomerTable
    protected: dict[str, np.ndarray]


@dataclass
class CreditModel:
    """A fitted scorecard with its data, split, ONNX inputs and cut-off."""

    card: Scorecard
    data: CreditTable
    seed: int
    train_rows: np.ndarray
    held_rows: np.ndarray
    inputs: tuple[ModelInput, ...]
    cutoff: float
    cutoff_rule: str

    def X(self, rows: np.ndarray) -> np.ndarray:
        """The scorecard's input columns of the given table rows."""
        features = self.data.table.features
        columns = np.array([features.index(c) for c in self.card.columns], dtype=np.int64)
        return np.asarray(self.data.table.X[np.ix_(rows, columns)], dtype=object)


def load_credit_table(
    path: Path, target: str, id_columns: tuple[str, ...] = (), protected: tuple[str, ...] = ()
) -> CreditTable:
    """Read a credit table; :class:`TableError` (or its ProtectedColumnError) says why one is refused."""
    header, rows = read_rows(path)
    if target in header:  # otherwise load_customer_table names the missing target
        check_columns(header, target, protected, id_columns)
    table = load_customer_table(path, target, id_columns + protected)
    labelled = parse_target([row[header.index(target)] for row in rows], target) >= 0
    groups = {
        column: group_labels(
            [row[header.index(column)] for row, keep in zip(rows, labelled, strict=True) if keep]
        )
        for column in protected
    }
    ignored = {c: PROTECTED_REASON if c in protected else reason for c, reason in table.ignored.items()}
    return CreditTable(replace(table, ignored=ignored), groups)


def train_credit(
    data: CreditTable,
    seed: int,
    scaling: Scaling | None = None,
    approval_rate: float | None = None,
    cutoff: float | None = None,
    min_bin_share: float = MIN_BIN_SHARE,
    max_bins: int = MAX_BINS,
) -> CreditModel:
    """Split, fit the scorecard on the training part and set the cut-off."""
    table = data.table
    if cutoff is not None and approval_rate is not None:
        raise TableError("give a cut-off score or an approval rate, not both")
    rate = DEFAULT_APPROVAL_RATE if approval_rate is None else approval_rate
    if not 0 < rate <= 1:
        raise TableError(f"the approval rate is a share between 0 and 1, not {rate}")
    train_rows, held_rows = train_test_split(
        np.arange(len(table.y)), test_size=HELD_OUT_SHARE, stratify=table.y, random_state=seed
    )
    card = fit_scorecard(
        table.X[train_rows], table.y[train_rows], table.features, len(table.numeric), scaling or Scaling(),
        min_bin_share, max_bins,
    )  # fmt: skip
    model = CreditModel(card, data, seed, train_rows, held_rows, model_inputs(card, table), 0.0, "")
    if cutoff is None:
        # the lowest score still approved when the best-scoring ``rate`` of training applicants are
        scores = np.sort(card.score(model.X(train_rows)))[::-1]
        model.cutoff = round(float(scores[max(0, int(np.ceil(rate * len(scores))) - 1)]), 4)
        model.cutoff_rule = f"approves {rate:.0%} of the training applicants"
    else:
        model.cutoff, model.cutoff_rule = float(cutoff), "given with --cutoff"
    return model
