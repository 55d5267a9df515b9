"""Sales forecasting at scale: the rolling-origin backtest of every method on 500 simulated series.

A simulated world (simulators/sales_world.py: levels, trends, a market season and each model's own, promotions
with a lift, log-normal and Poisson noise) of 25 models x 20 regions over five years, written as the command's
``--data`` file and read back through the same parser. Then the backtest of cloud/forecast/evaluate.py: six
origins, horizon 6 months, every series forecast by seasonal-naive, exponential smoothing and the global
boosted model. Printed as one JSON line:

- ``mase_<method>``: mean MASE per method over the series (each scaled by its in-sample seasonal-naive
  error), ``coverage_80_<method>``: the share of actual months inside that method's 80 % interval;
- ``model``: the better of the two models by mean MASE (one choice for all series: little selection bias),
  with ``mase_model`` and ``coverage_80`` its figures; ``mase_seasonal_naive`` the baseline's;
- ``series_beating_seasonal_naive``: the share of series where a model beat the baseline; ``winners``: how
  often each method had the least MASE (a per-series choice, optimistic when read as skill);
- ``seconds``: the backtest's wall time (targets: coverage 0.75-0.85, seconds <= 60).

    python tests/benchmarks/forecast.py                 # 500 series
    python tests/benchmarks/forecast.py --series 40     # smoke size (CI)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from cloud.forecast.evaluate import backtest
from cloud.forecast.series import Freq, build_series, read_csv
from simulators.sales_world import simulate_sales_world, write_sales_csv


def main() -> None:
    """Run the benchmark and print one JSON line."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--series", type=int, default=500, help="model x region series (regions: 20, or fewer)"
    )
    parser.add_argument("--months", type=int, default=60)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    regions = min(20, args.series)
    world = simulate_sales_world(
        args.seed, models=max(1, args.series // regions), regions=regions, months=args.months
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sales.csv"
        write_sales_csv(world, path)
        sales, problems = read_csv(path, Freq.MONTH)
    series, _ = build_series(sales, ("model", "region"))
    started = time.perf_counter()
    result = backtest(series, 12, Freq.MONTH.season_index, args.horizon, origins=args.origins, seed=args.seed)
    seconds = time.perf_counter() - started
    models = {m: v for m in ("ets", "gbm") if (v := result.mase[m]) is not None}
    best = min(models, key=lambda m: models[m])
    beating = [s.beats_seasonal_naive for s in result.series if s.beats_seasonal_naive is not None]
    out = {
        "series": len(series),
        "months": args.months,
        "origins": args.origins,
        "horizon": args.horizon,
        "refused_lines": len(problems),
        "model": best,
        "mase_model": round(models[best], 4),
        "mase_seasonal_naive": result.mase["seasonal_naive"],
        "coverage_80": result.coverage_80[best],
        **{f"mase_{m}": v for m, v in result.mase.items()},
        **{f"coverage_80_{m}": v for m, v in result.coverage_80.items()},
        "series_beating_seasonal_naive": round(sum(beating) / len(beating), 4) if beating else None,
        "winners": dict(Counter(s.winner.value for s in result.series if s.winner is not None)),
        "seconds": round(seconds, 1),
    }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}))


if __name__ == "__main__":
    main()
