"""Portrait quality against the simulator's ground truth (fixed seed).

A simulated population is written as CRM and online files, imported through the real importer, its trips
loaded, and the analytics job run in full. Then: tag precision and recall for the persona-defined tags (eco,
aggressive, night driver, long distance) and the trait tags; adjusted Rand index of the behaviour clusters
against the personas; Spearman rank correlation of each customer's category preferences with the true ones
(mean over customers with linked online accounts); identification precision and recall of account links.
Prints one JSON line.

    python tests/benchmarks/portrait_quality.py                 # 2,000 customers, 60 days
    python tests/benchmarks/portrait_quality.py --customers 300 # smoke size
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.analytics.config import load_config
from cloud.analytics.imports import import_file
from cloud.analytics.run import run_analytics
from cloud.db.migrate import migrate
from simulators.population import CATEGORIES, PERSONA_TAGS, Population, simulate_population
from simulators.population_files import IMPORT_ORDER, load_trips, write_population_files
from tests.helpers import scratch_database


def precision_recall(predicted: set[str], actual: set[str]) -> tuple[float, float]:
    """Precision and recall of a predicted set against the true one (1.0 for an empty denominator)."""
    hit = len(predicted & actual)
    return (hit / len(predicted) if predicted else 1.0, hit / len(actual) if actual else 1.0)


def load(url: str, pop: Population, directory: Path) -> None:
    """Import the population's files and trips into the database at ``url``."""
    files = write_population_files(pop, directory)
    with psycopg.connect(url, autocommit=True) as conn:
        for kind in IMPORT_ORDER:
            import_file(conn, kind, files[kind])
        with conn.transaction():
            load_trips(conn, pop)
        conn.execute("ANALYZE")


def judge(url: str, pop: Population) -> dict[str, Any]:
    """Compare what the analytics stored with the ground truth."""
    from scipy.stats import spearmanr
    from sklearn.metrics import adjusted_rand_score

    ids = pop.customers["customer_id"]
    persona = pop.truth["persona"]
    out: dict[str, Any] = {}
    with psycopg.connect(url) as conn:
        tagged: dict[str, set[str]] = {}
        for customer, tag in conn.execute("SELECT customer_id, tag FROM customer_tags"):
            tagged.setdefault(str(tag), set()).add(str(customer))
        truth = {tag: set(ids[persona == p.value]) for tag, p in PERSONA_TAGS.items()}
        truth["weekend_traveller"] = set(ids[pop.truth["weekend_traveller"]])
        truth["family_use"] = set(ids[pop.truth["family_use"]])
        per_tag = {t: precision_recall(tagged.get(t, set()), truth[t]) for t in truth}
        out["tags"] = {t: {"precision": round(p, 3), "recall": round(r, 3)} for t, (p, r) in per_tag.items()}
        hits = sum(len(tagged.get(t, set()) & truth[t]) for t in PERSONA_TAGS)
        out["tag_precision"] = round(hits / max(1, sum(len(tagged.get(t, set())) for t in PERSONA_TAGS)), 4)
        out["tag_recall"] = round(hits / max(1, sum(len(truth[t]) for t in PERSONA_TAGS)), 4)
        index = {c: i for i, c in enumerate(ids)}
        clusters = conn.execute("SELECT customer_id, cluster FROM customer_clusters").fetchall()
        rows = [index[str(c)] for c, _k in clusters]
        out["cluster_ari"] = round(
            float(adjusted_rand_score(persona[rows], [int(str(k)) for _c, k in clusters])), 4
        )
        out["clustered"] = len(rows)
        scores = np.zeros((len(ids), len(CATEGORIES)))
        have = np.zeros(len(ids), dtype=bool)
        for customer, category, score in conn.execute(
            "SELECT customer_id, category, score FROM customer_preferences"
        ):
            i = index[str(customer)]
            scores[i, CATEGORIES.index(str(category))] = float(str(score))
            have[i] = True
        rhos = [spearmanr(scores[i], pop.truth["preference"][i]).statistic for i in np.flatnonzero(have)]
        out["preference_spearman"] = round(float(np.nanmean(rhos)), 4)
        out["customers_with_preferences"] = int(have.sum())
        owner = pop.truth["account_owner"]
        accounts = pop.accounts["account_id"]
        actual = {(a, ids[o]) for a, o in zip(accounts, owner, strict=True) if o >= 0}
        linked = {
            (str(a), str(c))
            for a, c in conn.execute(
                "SELECT account_id, customer_id FROM identity_links WHERE undone_at IS NULL"
            )
        }
        p, r = precision_recall(linked, actual)
        out["identification_precision"], out["identification_recall"] = round(p, 4), round(r, 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get(
            "DRIVESIGHT_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = parser.parse_args()
    pop = simulate_population(args.customers, args.seed, days=args.days)
    with scratch_database(args.admin_url, "drivesight_pq") as url, tempfile.TemporaryDirectory() as tmp:
        migrate(url)
        load(url, pop, Path(tmp))
        start = time.perf_counter()
        report = run_analytics(
            url, load_config(), full=True, seed=args.seed, progress=lambda m: print(m, file=sys.stderr)
        )
        seconds = time.perf_counter() - start
        result = {"customers": args.customers, "trips": len(pop.trips["customer"]), **judge(url, pop)}
        result["k"] = report["clusters"]["k"]
        result["analytics_s"] = round(seconds, 2)
        print(json.dumps(result))


if __name__ == "__main__":
    main()
