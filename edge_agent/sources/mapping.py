"""The mapping file: which column of a recorded file is which VSS signal, in which unit.

TOML (or JSON with the same structure)::

    [time]
    column = "timestamp"          # required
    format = "auto"               # auto | epoch_s | epoch_ms | relative_s | relative_ms | iso8601
    start = 2026-11-02T08:00:00+08:00   # optional: what relative time 0 is

    [signals."Vehicle.Speed"]
    column = "speed_mph"
    unit = "mph"                  # converted to the VSS unit (km/h); default: already the VSS unit
    scale = 1.0                   # optional: value = (raw * scale + offset), then unit conversion
    offset = 0.0

    [processing]                  # optional signal processing, see edge_agent.processing
    resample_hz = 10
    lowpass_hz = 2.0
    calibrate_imu = false         # learn the mounting of an accelerometer not aligned with the car
    imu_columns = ["ax", "ay", "az"]  # raw accelerometer axes (m/s^2 unless imu_unit says otherwise)
    imu_unit = "m/s^2"
    gyro_columns = ["gx", "gy", "gz"] # the same device's gyroscope: finds "forward" without speed and gives
    gyro_unit = "deg/s"           #   the yaw rate (needs calibrate_imu)
    profile = "phone"             # sensor profile (vehicle-bus, phone, aftermarket-imu): the harsh-event
                                  #   thresholds; replay --profile overrides it

Text values ``true``/``false``/``on``/``off`` read as 1/0, so boolean feature columns map directly.
"""

from __future__ import annotations

import json
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from ..profiles import SensorProfile, parse_profile
from ..protocol import VSS_PATH_RE, format_validation_error
from .timebase import TimeFormat
from .units import UnitError, conversion, vss_unit


class MappingError(ValueError):
    """A mapping file that cannot be used, with the reason."""


class TimeSpec(BaseModel):
    """Where the timestamps are and how they are written."""

    model_config = ConfigDict(extra="forbid")
    column: str = Field(min_length=1)
    format: TimeFormat = TimeFormat.AUTO
    start: AwareDatetime | None = None


class SignalSpec(BaseModel):
    """One column -> one VSS signal."""

    model_config = ConfigDict(extra="forbid")
    column: str = Field(min_length=1)
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0


class ProcessingSpec(BaseModel):
    """Optional resampling, filtering and IMU mount calibration."""

    model_config = ConfigDict(extra="forbid")
    resample_hz: float | None = Field(default=None, gt=0, le=1000)
    lowpass_hz: float | None = Field(default=None, gt=0)
    calibrate_imu: bool = False
    imu_columns: tuple[str, str, str] | None = None
    imu_unit: str = "m/s^2"
    gyro_columns: tuple[str, str, str] | None = None
    gyro_unit: str = "deg/s"
    profile: SensorProfile | None = None

    @field_validator("profile", mode="before")
    @classmethod
    def _known_profile(cls, value: object) -> object:
        return parse_profile(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _imu(self) -> ProcessingSpec:
        if self.calibrate_imu and self.imu_columns is None:
            raise ValueError("calibrate_imu needs imu_columns = [x, y, z] naming the raw accelerometer axes")
        if self.gyro_columns is not None and not self.calibrate_imu:
            # an unused option is an error, never silence: only the mount calibration reads the gyroscope
            raise ValueError("gyro_columns are read by the IMU mount calibration: set calibrate_imu = true")
        try:
            conversion(self.gyro_unit, "Vehicle.AngularVelocity.Yaw")
        except UnitError as exc:
            raise ValueError(f"gyro_unit: {exc}") from None
        if self.lowpass_hz is not None and self.resample_hz is None:
            raise ValueError("lowpass_hz needs resample_hz: the filter works at a fixed rate")
        if (
            self.lowpass_hz is not None
            and self.resample_hz is not None
            and self.lowpass_hz >= self.resample_hz / 2
        ):
            raise ValueError("lowpass_hz must be below half of resample_hz")
        try:
            conversion(self.imu_unit, "Vehicle.Acceleration.Longitudinal")
        except UnitError as exc:
            raise ValueError(f"imu_unit: {exc}") from None
        return self


class Mapping(BaseModel):
    """A whole mapping file."""

    model_config = ConfigDict(extra="forbid")
    time: TimeSpec
    signals: dict[str, SignalSpec] = Field(default_factory=dict)
    processing: ProcessingSpec = Field(default_factory=ProcessingSpec)

    @field_validator("signals")
    @classmethod
    def _vss_names_and_units(cls, signals: dict[str, SignalSpec]) -> dict[str, SignalSpec]:
        for name, spec in signals.items():
            if not VSS_PATH_RE.match(name):
                raise ValueError(f"{name!r} is not a VSS signal path like 'Vehicle.Speed'")
            try:
                conversion(spec.unit or vss_unit(name) or "1", name)
            except UnitError as exc:
                raise ValueError(str(exc)) from None
        return signals

    @model_validator(mode="after")
    def _something_to_read(self) -> Mapping:
        if not self.signals and not self.processing.calibrate_imu:
            raise ValueError("the mapping names no signals")
        return self

    def factor(self, signal: str) -> float:
        """Unit conversion factor of ``signal``'s column."""
        spec = self.signals[signal]
        return conversion(spec.unit or vss_unit(signal) or "1", signal)

    def columns(self) -> list[str]:
        """Every column the mapping reads."""
        cols = [self.time.column, *(s.column for s in self.signals.values())]
        if self.processing.imu_columns:
            cols += list(self.processing.imu_columns)
        if self.processing.gyro_columns:
            cols += list(self.processing.gyro_columns)
        return list(dict.fromkeys(cols))


def load_mapping(path: str | Path) -> Mapping:
    """Read and validate a mapping file (TOML, or JSON by its suffix)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"cannot read mapping {path}: {exc.strerror}") from exc
    try:
        raw: dict[str, Any] = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "TOML"
        raise MappingError(f"mapping {path} is not valid {kind}: {exc}") from exc
    start = raw.get("time", {}).get("start") if isinstance(raw.get("time"), dict) else None
    if isinstance(start, datetime) and start.tzinfo is None:
        raise MappingError(f"mapping {path}: [time] start needs a UTC offset, e.g. 2026-11-02T08:00:00+08:00")
    try:
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        raise MappingError(f"mapping {path}: {format_validation_error(exc)}") from exc
