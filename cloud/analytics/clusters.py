"""Clustering customers by driving behaviour: standardized features, k by silhouette, words per cluster.

Criterion for k: every k in the configured range is fitted (k-means, 4 starts, fixed seed) on all eligible
customers, and the one with the highest mean silhouette on a random sample (at most ``sample`` customers,
since the silhouette costs the square of the rows) wins; ties go to the smaller k. Each cluster is described
by the features whose centroid lies at least half a standard deviation from the population mean, strongest
first, with the cluster's and the population's mean values, e.g. "high night share (0.48; all 0.15)".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import Clustering


def _words(name: str) -> str:
    return name.replace("_", " ").replace("per 100km", "per 100 km").replace(" kmh", " (km/h)")


def describe(z: np.ndarray, means: np.ndarray, overall: np.ndarray, names: list[str]) -> str:
    """A cluster in words from its standardized centroid ``z`` and its raw means."""
    order = [j for j in np.argsort(-np.abs(z)) if abs(z[j]) >= 0.5][:3]
    if not order:
        return "close to the average on every feature"
    return ", ".join(
        f"{'high' if z[j] > 0 else 'low'} {_words(names[j])} ({means[j]:.3g}; all {overall[j]:.3g})"
        for j in order
    )


def fit_clusters(x: np.ndarray, names: list[str], settings: Clustering, seed: int) -> dict[str, Any]:
    """Fit the cluster model on the rows of ``x`` (no NaN); return it as a JSON-able dict."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(z), min(len(z), settings.sample), replace=False)
    lo, hi = settings.k_range
    tried: dict[int, float] = {}
    best: Any = None
    for k in range(lo, min(hi, len(z) - 1) + 1):
        model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(z)
        labels = model.labels_[sample]
        if len(set(labels)) < 2:
            continue
        tried[k] = float(silhouette_score(z[sample], labels))
        if best is None or tried[k] > tried[best[0]] + 1e-9:
            best = (k, model)
    if best is None:
        raise ValueError(f"too few customers ({len(z)}) to cluster")
    k, model = best
    labels = model.labels_
    centroids = model.cluster_centers_
    clusters = []
    for c in range(k):
        members = labels == c
        means = x[members].mean(axis=0)
        clusters.append(
            {
                "cluster": c,
                "size": int(members.sum()),
                "centroid": [round(float(v), 6) for v in centroids[c]],
                "means": dict(zip(names, [round(float(v), 4) for v in means], strict=True)),
                "description": describe(centroids[c], means, mean, names),
            }
        )
    return {
        "features": names,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "k": k,
        "criterion": {"name": "mean silhouette", "sample": len(sample), "by_k": tried},
        "clusters": clusters,
    }


def assign(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    """The nearest centroid (in the model's standardized space) per row of ``x``."""
    z = (x - np.asarray(model["mean"])) / np.asarray(model["scale"])
    centroids = np.asarray([c["centroid"] for c in model["clusters"]])
    distances = ((z[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2)
    labels: np.ndarray = distances.argmin(axis=1)
    return labels
