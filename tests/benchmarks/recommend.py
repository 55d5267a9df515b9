"""Recommenders: accuracy at k and time per algorithm, on interaction files or a synthetic dataset.

With ``--train``/``--test`` files (or ``--data FILE``, split per user 75/25 with ``--split-seed``), each
algorithm is fitted on train and recommends k items to every test user; without files a synthetic dataset
with planted taste groups and a popularity skew stands in. Prints one JSON line: per algorithm the metrics
(cloud/recommend/README.md defines them), fit and top-k seconds, and precision and nDCG as ratios to
``popularity`` measured in the same run. ``--tune`` instead carves a validation split out of the training
data (never the test data) and prints the best parameters of each grid on it.

    python tests/benchmarks/recommend.py                                   # synthetic, 1,000 x 1,700
    python tests/benchmarks/recommend.py --users 300 --items 400           # smoke size (CI)
    python tests/benchmarks/recommend.py --data /tmp/ml100k/u.data         # MovieLens 100k
    python tests/benchmarks/recommend.py --data /tmp/ml100k/u.data --tune  # the grids, on validation
    python tests/benchmarks/recommend.py --users 100000 --items 1700 --algorithm personalized --topk-only
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.recommend.algorithms import NAMES, make
from cloud.recommend.data import Interactions
from cloud.recommend.evaluate import evaluate, ranking_metrics, relevant_items, stratified_split
from cloud.recommend.files import read_interactions

#: the grids --tune searches (cloud/recommend/README.md reports what they chose)
GRIDS: dict[str, dict[str, list[Any]]] = {
    "popularity": {"half_life_days": [None, 30, 90, 365], "use_weights": [False, True]},
    "itemknn": {"neighbours": [10, 20, 50, 100, 200, 400], "shrink": [0, 10, 50, 200]},
    "als": {
        "factors": [8, 16, 24, 32, 48, 64],
        "regularization": [0.1, 1, 10, 30, 100],
        "alpha": [1, 2, 5, 10],
    },
    "bpr": {
        "factors": [32, 64, 128],
        "learning_rate": [0.01, 0.05, 0.1],
        "regularization": [0.001, 0.01, 0.1],
        "iterations": [100, 300],
    },
    "personalized": {
        "knn_weight": [0.0, 0.25, 0.5, 1.0, 2.0],
        "als_weight": [0.0, 0.5, 1.0, 2.0],
        "popularity_weight": [0.0, 0.05, 0.2],
    },
}


def synthetic(users: int, items: int, groups: int, per_user: int, seed: int) -> Interactions:
    """Users in taste groups, each drawing mostly from its own item group, item popularity Zipf-skewed
    within groups, some draws from everywhere; timestamps over 90 days."""
    rng = np.random.default_rng(seed)
    item_group = rng.integers(0, groups, size=items)
    skew = 1.0 / np.arange(1, items + 1) ** 0.8
    skew = skew[rng.permutation(items)]
    user_group = rng.integers(0, groups, size=users)
    rows_u: list[np.ndarray] = []
    rows_i: list[np.ndarray] = []
    for g in range(groups):
        members = np.flatnonzero(user_group == g)
        own = np.where(item_group == g, skew * 8.0, skew)
        p = own / own.sum()
        for u in members:
            n = max(3, int(rng.poisson(per_user)))
            picked = rng.choice(items, size=min(n, items), replace=False, p=p)
            rows_u.append(np.full(len(picked), u))
            rows_i.append(picked)
    u = np.concatenate(rows_u)
    i = np.concatenate(rows_i)
    ratings = rng.integers(1, 6, size=len(u)).astype(float)
    stamps = 1_700_000_000.0 + rng.uniform(0, 90 * 86_400, size=len(u))
    return Interactions.from_arrays([f"U{x}" for x in u], [f"I{x}" for x in i], ratings, stamps)


def tune(train: Interactions, k: int, names: list[str], seed: int) -> dict[str, Any]:
    """Each algorithm's grid on a validation split of ``train``: the best by nDCG@k, and its figures."""
    fit, validation = stratified_split(train, 0.75, seed=seed + 1)
    relevant = relevant_items(validation)
    users = [u for u in relevant if u in fit.user_index]
    out: dict[str, Any] = {}
    for name in names:
        grid = GRIDS[name]
        best: tuple[float, float, dict[str, Any]] | None = None
        started = time.perf_counter()
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values, strict=True))
            model = make(name, seed=seed, **params).fit(fit)
            m = ranking_metrics(model.recommend_all(users, k).as_dict(), relevant, k, len(fit.item_ids))
            print(
                f"{name} {params}: precision {m.precision_at_k:.4f} nDCG {m.ndcg_at_k:.4f}", file=sys.stderr
            )
            if best is None or m.ndcg_at_k > best[1]:
                best = (m.precision_at_k, m.ndcg_at_k, params)
        assert best is not None
        out[name] = {
            "params": best[2],
            "precision_at_k": round(best[0], 4),
            "ndcg_at_k": round(best[1], 4),
            "tried": int(np.prod([len(v) for v in grid.values()])),
            "seconds": round(time.perf_counter() - started, 1),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path)
    parser.add_argument("--test", type=Path)
    parser.add_argument("--data", type=Path, help="one file, split per user 75/25 (--split-seed)")
    parser.add_argument("--split-seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=1000, help="synthetic: users")
    parser.add_argument("--items", type=int, default=1700, help="synthetic: items")
    parser.add_argument("--groups", type=int, default=8, help="synthetic: taste groups")
    parser.add_argument("--per-user", type=int, default=60, help="synthetic: mean interactions per user")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--algorithm", action="append", choices=NAMES, help="repeat; default all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune", action="store_true", help="grid search on a validation split of train")
    parser.add_argument("--topk-only", action="store_true", help="time fit + top-k for every user only")
    args = parser.parse_args()
    names = args.algorithm or list(NAMES)
    started = time.perf_counter()
    if args.train and args.test:
        train, test = read_interactions(args.train), read_interactions(args.test)
        dataset = f"{args.train.name} / {args.test.name}"
    else:
        if args.data:
            data, dataset = read_interactions(args.data), args.data.name
        else:
            data = synthetic(args.users, args.items, args.groups, args.per_user, args.seed)
            dataset = f"synthetic {args.users} x {args.items}, {args.groups} groups, seed {args.seed}"
        train, test = stratified_split(data, 0.75, seed=args.split_seed)
    shape = {
        "dataset": dataset,
        "users": len(train.user_ids),
        "items": len(train.item_ids),
        "train": len(train),
        "test": len(test),
        "k": args.k,
    }
    if args.tune:
        print(
            json.dumps(
                shape | {"tuned_on": "validation split of train", "best": tune(train, args.k, names, 0)}
            )
        )
        return
    if args.topk_only:
        timings = {}
        for name in names:
            t0 = time.perf_counter()
            model = make(name, seed=args.seed).fit(train)
            t1 = time.perf_counter()
            top = model.recommend_all(list(train.user_ids), args.k)
            t2 = time.perf_counter()
            timings[name] = {
                "fit_s": round(t1 - t0, 3),
                "topk_s": round(t2 - t1, 3),
                "rows": int((top.items >= 0).sum()),
            }
        print(json.dumps(shape | {"topk": timings}))
        return
    results = {r.pop("algorithm"): r for r in evaluate(names, train, test, args.k, seed=args.seed)}
    base = results.get("popularity")
    for r in results.values():
        if base and base["precision_at_k"] > 0:
            r["precision_vs_popularity"] = round(r["precision_at_k"] / base["precision_at_k"], 3)
            r["ndcg_vs_popularity"] = round(r["ndcg_at_k"] / base["ndcg_at_k"], 3)
    print(json.dumps(shape | {"algorithms": results, "seconds": round(time.perf_counter() - started, 2)}))


if __name__ == "__main__":
    main()
