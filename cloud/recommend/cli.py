"""``drivesight cloud recommend topk|evaluate|split``: recommenders and their offline evaluation on files.

Results on stdout (with ``--json``, only JSON), progress and errors on stderr; a bad file is every bad line
with its number and exit status 2. Heavy imports (scipy, implicit) happen inside the handlers, so ``--help``
stays fast. Until ``cloud/cli.py`` registers it, ``python -m cloud.recommend.cli recommend ...`` runs it.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from edge_agent.protocol.conventions import command_parser, configure_logging

log = logging.getLogger(__name__)

#: the algorithm names (kept here too so that --help does not import the algorithms)
NAMES = ("popularity", "itemknn", "als", "bpr", "personalized")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``recommend`` command and its subcommands to the cloud command's subparsers."""
    recommend = subparsers.add_parser("recommend", help="recommenders: top-k lists and offline evaluation")
    sub = recommend.add_subparsers(dest="recommend_command", required=True)
    topk = sub.add_parser("topk", help="K items for every user of the training file (never one they have)")
    topk.add_argument(
        "--train", type=Path, required=True, help="interactions: user,item[,rating[,timestamp]]"
    )
    topk.add_argument("--k", type=_positive, required=True)
    topk.add_argument("--algorithm", choices=NAMES, default="personalized")
    topk.add_argument("--out", type=Path, required=True, help="CSV: user,item,rank,score")
    topk.add_argument("--seed", type=int, default=0, help="seed of the learned models (default 0)")
    topk.add_argument("--json", action="store_true", help="one JSON document on stdout")
    topk.set_defaults(handler=_topk)
    ev = sub.add_parser("evaluate", help="fit on --train, score top-k against --test: one JSON line each")
    ev.add_argument("--train", type=Path, required=True)
    ev.add_argument("--test", type=Path, required=True)
    ev.add_argument("--k", type=_positive, default=10)
    ev.add_argument(
        "--algorithm", choices=NAMES, action="append", help="repeat for several (default: all of them)"
    )
    ev.add_argument(
        "--min-rating",
        type=float,
        help="only test interactions rated at least this are relevant (default: all)",
    )
    ev.add_argument("--seed", type=int, default=0, help="seed of the learned models (default 0)")
    ev.add_argument("--json", action="store_true", help="only JSON lines on stdout")
    ev.set_defaults(handler=_evaluate)
    split = sub.add_parser("split", help="per-user stratified split of one file into train and test files")
    split.add_argument("file", type=Path)
    split.add_argument("--train-out", type=Path, required=True)
    split.add_argument("--test-out", type=Path, required=True)
    split.add_argument("--ratio", type=_ratio, default=0.75, help="share of each user's rows in train (0.75)")
    split.add_argument("--seed", type=int, default=42)
    split.add_argument("--json", action="store_true", help="one JSON document on stdout")
    split.set_defaults(handler=_split)


def _refusing(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """The handler, with a refused input (a bad file, say) logged on stderr and exit status 2: the cloud
    command's own runner knows nothing of this package's errors."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        from .data import RecommendError

        try:
            return handler(args)
        except RecommendError as exc:
            log.error("%s", exc)
            return 2

    return run


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _ratio(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


@_refusing
def _topk(args: argparse.Namespace) -> int:
    from .algorithms import make
    from .files import read_interactions, write_topk

    started = time.perf_counter()
    train = read_interactions(args.train)
    log.info(
        "read %d interactions of %d users on %d items", len(train), len(train.user_ids), len(train.item_ids)
    )
    model = make(args.algorithm, seed=args.seed).fit(train)
    log.info("%s fitted in %.1f s", args.algorithm, time.perf_counter() - started)
    top = model.recommend_all(list(train.user_ids), args.k)
    rows = write_topk(args.out, top)
    seconds = round(time.perf_counter() - started, 3)
    short = int((top.items < 0).any(axis=1).sum())
    doc = {"algorithm": args.algorithm, "users": len(top.users), "rows": rows, "k": args.k}
    doc |= {"users_short": short, "out": str(args.out), "seconds": seconds}
    if args.json:
        print(json.dumps(doc))
    else:
        print(
            f"{rows} rows for {len(top.users)} users written to {args.out} in {seconds} s ({args.algorithm})"
        )
        if short:
            print(f"{short} users got fewer than {args.k}: their catalogue ran out")
    return 0


@_refusing
def _evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate
    from .files import read_interactions

    train = read_interactions(args.train)
    test = read_interactions(args.test)
    names = args.algorithm or list(NAMES)
    for result in evaluate(names, train, test, args.k, min_rating=args.min_rating, seed=args.seed):
        if args.json:
            print(json.dumps(result), flush=True)
        else:
            print(
                f"{result['algorithm']:<13} precision@{args.k} {result['precision_at_k']:.4f}"
                f"  recall {result['recall_at_k']:.4f}  nDCG {result['ndcg_at_k']:.4f}"
                f"  MAP {result['map_at_k']:.4f}  coverage {result['coverage']:.3f}  {result['seconds']} s",
                flush=True,
            )
    return 0


@_refusing
def _split(args: argparse.Namespace) -> int:
    from .evaluate import stratified_split
    from .files import read_interactions, write_interactions

    data = read_interactions(args.file)
    train, test = stratified_split(data, args.ratio, args.seed)
    write_interactions(args.train_out, train)
    write_interactions(args.test_out, test)
    doc = {"train": len(train), "test": len(test), "users": len(data.user_ids), "seed": args.seed}
    if args.json:
        print(json.dumps(doc | {"train_out": str(args.train_out), "test_out": str(args.test_out)}))
    else:
        print(f"{len(train)} rows to {args.train_out}, {len(test)} to {args.test_out} (seed {args.seed})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cloud.recommend.cli recommend ...``: the commands as ``drivesight cloud`` will run them."""
    parser = command_parser("drivesight cloud", "drivesight cloud services (recommend only)")
    register(parser.add_subparsers(dest="cloud_command", required=True))
    args = parser.parse_args(argv)
    configure_logging(verbose=args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
