"""The algorithms by name, with the defaults chosen on a validation split carved from MovieLens training data.

The defaults were tuned on a per-user 75/25 split of the 75% training part (never on the test part); see
cloud/recommend/README.md for the grid and the figures.
"""

from __future__ import annotations

from typing import Any

from .base import BaseRecommender
from .data import RecommendError
from .itemknn import ItemKNN
from .learned import ALS, BPR
from .personalized import Personalized
from .popularity import Popularity

NAMES = ("popularity", "itemknn", "als", "bpr", "personalized")


class UnknownAlgorithmError(RecommendError):
    """A name that is not one of :data:`NAMES`."""


def make(name: str, seed: int = 0, **params: Any) -> BaseRecommender:
    """A new, unfitted recommender ``name`` with its defaults (``params`` override them); ``seed`` fixes
    the learned models' randomness."""
    if name == "popularity":
        return Popularity(**params)
    if name == "itemknn":
        return ItemKNN(**params)
    if name == "als":
        return ALS(**{"seed": seed, **params})
    if name == "bpr":
        return BPR(**{"seed": seed, **params})
    if name == "personalized":
        return Personalized(**{"als": ALS(seed=seed), **params})
    raise UnknownAlgorithmError(f"unknown algorithm {name!r}: choose from {', '.join(NAMES)}")
