"""``als`` and ``bpr``: learned implicit-feedback models from the ``implicit`` library (CPU).

ALS factorises the confidence-weighted user x item matrix (Hu, Koren, Volinsky 2008: confidence
``alpha * r``); BPR learns a ranking of each user's items above sampled others (Rendle et al. 2009). Both
run with ``num_threads=1`` and a fixed ``random_state``, so the same data and seed give the same factors
(tested). A user's score for item j is ``user_factors[u] . item_factors[j]``; the reason names the history
items closest to j in the learned item space.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import numpy as np

from .base import BaseRecommender, top_per_group
from .data import Interactions

log = logging.getLogger(__name__)


class _Factorisation(BaseRecommender):
    """Scores and reasons from user and item factors; subclasses build the ``implicit`` model."""

    user_factors_: np.ndarray
    item_factors_: np.ndarray
    binary: bool
    seed: int

    def _model(self) -> Any:
        raise NotImplementedError

    def _fit(self, interactions: Interactions) -> None:
        # implicit warns (when the model is built) about a multi-threaded BLAS, which slows its solver down;
        # one BLAS thread is also what makes the factors reproducible
        import implicit.cpu.als  # noqa: F401  (loads the BLAS library first, so that the limit reaches it)
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        data = (self.seen_ if self.binary else self.matrix_).astype(np.float32)
        with threadpool_limits(1, "blas"):
            model = self._model()
            model.fit(data, show_progress=False)
        self.user_factors_ = np.asarray(model.user_factors, dtype=np.float64)
        self.item_factors_ = np.asarray(model.item_factors, dtype=np.float64)

    def _score(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors_[rows] @ self.item_factors_.T)

    def _explain_pairs(self, rows: np.ndarray, items: np.ndarray) -> list[tuple[str, ...]]:
        return [("liked by customers with a history like yours", *s) for s in self.close_reasons(rows, items)]

    def close_reasons(self, rows: np.ndarray, items: np.ndarray, most: int = 2) -> list[tuple[str, ...]]:
        """Per (user code, item code) pair, ("close to items you viewed: A, B",) naming the user's history
        items closest to the item by cosine in the item factor space, or ()."""
        history = self.seen_[rows]
        pair = np.repeat(np.arange(len(rows)), np.diff(history.indptr))
        v = self.item_factors_
        norms = np.linalg.norm(v, axis=1) + 1e-12
        near, target = history.indices, items[pair]
        cos = np.einsum("ij,ij->i", v[near], v[target]) / (norms[near] * norms[target])
        ids = self.catalogue_.item_ids
        return [
            ("close to items you viewed: " + ", ".join(ids[near[e]] for e in top),) if top else ()
            for top in top_per_group(pair, cos, len(rows), most)
        ]


class ALS(_Factorisation):
    """Implicit-feedback alternating least squares (``implicit.cpu.als``)."""

    name: ClassVar[str] = "als"

    def __init__(
        self,
        factors: int = 16,
        regularization: float = 30.0,
        alpha: float = 5.0,
        iterations: int = 15,
        binary: bool = True,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.binary = binary
        self.seed = seed

    def _model(self) -> Any:
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=self.factors,
            regularization=self.regularization,
            alpha=self.alpha,
            iterations=self.iterations,
            num_threads=1,
            random_state=self.seed,
        )


class BPR(_Factorisation):
    """Bayesian personalised ranking (``implicit.cpu.bpr``)."""

    name: ClassVar[str] = "bpr"

    def __init__(
        self,
        factors: int = 128,
        learning_rate: float = 0.01,
        regularization: float = 0.1,
        iterations: int = 100,
        binary: bool = True,
        seed: int = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.binary = binary
        self.seed = seed

    def _model(self) -> Any:
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=self.factors,
            learning_rate=self.learning_rate,
            regularization=self.regularization,
            iterations=self.iterations,
            num_threads=1,
            random_state=self.seed,
        )
