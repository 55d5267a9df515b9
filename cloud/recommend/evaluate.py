"""Offline evaluation: a per-user stratified split, ranking metrics at k, and a run over algorithms.

Protocol (cloud/recommend/README.md): each user's interactions are shuffled with the seed and the first
``round(ratio * n)`` go to training (at least one), the rest to test. An algorithm is fitted on training and
recommends k items to every user of the test set that it knows from training, never an item that user has in
training. Relevance is binary: a test item is relevant (optionally only with a rating at or above
``min_rating``). Metrics follow Microsoft Recommenders' ``python_evaluation`` (averaged over users in both
the test set and the recommendations):

- precision@k = hits / k (k, not the list's length: a short list is penalised);
- recall@k = hits / |relevant|;
- nDCG@k = sum over hits of 1 / log2(1 + rank), over the same for the first min(k, |relevant|) ranks;
- MAP@k = sum over hits of (hits so far / rank), over min(k, |relevant|) (their ``map_at_k``); ``map``
  divides by |relevant| instead (their ``map``, the "MAP" of their benchmark tables);
- coverage = distinct recommended items / items in training.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .algorithms import make
from .data import Interactions

log = logging.getLogger(__name__)


def stratified_split(
    interactions: Interactions, ratio: float = 0.75, seed: int = 42
) -> tuple[Interactions, Interactions]:
    """Per user, a random ``ratio`` of their interactions to train and the rest to test (seeded)."""
    if not 0 < ratio < 1:
        raise ValueError("ratio must be between 0 and 1")
    rng = np.random.default_rng(seed)
    # shuffle all rows once, then a stable sort by user keeps each user's rows in shuffled order
    order = rng.permutation(len(interactions))
    order = order[np.argsort(interactions.users[order], kind="stable")]
    users = interactions.users[order]
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    counts = np.diff(np.r_[starts, len(users)])
    n_train = np.maximum(np.round(ratio * counts).astype(np.int64), 1)
    position = np.arange(len(users)) - np.repeat(starts, counts)
    in_train = position < np.repeat(n_train, counts)
    train_rows = np.sort(order[in_train])
    test_rows = np.sort(order[~in_train])
    return interactions.take(train_rows), interactions.take(test_rows)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Ranking metrics at k, averaged over ``users``."""

    precision_at_k: float
    recall_at_k: float
    ndcg_at_k: float
    map_at_k: float
    map: float
    coverage: float
    users: int


def ranking_metrics(
    recommended: Mapping[str, Sequence[str]],
    relevant: Mapping[str, set[str]],
    k: int,
    catalogue_size: int,
) -> Metrics:
    """Precision, recall, nDCG, MAP at ``k`` over users in both mappings; coverage over ``catalogue_size``."""
    users = [u for u in relevant if u in recommended and relevant[u]]
    if not users:
        return Metrics(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    sums = np.zeros(5)
    shown: set[str] = set()
    for u in users:
        items = list(recommended[u])[:k]
        shown.update(items)
        rel = relevant[u]
        hits = np.array([i in rel for i in items], dtype=bool)
        n_hits = int(hits.sum())
        ranks = np.flatnonzero(hits) + 1
        ideal = min(k, len(rel))
        precisions = np.arange(1, n_hits + 1) / ranks
        sums += (
            n_hits / k,
            n_hits / len(rel),
            discounts[ranks - 1].sum() / discounts[:ideal].sum(),
            precisions.sum() / ideal,
            precisions.sum() / len(rel),
        )
    p, r, ndcg, map_k, map_all = (float(x) / len(users) for x in sums)
    coverage = len(shown) / catalogue_size if catalogue_size else 0.0
    return Metrics(p, r, ndcg, map_k, map_all, coverage, len(users))


def relevant_items(test: Interactions, min_rating: float | None = None) -> dict[str, set[str]]:
    """Each test user's relevant items: every test item, or those rated at least ``min_rating``."""
    keep = np.ones(len(test), dtype=bool) if min_rating is None else test.weights >= min_rating
    return test.take(np.flatnonzero(keep)).pairs_by_user() if keep.any() else {}


def evaluate(
    names: Iterable[str],
    train: Interactions,
    test: Interactions,
    k: int,
    *,
    min_rating: float | None = None,
    seed: int = 0,
    params: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Fit each algorithm on ``train``, recommend k to every test user known from training, score against
    ``test``. One dict per algorithm: name, the metrics, users evaluated, seconds (fit and top-k)."""
    relevant = relevant_items(test, min_rating)
    users = [u for u in relevant if u in train.user_index]
    skipped = len(relevant) - len(users)
    if skipped:
        log.warning("%d test users have no training interactions and are not evaluated", skipped)
    results = []
    for name in names:
        started = time.perf_counter()
        model = make(name, seed=seed, **dict((params or {}).get(name, {})))
        model.fit(train)
        fitted = time.perf_counter()
        top = model.recommend_all(users, k)
        seconds = time.perf_counter() - started
        m = ranking_metrics(top.as_dict(), relevant, k, len(train.item_ids))
        row: dict[str, Any] = {"algorithm": name, **{key: _round(v) for key, v in asdict(m).items()}}
        row |= {"k": k, "fit_seconds": round(fitted - started, 3), "seconds": round(seconds, 3)}
        log.info("%s: precision@%d %.4f in %.1f s", name, k, m.precision_at_k, seconds)
        results.append(row)
    return results


def _round(value: float | int) -> float | int:
    return value if isinstance(value, int) else round(value, 6) if math.isfinite(value) else value
