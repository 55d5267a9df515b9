"""What every drivesight process shares beyond the wire format: its version and where its logs go.

The version has one source, the installed package's metadata (``pyproject.toml``); the car reports it in its
status messages and the API in its OpenAPI document. Logs go to stderr so that stdout carries only results
(with ``--json``, only JSON).
"""

from __future__ import annotations

import argparse
import logging
from functools import cache
from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "drivesight"

#: libraries that log at INFO about every connection or request
_NOISY_LOGGERS = ("httpx", "amqtt", "transitions", "pgserver")


@cache
def package_version() -> str:
    """The installed drivesight version (``0+unknown`` when run from a tree that was never installed)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "0+unknown"


def configure_logging(*, verbose: bool = False) -> None:
    """Logs on stderr (INFO, or DEBUG with ``verbose``); stdout stays for a command's results."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )  # basicConfig's default stream is sys.stderr
    for noisy in _NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def command_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A drivesight command's top-level parser with the flags every command shares: -v, --version."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    return parser
