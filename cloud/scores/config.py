"""Loading a scoring job's TOML settings: the shipped file or one given, checked against the job's schema."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from edge_agent.protocol import format_validation_error

M = TypeVar("M", bound=BaseModel)


def load_toml(
    path: Path | None, *, package: str, filename: str, schema: type[M], error: type[ValueError]
) -> M:
    """The settings at ``path`` (default: ``filename`` shipped in ``package``) as ``schema``; ``error`` (its
    message naming the file and the entry) when they cannot be read or used."""
    if path is None:
        text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        where = f"{filename} (shipped)"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise error(f"{path}: {exc.strerror}") from exc
        where = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: not TOML: {exc}") from exc
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{where}: {format_validation_error(exc)}") from exc
