"""The model package contract: what a model's ``manifest.json`` says, and what its signature covers.

The models package writes manifests, the car checks models against them before it runs one, and the cloud
reads them to send a model over the ``model`` downlink (each chunk repeats the manifest and its signature).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,47}$"


class ManifestError(ValueError):
    """A manifest file that cannot be read or is not valid."""


class TensorSpec(BaseModel):
    """The model's input tensor."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    dtype: Literal["float32", "float64"] = "float32"
    width: int = Field(ge=1)


class TrainingInfo(BaseModel):
    """Where the model came from."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    data: str
    seed: int
    samples: int = Field(ge=0)
    held_out: int = Field(ge=0)
    libraries: dict[str, str] = Field(default_factory=dict)


class SelfCheck(BaseModel):
    """Inputs and the outputs the model must reproduce (per output name) within ``tolerance``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    inputs: list[list[float]] = Field(min_length=1)
    expected: dict[str, list[list[float]]]
    tolerance: float = Field(default=1e-5, gt=0)


class ModelManifest(BaseModel):
    """Everything the edge and the cloud need to know about one model version."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=MODEL_NAME_PATTERN)
    version: str = Field(pattern=r"^[0-9]+\.[0-9]+\.[0-9]+$")
    task: Literal["classification", "anomaly", "risk"]
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size_bytes: int = Field(ge=1)
    input: TensorSpec
    features: list[str] = Field(min_length=1)
    outputs: dict[str, str]
    classes: list[str] | None = None
    threshold: float | None = None
    training: TrainingInfo
    metrics: dict[str, float]
    metric_floors: dict[str, float] = Field(default_factory=dict)
    self_check: SelfCheck
    created_at: str

    def check_floors(self) -> list[str]:
        """Metrics below their documented floors (empty when all hold)."""
        return [
            f"{k} = {self.metrics.get(k, float('nan')):.4f} < {floor}"
            for k, floor in self.metric_floors.items()
            if not self.metrics.get(k, float("-inf")) >= floor
        ]


def read_manifest(path: Path) -> ModelManifest:
    """Read and validate a manifest file; :class:`ManifestError` says why one is refused."""
    try:
        return ModelManifest.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise ManifestError(f"manifest {path} is not valid: {exc}") from exc


def signed_message(sha256: str, manifest_json: str) -> bytes:
    """What a model's Ed25519 signature covers: its sha256 and its manifest."""
    return f"{sha256}\n{manifest_json}".encode()


def shipped_models() -> Path | None:
    """The directory of the model packages shipped with drivesight (``models/artifacts/NAME``), found as the
    ``models`` package's data without importing its training code; ``None`` in an install without them."""
    spec = importlib.util.find_spec("models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "artifacts"
