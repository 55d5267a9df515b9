"""Reading a TOML settings file (shipped in a package, or one given), checked whole against a schema."""

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
    where = str(path) if path is not None else f"{filename} (shipped)"
    try:
        if path is None:
            text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        raw = tomllib.loads(text)
    except OSError as exc:
        raise error(f"{where}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{where}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: not valid TOML: {exc}") from exc
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{where}: {format_validation_error(exc)}") from exc
