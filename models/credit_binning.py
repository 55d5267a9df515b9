"""Binning and weight of evidence: each input of a scorecard cut into a few bins, each bin given its WoE.

Numbers: pre-bins at the training quantiles (``PREBINS`` of them), merged so that the default rate rises or
falls monotonically across them (pool-adjacent-violators, in whichever direction keeps more information
value: a scorecard whose points go up and down along income cannot be explained to an applicant), then bins
holding less than ``min_bin_share`` of the training rows are merged into their closest neighbour, and the
closest pairs until at most ``max_bins`` remain. A value is in bin ``i`` when it is above ``i`` thresholds;
values are compared as float32, as the ONNX graph does, so both put a value on a threshold in the same bin.
A missing number has a bin of its own (after the others).

Categories: values on fewer than ``min_bin_share`` of the rows share an "other" bin, which also takes values
never seen in training; the remaining values are merged by default rate down to ``max_bins``; a missing
value ("") is a category like any other.

Weight of evidence of a bin: ``ln(share of all goods in it / share of all bads in it)`` (target 1 = bad),
counts smoothed by 0.5 so that a bin without bads has a finite WoE; a bin without training rows (no missing
numbers in training, no rare categories) has WoE 0, a neutral score. Information value: ``sum((share of
goods - share of bads) * WoE)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

PREBINS = 20
MIN_BIN_SHARE = 0.05
MAX_BINS = 8
SMOOTHING = 0.5
MISSING_LABEL = "missing"
OTHER_LABEL = "other"


@dataclass(frozen=True, slots=True)
class Bin:
    """One bin of an input: what it holds, its training rows and bads, and its weight of evidence."""

    label: str
    rows: int
    bads: int
    woe: float


@dataclass
class InputBinning:
    """How one input is binned. Numeric: ``thresholds`` (float32, ascending), the missing bin last.
    Categorical: ``categories`` maps a value to its bin; others and unseen values go to ``other_bin``."""

    column: str
    numeric: bool
    bins: tuple[Bin, ...]
    thresholds: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.float32))
    categories: dict[str, int] = field(default_factory=dict)
    other_bin: int = 0
    trend: str = ""  # numeric: "ascending" or "descending" default rate with the value (or "flat")

    @property
    def woe(self) -> np.ndarray:
        """Weight of evidence per bin (float64)."""
        return np.array([b.woe for b in self.bins], dtype=np.float64)

    @property
    def missing_bin(self) -> int:
        """The index of a numeric input's missing bin (the last)."""
        return len(self.bins) - 1

    @property
    def information_value(self) -> float:
        """How well the bins separate goods from bads (0.02 weak, 0.1 medium, 0.3 strong)."""
        bads = sum(b.bads for b in self.bins)
        goods = sum(b.rows - b.bads for b in self.bins)
        return float(sum(((b.rows - b.bads) / goods - b.bads / bads) * b.woe for b in self.bins if b.rows))

    def bin_index(self, values: np.ndarray) -> np.ndarray:
        """The bin (int64) of each value: floats (NaN missing) or strings ("" missing)."""
        if self.numeric:
            x = np.asarray(values, dtype=np.float64).astype(np.float32)
            index = np.searchsorted(self.thresholds, x, side="left").astype(np.int64)  # thresholds below x
            index[np.isnan(x)] = self.missing_bin
            return index
        return np.array([self.categories.get(str(v), self.other_bin) for v in values], dtype=np.int64)


def _woe(rows: np.ndarray, bads: np.ndarray) -> np.ndarray:
    """Smoothed WoE per bin; 0 for an empty bin."""
    goods = rows - bads
    total_goods, total_bads = goods.sum(), bads.sum()
    woe = np.log(
        ((goods + SMOOTHING) / (total_goods + SMOOTHING)) / ((bads + SMOOTHING) / (total_bads + SMOOTHING))
    )
    return np.where(rows > 0, woe, 0.0)


def _iv(rows: np.ndarray, bads: np.ndarray) -> float:
    goods = rows - bads
    return float(np.sum((goods / goods.sum() - bads / bads.sum()) * _woe(rows, bads)))


def _pool(rows: list[int], bads: list[int], ascending: bool) -> list[list[int]]:
    """Pool adjacent violators: groups of consecutive pre-bins whose default rates are monotone."""
    blocks: list[list[int]] = []  # [first pre-bin, last pre-bin, rows, bads]
    for i, (n, b) in enumerate(zip(rows, bads, strict=True)):
        blocks.append([i, i, n, b])
        while len(blocks) > 1:
            (_, _, n1, b1), (_, _, n2, b2) = blocks[-2], blocks[-1]
            rising = b2 * n1 >= b1 * n2  # rate2 >= rate1 without dividing
            if rising == ascending or b2 * n1 == b1 * n2:
                break
            last = blocks.pop()
            blocks[-1] = [blocks[-1][0], last[1], n1 + n2, b1 + b2]
    return blocks


def _merge_small(blocks: list[list[int]], min_rows: int, max_bins: int) -> list[list[int]]:
    """Merge bins below ``min_rows`` into the neighbour of closest rate, then the closest pairs down to
    ``max_bins``; merging neighbours keeps a monotone sequence monotone."""

    def rate(block: list[int]) -> float:
        return block[3] / block[2]

    def merge(i: int) -> None:  # block i with block i + 1
        a, b = blocks[i], blocks.pop(i + 1)
        blocks[i] = [a[0], b[1], a[2] + b[2], a[3] + b[3]]

    while len(blocks) > 1:
        small = min(range(len(blocks)), key=lambda i: blocks[i][2])
        if blocks[small][2] >= min_rows:
            break
        if small == 0:
            merge(0)
        elif small == len(blocks) - 1:
            merge(small - 1)
        else:
            left = abs(rate(blocks[small]) - rate(blocks[small - 1]))
            right = abs(rate(blocks[small]) - rate(blocks[small + 1]))
            merge(small - 1 if left <= right else small)
    while len(blocks) > max_bins:
        closest = min(range(len(blocks) - 1), key=lambda i: abs(rate(blocks[i]) - rate(blocks[i + 1])))
        merge(closest)
    return blocks


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def bin_numeric(
    column: str, values: np.ndarray, y: np.ndarray, min_bin_share: float, max_bins: int
) -> InputBinning:
    """Monotone bins of a numeric input (see the module docstring)."""
    x = np.asarray(values, dtype=np.float64).astype(np.float32)
    filled = ~np.isnan(x)
    min_rows = max(1, math.ceil(min_bin_share * len(x)))
    quantiles = np.linspace(0, 1, PREBINS + 1)[1:-1]
    candidates = (
        np.unique(np.quantile(x[filled], quantiles).astype(np.float32)) if filled.any() else np.empty(0)
    )
    candidates = candidates.astype(np.float32)
    index = np.searchsorted(candidates, x[filled], side="left")
    rows = np.bincount(index, minlength=len(candidates) + 1)
    bads = np.bincount(index, weights=y[filled], minlength=len(candidates) + 1).astype(np.int64)
    keep = rows > 0
    uppers = np.append(candidates, np.float32(np.inf))[keep]  # each pre-bin's upper threshold
    rows, bads = rows[keep], bads[keep]
    best: tuple[float, str, list[list[int]]] | None = None
    for ascending in (True, False):
        blocks = _merge_small(_pool(list(rows), list(bads), ascending), min_rows, max_bins)
        sizes = np.array([b[2] for b in blocks])
        hits = np.array([b[3] for b in blocks])
        iv = _iv(np.append(sizes, 0), np.append(hits, 0)) if len(blocks) > 1 else 0.0
        if best is None or iv > best[0]:
            best = (iv, "ascending" if ascending else "descending", blocks)
    assert best is not None
    _, trend, blocks = best
    blocks = blocks or [[0, 0, 0, 0]]  # no number in the training rows: one bin (the missing one decides)
    thresholds = np.array([uppers[b[1]] for b in blocks[:-1]], dtype=np.float32)
    edges = [-math.inf, *[float(t) for t in thresholds], math.inf]
    labels = [
        f"({_fmt(lo)}, {_fmt(hi)}]" if hi != math.inf else f"> {_fmt(lo)}"
        for lo, hi in itertools.pairwise(edges)
    ]
    if len(labels) > 1:
        labels[0] = f"<= {_fmt(edges[1])}"
    else:
        labels[0], trend = "any value", "flat"
    missing = ~filled
    all_rows = np.array([b[2] for b in blocks] + [int(missing.sum())])
    all_bads = np.array([b[3] for b in blocks] + [int(y[missing].sum())])
    woe = _woe(all_rows, all_bads)
    bins = tuple(
        Bin(label, int(n), int(b), float(w))
        for label, n, b, w in zip([*labels, MISSING_LABEL], all_rows, all_bads, woe, strict=True)
    )
    return InputBinning(column, numeric=True, bins=bins, thresholds=thresholds, trend=trend)


def bin_categorical(
    column: str, values: np.ndarray, y: np.ndarray, min_bin_share: float, max_bins: int
) -> InputBinning:
    """Bins of a categorical input: frequent values (merged by default rate), then "other"."""
    text = np.asarray(values, dtype=str)
    min_rows = max(1, math.ceil(min_bin_share * len(text)))
    kinds, inverse = np.unique(text, return_inverse=True)
    counts = np.bincount(inverse)
    hits = np.bincount(inverse, weights=y).astype(np.int64)
    frequent = [i for i in range(len(kinds)) if counts[i] >= min_rows]
    frequent.sort(key=lambda i: (hits[i] / counts[i], kinds[i]))  # by default rate: merging neighbours
    blocks = _merge_small(
        [[k, k, int(counts[i]), int(hits[i])] for k, i in enumerate(frequent)], 1, max_bins - 1
    )
    categories: dict[str, int] = {}
    labels = []
    for number, (first, last, _, _) in enumerate(blocks):
        members = [str(kinds[frequent[k]]) for k in range(first, last + 1)]
        categories.update(dict.fromkeys(members, number))
        labels.append(", ".join(repr(m) if m else MISSING_LABEL for m in sorted(members)))
    rare = [i for i in range(len(kinds)) if counts[i] < min_rows]
    all_rows = np.array([b[2] for b in blocks] + [int(counts[rare].sum())])
    all_bads = np.array([b[3] for b in blocks] + [int(hits[rare].sum())])
    woe = _woe(all_rows, all_bads)
    bins = tuple(
        Bin(label, int(n), int(b), float(w))
        for label, n, b, w in zip([*labels, OTHER_LABEL], all_rows, all_bads, woe, strict=True)
    )
    return InputBinning(column, numeric=False, bins=bins, categories=categories, other_bin=len(blocks))


def fit_binnings(
    X: np.ndarray,
    y: np.ndarray,
    columns: tuple[str, ...],
    numeric: int,
    min_bin_share: float = MIN_BIN_SHARE,
    max_bins: int = MAX_BINS,
) -> tuple[InputBinning, ...]:
    """Bin every column of ``X`` (the first ``numeric`` columns numbers, the others strings) against ``y``."""
    return tuple(
        (bin_numeric if j < numeric else bin_categorical)(column, X[:, j], y, min_bin_share, max_bins)
        for j, column in enumerate(columns)
    )


def woe_matrix(binnings: tuple[InputBinning, ...], X: np.ndarray) -> np.ndarray:
    """The WoE of each row's bin per input (float64, one column per binning, in ``X``'s column order)."""
    return np.column_stack([b.woe[b.bin_index(X[:, j])] for j, b in enumerate(binnings)])
