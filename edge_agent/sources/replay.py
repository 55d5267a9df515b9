"""Replay of recorded CSV or Parquet files through a mapping, keeping the recorded timestamps.

Files are read in chunks (``chunk_rows``), so memory does not grow with the file. Parquet needs the
``replay`` extra (pyarrow). Blocks come out conditioned as in the car (:func:`conditioning_stages`: the
rate-independent anti-alias box and the detection grid, ``resample_hz`` of the mapping or 10 Hz), after the
IMU mount calibration when the mapping asks for it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..processing import DETECTION_HZ, GYRO_AXES, MountCalibrator, Pipeline, Stage, conditioning_stages
from ..signals import ACCEL_LONGITUDINAL, YAW_RATE, FloatArray, SignalBlock
from .mapping import Mapping, MappingError
from .quality import QualityMonitor
from .timebase import TimeBase, TimeFormat, detect
from .units import conversion

IMU_AXES = ("imu.x", "imu.y", "imu.z")


_TRUE = frozenset({"true", "on", "yes"})
_FALSE = frozenset({"false", "off", "no"})


class ReplayError(ValueError):
    """A recorded file that does not fit its mapping."""


def parse_numbers(values: list[str]) -> tuple[FloatArray, int]:
    """Text to floats: empty is no sample (NaN), true/false read as 1/0; return the values and how many
    were unreadable (those become NaN too)."""
    try:
        return np.asarray(values, dtype=np.float64), 0
    except ValueError:
        pass
    out = np.full(len(values), np.nan)
    bad = 0
    for i, text in enumerate(values):
        v = text.strip().lower()
        if not v:
            continue
        if v in _TRUE:
            out[i] = 1.0
        elif v in _FALSE:
            out[i] = 0.0
        else:
            try:
                out[i] = float(v)
            except ValueError:
                bad += 1
    return out, bad


class ReplaySource:
    """Yields the signal blocks of a recorded file, in its own time order, with a quality report."""

    def __init__(
        self,
        path: str | Path,
        mapping: Mapping,
        *,
        chunk_rows: int = 20_000,
        monitor: QualityMonitor | None = None,
        conditioned: bool = True,
    ) -> None:
        self.path = Path(path)
        self.mapping = mapping
        self.chunk_rows = chunk_rows
        self.monitor = monitor or QualityMonitor()
        self.time_base: TimeBase | None = None
        self.calibrator: MountCalibrator | None = None
        #: the blocks are already conditioned (the runner does not condition them a second time)
        self.conditioned = conditioned
        if not self.path.exists():
            raise ReplayError(f"no such file: {self.path}")

    @property
    def report(self):  # type: ignore[no-untyped-def]
        """The quality report so far."""
        return self.monitor.report

    def __iter__(self) -> Iterator[SignalBlock]:
        suffix = self.path.suffix.lower()
        chunks = self._parquet_chunks() if suffix in (".parquet", ".pq") else self._csv_chunks()
        checked = (self.monitor.check(t, columns) for t, columns in chunks)
        self.calibrator = None
        stages: list[Stage] = []
        spec = self.mapping.processing
        if spec.calibrate_imu:
            self.calibrator = MountCalibrator(IMU_AXES)
            stages.append(self.calibrator)
        if self.conditioned:
            stages += conditioning_stages(spec.resample_hz or DETECTION_HZ, lowpass_hz=spec.lowpass_hz)
        yield from Pipeline(stages).run(checked)

    # conversion shared by both formats ---------------------------------------------------------------
    def _resolve_time(self, sample: list[str]) -> TimeBase:
        if self.time_base is None:
            spec = self.mapping.time
            fmt = detect(sample) if spec.format is TimeFormat.AUTO else spec.format
            self.time_base = TimeBase(fmt, spec.start)
        return self.time_base

    def _signals(self, raw: dict[str, FloatArray]) -> dict[str, FloatArray]:
        out = {}
        for name, spec in self.mapping.signals.items():
            out[name] = (raw[spec.column] * spec.scale + spec.offset) * self.mapping.factor(name)
        processing = self.mapping.processing
        if processing.calibrate_imu and processing.imu_columns:
            factor = conversion(processing.imu_unit, ACCEL_LONGITUDINAL)
            for axis, column in zip(IMU_AXES, processing.imu_columns, strict=True):
                out[axis] = raw[column] * factor
            if processing.gyro_columns:
                factor = conversion(processing.gyro_unit, YAW_RATE)
                for axis, column in zip(GYRO_AXES, processing.gyro_columns, strict=True):
                    out[axis] = raw[column] * factor
        return out

    # CSV ------------------------------------------------------------------------------------------------
    def _csv_chunks(self) -> Iterator[tuple[FloatArray, dict[str, FloatArray]]]:
        with self.path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                raise ReplayError(f"{self.path} is empty") from None
            missing = [c for c in self.mapping.columns() if c not in header]
            if missing:
                wanted = ", ".join(repr(c) for c in missing)
                raise MappingError(f"{self.path} has no column {wanted}; it has: {', '.join(header)}")
            index = {c: header.index(c) for c in self.mapping.columns()}
            rows: list[list[str]] = []
            line = 1
            for row in reader:
                line += 1
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) < len(header):
                    raise ReplayError(
                        f"{self.path} line {line}: {len(row)} fields, the header has {len(header)}"
                    )
                rows.append(row)
                if len(rows) == self.chunk_rows:
                    yield self._csv_chunk(rows, index, line - len(rows) + 1)
                    rows = []
            if rows:
                yield self._csv_chunk(rows, index, line - len(rows) + 1)

    def _csv_chunk(
        self, rows: list[list[str]], index: dict[str, int], first_line: int
    ) -> tuple[FloatArray, dict[str, FloatArray]]:
        time_col = index[self.mapping.time.column]
        stamps = [r[time_col] for r in rows]
        base = self._resolve_time(stamps)
        try:
            t = base.to_epoch(stamps)
        except ValueError as exc:
            raise ReplayError(f"{self.path} near line {first_line}: {exc}") from exc
        raw: dict[str, FloatArray] = {}
        report = self.monitor.report
        for column, i in index.items():
            if column == self.mapping.time.column:
                continue
            values, bad = parse_numbers([r[i] for r in rows])
            if bad:
                report.unparsable[column] = report.unparsable.get(column, 0) + bad
            raw[column] = values
        return t, self._signals(raw)

    # Parquet --------------------------------------------------------------------------------------------
    def _parquet_chunks(self) -> Iterator[tuple[FloatArray, dict[str, FloatArray]]]:
        try:
            import pyarrow as pa
            import pyarrow.compute as pc
            import pyarrow.parquet as pq
        except ImportError:
            raise ReplayError("reading Parquet needs pyarrow: pip install 'drivesight[replay]'") from None
        parquet = pq.ParquetFile(self.path)
        names = parquet.schema_arrow.names
        missing = [c for c in self.mapping.columns() if c not in names]
        if missing:
            raise MappingError(
                f"{self.path} has no column {', '.join(map(repr, missing))}; it has: {', '.join(names)}"
            )
        time_col = self.mapping.time.column
        for batch in parquet.iter_batches(batch_size=self.chunk_rows, columns=self.mapping.columns()):
            stamps = batch.column(time_col)
            if pa.types.is_timestamp(stamps.type):
                # a typed timestamp column: exact, reported back as ISO 8601
                self.time_base = self.time_base or TimeBase(TimeFormat.ISO8601)
                micros = pc.cast(pc.cast(stamps, pa.timestamp("us", tz="UTC")), pa.int64())
                t = micros.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
            elif pa.types.is_string(stamps.type) or pa.types.is_large_string(stamps.type):
                text = [str(v) for v in stamps.to_pylist()]
                t = self._resolve_time(text).to_epoch(text)
            else:
                numbers = stamps.to_numpy(zero_copy_only=False).astype(np.float64)
                t = self._resolve_time([repr(float(v)) for v in numbers[:200]]).numbers_to_epoch(numbers)
            raw = {}
            for column in self.mapping.columns():
                if column == time_col:
                    continue
                values = batch.column(column)
                if pa.types.is_boolean(values.type):
                    values = pc.cast(values, pa.float64())
                raw[column] = values.to_numpy(zero_copy_only=False).astype(np.float64)
            yield t, self._signals(raw)
