"""``itemknn``: item-to-item cosine similarity on interactions, shrunk, top-N neighbours per item.

    sim(i, j) = <r_i, r_j> / (|r_i| |r_j| + shrink)

over the item columns r of the user x item matrix (binary by default: whether a user touched the item). The
shrink term pulls similarities resting on few common users towards 0. Each item keeps its ``neighbours``
most similar items; a user's score for item j is the sum over the user's items i of r_ui * sim(i, j), so a
recommendation's reason names the history items that contributed most.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import scipy.sparse as sp

from .base import BaseRecommender, top_per_group
from .data import Interactions

#: item rows of the similarity computed at once (a block is BLOCK x items dense)
BLOCK = 512


class ItemKNN(BaseRecommender):
    """Item-based collaborative filtering (cosine with shrinkage, top-N neighbours)."""

    name: ClassVar[str] = "itemknn"

    similarity_: sp.csr_matrix
    history_: sp.csr_matrix

    def __init__(self, neighbours: int = 10, shrink: float = 50.0, binary: bool = True) -> None:
        self.neighbours = neighbours
        self.shrink = shrink
        self.binary = binary

    def _fit(self, interactions: Interactions) -> None:
        self.history_ = self.seen_ if self.binary else self.matrix_
        self.similarity_ = cosine_neighbours(self.history_, self.neighbours, self.shrink)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray((self.history_[rows] @ self.similarity_).toarray())

    def _explain_pairs(self, rows: np.ndarray, items: np.ndarray) -> list[tuple[str, ...]]:
        return [(words,) if words else ("popular",) for words in self.similar_reasons(rows, items)]

    def similar_reasons(self, rows: np.ndarray, items: np.ndarray, most: int = 3) -> list[str | None]:
        """Per (user code, item code) pair, "similar to items you viewed: A, B" naming the user's history
        items that contributed most to the item's score (r_ui * sim(i, j)); None when none did."""
        history = self.history_[rows]
        pair = np.repeat(np.arange(len(rows)), np.diff(history.indptr))
        # each history entry's share of its pair's score: one sparse lookup for all of them
        sims = np.asarray(self.similarity_[history.indices, items[pair]]).ravel()
        contrib = sims * history.data
        ids = self.catalogue_.item_ids
        return [
            "similar to items you viewed: " + ", ".join(ids[history.indices[e]] for e in top) if top else None
            for top in top_per_group(pair, contrib, len(rows), most)
        ]


def cosine_neighbours(matrix: sp.csr_matrix, neighbours: int, shrink: float) -> sp.csr_matrix:
    """Items x items: each row's ``neighbours`` largest shrunk cosine similarities (no self-similarity)."""
    n_items = matrix.shape[1]
    by_item = matrix.T.tocsr()
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=0)).ravel())
    keep = min(neighbours, max(n_items - 1, 0))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for start in range(0, n_items, BLOCK):
        stop = min(start + BLOCK, n_items)
        dots = np.asarray((by_item[start:stop] @ matrix).toarray())
        sims = dots / (norms[start:stop, None] * norms[None, :] + shrink + 1e-12)
        sims[np.arange(stop - start), np.arange(start, stop)] = 0.0
        if keep == 0:
            continue
        top = np.argpartition(-sims, keep - 1, axis=1)[:, :keep]
        top_vals = np.take_along_axis(sims, top, axis=1)
        nonzero = top_vals > 0
        rows.append(np.repeat(np.arange(start, stop), keep)[nonzero.ravel()])
        cols.append(top[nonzero])
        vals.append(top_vals[nonzero])
    if not rows:
        return sp.csr_matrix((n_items, n_items))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_items, n_items)
    )
