"""CAN bus source: frames from python-can (SocketCAN, its virtual bus, ...) decoded with cantools.

A mapping file ties DBC signals to VSS signals::

    dbc = "vehicle.dbc"              # relative to the mapping file; or a list: ["powertrain.dbc", "body.dbc"]
    strict = true                    # false: load published DBCs leniently, reporting what was skipped
    channel = "can0"                 # optional: only frames of this bus (default: every bus in the recording)

    [signals."Vehicle.Speed"]
    message = "ESC_VehicleSpeed"     # DBC message name
    signal = "VehSpd"                # DBC signal name
    unit = "km/h"                    # optional: default is the DBC unit (aliases such as kph, Deg, Bar)
    scale = 1.0                      # optional, applied after the DBC's own scaling
    offset = 0.0
    choices = { DRIVE = "D" }        # optional: DBC value table name -> VSS value (number or enum name)
    channel = 1                      # optional: this signal's bus, instead of the mapping's channel
    valid = "VehSpdStat == 0"        # optional: when this expression is 0, the frame's value is no sample

    [signals."Vehicle.Chassis.SteeringWheel.Angle"]
    message = "SAS"
    value = "-angle if sign else angle"   # instead of signal: + - * /, a if c else b over its signals

Each frame becomes a row at the frame's timestamp with the signals it carries; the other signals have no
sample (NaN) there. Frames at the same timestamp share a row. Signals arrive at their own rates, so run the
blocks through :class:`edge_agent.processing.Resampler` before the detectors (``drivesight edge run`` does).
Error frames, remote frames, frames of unmapped ids and frames that do not decode are counted in the
source's quality report, never passed on.

Cars send placeholders while a sensor is not ready (Hyundai's stability control: -10.23 m/s^2 and
-40.95 deg/s, its status bit set, for the first seconds after power-on; a steering angle of 3276.7):
``valid`` (an expression like ``value``, over the same message's signals) drops them, counted as
``invalid_<signal>``, before they reach the detectors as a 10 m/s^2 "harsh acceleration".

A recording of several buses (candump's ``can0``/``can1``, an ASC or BLF file's channels) can carry one
frame id on two buses with different meanings: Toyota's brake module and its radar's tracks share 0x224.
``channel`` picks the bus: a name (``"can0"``, as candump writes it) or a number counted from 0, as
python-can counts them, so that one mapping reads the car's recordings in every format: 0 is candump's
``can0`` (or ``vcan0``) and the first channel of an ASC, BLF or TRC file, which Vector's and PEAK's tools
show as channel 1.
Each mapped signal is decoded with its own DBC message, so DBCs of two buses that reuse a frame id do not
override each other.

:class:`CanLogSource` reads a recorded log instead of a bus (python-can's ``LogReader``: candump ``.log``,
Vector ``.asc`` and ``.blf``, PEAK's ``.trc``), at the recording's own timestamps and as fast as it can be
decoded. candump logs are parsed here, line by line: a line that is not a frame (a logger's comment, a line
cut short or mangled by a spreadsheet) is counted and named in a warning, and the rest of the recording
still replays.

Requires the ``can`` extra (python-can, cantools).
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import tomllib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..protocol import VSS_PATH_RE, format_validation_error
from ..signals import SignalBlock
from .expression import Expression, ExpressionError, compile_expression
from .mapping import MappingError
from .quality import QualityMonitor, SourceReport
from .timebase import TimeBase, TimeFormat
from .units import VSS_ENUMS, UnitError, conversion, vss_unit

log = logging.getLogger(__name__)


class CanSignalSpec(BaseModel):
    """One DBC signal -> one VSS signal."""

    model_config = ConfigDict(extra="forbid")
    message: str = Field(min_length=1)
    signal: str | None = Field(default=None, min_length=1)
    #: instead of ``signal``: an expression over the message's signals (``sources/expression.py``)
    value: str | None = Field(default=None, min_length=1)
    unit: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    #: value table (DBC ``VAL_``) entry name -> the VSS value: a number, or a name of the signal's VSS
    #: enumeration (``units.VSS_ENUMS``: "P", "R", "N", "D" for the selected gear); entries not listed
    #: become "no sample" and are counted
    choices: dict[str, float | str] | None = None
    #: the bus this signal is read from, instead of the mapping's ``channel``
    channel: str | int | None = None
    #: an expression over the message's signals; where it is 0 the value is no sample (a sensor's
    #: status bit, a placeholder such as 3276.7)
    valid: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> CanSignalSpec:
        if (self.signal is None) == (self.value is None):
            raise ValueError("give either signal (a DBC signal) or value (an expression over signals)")
        if self.value is not None and self.choices is not None:
            raise ValueError("choices map one signal's value table; they do not apply to a value expression")
        return self


class CanMappingFile(BaseModel):
    """The mapping file's content."""

    model_config = ConfigDict(extra="forbid")
    dbc: str | list[str] = Field(min_length=1)
    #: false: load DBCs as published for real cars, skipping (and reporting) what cantools would refuse
    strict: bool = True
    #: only frames of this bus (a candump interface name, or a channel number); default: every bus
    channel: str | int | None = None
    signals: dict[str, CanSignalSpec] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class _Decoder:
    vss: str
    dbc_signal: str
    factor: float
    scale: float
    offset: float
    #: raw value -> VSS value, for a signal mapped through its value table
    choices: dict[int, float] | None = None
    #: for a composite value: the compiled expression over the message's decoded signals
    expression: Expression | None = None
    #: the DBC message this signal is decoded with (cantools ``Message``)
    message: Any = None
    #: only frames of this bus (see :func:`_same_channel`); None: any
    channel: str | None = None
    #: the DBC signals the value is computed from
    needs: frozenset[str] = frozenset()
    #: where this is 0 for a frame, the frame's value is no sample
    valid: Expression | None = None


@dataclass
class CanMapping:
    """A loaded mapping: the DBC database and, per frame id, how to turn its signals into VSS values."""

    database: Any  # cantools.database.can.Database
    by_frame: dict[int, list[_Decoder]]
    signals: tuple[str, ...]
    #: lenient mode: what the DBC(s) had that strict mode refuses, skipped or kept as is (one line each)
    warnings: tuple[str, ...] = ()


#: suffixes of the CAN logs python-can reads (``can.LogReader``); the replay picks the CAN source by them
CAN_LOG_SUFFIXES = (".log", ".asc", ".blf", ".trc")


def is_can_log(path: str | Path) -> bool:
    """Whether ``path`` is a CAN recording (by its suffix) rather than a CSV or Parquet table."""
    return Path(path).suffix.lower() in CAN_LOG_SUFFIXES


def load_can_mapping(path: str | Path, dbc_files: Sequence[str | Path] = ()) -> CanMapping:
    """Read a mapping and its DBC(s); check that every message, signal and unit exists and converts.

    ``dbc_files`` (``--dbc``), when given, replace the mapping's own ``dbc``: the same mapping then serves
    another variant of the car's database. They are taken as given (relative to the working directory).
    """
    try:
        import cantools
    except ImportError:
        raise MappingError("the CAN source needs cantools: pip install 'drivesight[can]'") from None
    path = Path(path)
    try:
        spec = CanMappingFile.model_validate(tomllib.loads(path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise MappingError(f"cannot read CAN mapping {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise MappingError(f"CAN mapping {path} is not valid TOML: {exc}") from exc
    except ValidationError as exc:
        raise MappingError(f"CAN mapping {path}: {format_validation_error(exc)}") from exc
    if dbc_files:
        dbc_paths = [Path(p).resolve() for p in dbc_files]
    else:
        named = [spec.dbc] if isinstance(spec.dbc, str) else spec.dbc
        dbc_paths = [(path.parent / p).resolve() for p in named]
    # one database for all files: a frame id is looked up once, whichever file defines it
    database = cantools.database.can.Database(strict=spec.strict)
    warnings: list[str] = []
    for dbc_path in dbc_paths:
        try:
            if spec.strict:
                database.add_dbc_file(str(dbc_path), encoding=dbc_encoding(dbc_path))
            else:
                warnings += _add_dbc_leniently(database, dbc_path)
        except MappingError:
            raise
        except Exception as exc:  # OSError, textparser's ParseError, ValueError...: no common base
            hint = "" if not spec.strict else " (strict = false in the mapping loads it leniently)"
            raise MappingError(f"cannot load DBC {dbc_path}: {exc}{hint}") from exc
    if warnings:
        log.warning(
            "lenient DBC load: %d problems skipped or kept (%s%s)",
            len(warnings),
            "; ".join(warnings[:3]),
            "; ..." if len(warnings) > 3 else "",
        )
    by_frame: dict[int, list[_Decoder]] = {}
    for vss_name, s in spec.signals.items():
        if not VSS_PATH_RE.match(vss_name):
            raise MappingError(f"{path}: {vss_name!r} is not a VSS signal path")
        try:
            message = database.get_message_by_name(s.message)
        except KeyError:
            names = ", ".join(m.name for m in database.messages)
            raise MappingError(
                f"{path}: {vss_name}: no message {s.message!r} in the DBC; it has: {names}"
            ) from None
        channel = s.channel if s.channel is not None else spec.channel
        bus = None if channel is None else str(channel).strip()
        valid: Expression | None = None
        if s.valid is not None:
            try:
                valid, _ = compile_expression(s.valid, [sig.name for sig in message.signals])
            except ExpressionError as exc:
                raise MappingError(
                    f"{path}: {vss_name} from {s.message}: valid = {s.valid!r}: {exc}"
                ) from None
        if s.value is not None:
            where = f"{path}: {vss_name} from {s.message}: value = {s.value!r}"
            decoder = _composite(where, vss_name, s, message)
            by_frame.setdefault(message.frame_id, []).append(replace(decoder, channel=bus, valid=valid))
            continue
        assert s.signal is not None  # the spec's validator: signal or value
        try:
            dbc_signal = message.get_signal_by_name(s.signal)
        except KeyError:
            names = ", ".join(sig.name for sig in message.signals)
            raise MappingError(
                f"{path}: {vss_name}: {s.message} has no signal {s.signal!r}; it has: {names}"
            ) from None
        where = f"{path}: {vss_name} from {s.message}.{s.signal}"
        choices = _choices(where, vss_name, dbc_signal, s.choices) if s.choices is not None else None
        factor = _factor(where, vss_name, s, dbc_signal)
        by_frame.setdefault(message.frame_id, []).append(
            _Decoder(
                vss_name,
                s.signal,
                factor,
                s.scale,
                s.offset,
                choices,
                message=message,
                channel=bus,
                needs=frozenset([s.signal]),
                valid=valid,
            )
        )
    return CanMapping(database, by_frame, tuple(spec.signals), tuple(warnings))


def dbc_encoding(path: Path) -> str:
    """The encoding of a DBC file: UTF-8 when it reads as such (opendbc's files: ``°C`` read as cp1252,
    cantools' default, becomes ``Â°C``, a unit nobody knows), else cp1252 (Vector's tools write it)."""
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return "cp1252"
    except OSError:
        return "cp1252"  # the load that follows reports it
    return "utf-8-sig"


def _factor(where: str, vss_name: str, spec: CanSignalSpec, dbc_signal: Any) -> float:
    """The unit conversion of one mapped signal: the mapping's unit, else the DBC's (aliases understood).

    An empty DBC unit is taken as "no unit" only where the VSS signal has none: a speed without a unit
    could be km/h or mph, and guessing would mix units silently.
    """
    target = vss_unit(vss_name)
    unit = spec.unit or (dbc_signal.unit or "").strip()
    if not unit:
        if target not in (None, "1", "bool"):
            raise MappingError(f"{where}: the DBC gives no unit and {vss_name} is in {target}; set unit")
        unit = target or "1"
    try:
        return conversion(unit, vss_name)
    except UnitError as exc:
        raise MappingError(f"{where}: {exc}; set unit") from exc


def _composite(where: str, vss_name: str, spec: CanSignalSpec, message: Any) -> _Decoder:
    """The decoder of a value computed from several signals of one message."""
    assert spec.value is not None
    try:
        expression, used = compile_expression(spec.value, [sig.name for sig in message.signals])
    except ExpressionError as exc:
        raise MappingError(f"{where}: {exc}") from None
    # the result's unit: the mapping's, else the one all its signals share in the DBC
    units = {(message.get_signal_by_name(n).unit or "").strip() for n in used} - {""}
    if spec.unit is None and len(units) > 1:
        raise MappingError(f"{where}: its signals are in {', '.join(sorted(units))}; set unit")
    shared = SimpleNamespace(unit=units.pop() if units else "")
    factor = _factor(where, vss_name, spec, shared)
    return _Decoder(
        vss_name, "", factor, spec.scale, spec.offset, expression=expression, message=message, needs=used
    )


def _choices(where: str, vss_name: str, dbc_signal: Any, names: dict[str, float | str]) -> dict[int, float]:
    """Raw value -> VSS value of a signal mapped through its DBC value table."""
    table: dict[str, list[int]] = {}  # one name may stand for several raws (mazda: 1..6 are all "D")
    for raw, name in (dbc_signal.choices or {}).items():
        table.setdefault(str(name), []).append(int(raw))
    if not table:
        raise MappingError(f"{where}: choices given, but the DBC has no value table (VAL_) for it")
    enum = VSS_ENUMS.get(vss_name, {})
    out: dict[int, float] = {}
    for name, target in names.items():
        if name not in table:
            raise MappingError(f"{where}: no value {name!r} in its value table; it has: {', '.join(table)}")
        if isinstance(target, str):
            if target not in enum:
                known = ", ".join(enum) if enum else "none (give numbers)"
                raise MappingError(f"{where}: {target!r} is not a VSS value of {vss_name}; known: {known}")
            value = float(enum[target])
        else:
            value = float(target)
        out.update(dict.fromkeys(table[name], value))
    return out


_BO_RE = re.compile(r"^BO_\s+(\d+)\s+(\S+?)\s*:")
_SYNTAX_LINE_RE = re.compile(r"Invalid syntax at line (\d+)")
#: the statements that name a message by its frame id, and where the id is
_ID_REF_RE = re.compile(
    r'^(\s*(?:BO_|VAL_|BO_TX_BU_|SIG_VALTYPE_|SG_MUL_VAL_|SIG_GROUP_|CM_\s+(?:BO_|SG_)|BA_\s+"[^"]*"\s+(?:BO_|SG_))\s+)'
    r"(\d+)\b"
)
_UNUSED_VAL_RE = re.compile(r"^\s*(VAL_ \d+ \S+)", re.MULTILINE)
#: a lenient load gives up after this many repairs: a file that needs more is not a DBC
_MAX_REPAIRS = 200


def _drop_message_block(lines: list[str], i: int) -> None:
    """Blank the ``BO_`` line ``i`` and the ``SG_`` lines that follow it."""
    lines[i] = ""
    j = i + 1
    while j < len(lines) and lines[j].lstrip().startswith("SG_"):
        lines[j] = ""
        j += 1


def _add_dbc_leniently(database: Any, path: Path) -> list[str]:
    """Add a DBC file to a non-strict database, repairing what cantools refuses even then; return what
    was skipped, and what non-strict mode keeps that strict mode refuses (overlapping signals, signals
    outside their message).

    Published DBCs (opendbc, vendor exports) break cantools in a few recurring ways: frame ids wider than
    11 bits written without the extended flag (bit 31), names starting with a digit, a statement missing
    its ``;``, value tables of signals that do not exist. An id wider than 11 bits but within 29 can only be
    an extended id (opendbc writes GM's, Honda's, Toyota's and VW's 29-bit messages so): it is read as one,
    everywhere the file names it, and reported. Other offending statements are dropped and named, never
    guessed at: an id beyond 29 bits (Vector's ``VECTOR__INDEPENDENT_SIG_MSG``) is skipped.
    """
    lines = path.read_text(encoding=dbc_encoding(path)).splitlines()
    skipped: list[str] = []
    # after an NS_ section cantools' grammar wants the BS_ (bit timing) and BU_ (nodes) statements, empty
    # or not, before the messages; some published DBCs (projectgus' Kona EV) go from NS_ straight to BO_
    # (a file with no header at all, as opendbc generates, is read without them)
    missing = [h for h in ("BS_:", "BU_:") if not any(ln.lstrip().startswith(h[:3]) for ln in lines)]
    first = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith(("BU_", "BO_"))), None)
    has_ns = any(ln.lstrip().startswith("NS_ ") or ln.strip() == "NS_:" for ln in lines)
    if missing and first is not None and has_ns:
        lines[first:first] = missing
        skipped.append(
            f"{path.name}: added the missing {' and '.join(missing)} statements before line {first + 1}"
        )
    extended: dict[int, str] = {}
    for i, line in enumerate(lines):
        match = _BO_RE.match(line)
        if match is None:
            continue
        frame_id = int(match.group(1))
        if 0x7FF < frame_id <= 0x1FFFFFFF:
            extended[frame_id] = match.group(2)
        elif 0x1FFFFFFF < frame_id < 0x80000000:
            skipped.append(
                f"{path.name}: skipped message {match.group(2)}: frame id 0x{frame_id:x} is neither a"
                " standard (11-bit) nor an extended (29-bit) id"
            )
            _drop_message_block(lines, i)
    if extended:
        for i, line in enumerate(lines):
            match = _ID_REF_RE.match(line)
            if match and int(match.group(2)) in extended:
                flagged = int(match.group(2)) | 0x80000000
                lines[i] = f"{match.group(1)}{flagged}{line[match.end(2) :]}"
        named = ", ".join(f"{name} 0x{frame_id:x}" for frame_id, name in list(extended.items())[:4])
        more = f" and {len(extended) - 4} more" if len(extended) > 4 else ""
        skipped.append(
            f"{path.name}: read {len(extended)} messages with ids wider than 11 bits as extended (29-bit)"
            f" ids, their flag (bit 31) missing: {named}{more}"
        )
    before = {id(m) for m in database.messages}  # messages of the files added earlier
    for _ in range(_MAX_REPAIRS):
        try:
            database.add_dbc_string("\n".join(lines))
            break
        except Exception as exc:  # add_dbc_string raises ParseError, ValueError, ... (no common base)
            text = str(exc)
            unused = _UNUSED_VAL_RE.findall(text) if "unused VAL_" in text else []
            syntax = _SYNTAX_LINE_RE.search(text)
            if unused:
                for statement in unused:
                    skipped.append(f"{path.name}: skipped value table {statement}: no such signal")
                    # blanked, not removed: later messages name lines by their number in the file
                    lines = ["" if ln.strip().startswith(statement + " ") else ln for ln in lines]
            elif syntax:
                i = int(syntax.group(1)) - 1
                previous = next((k for k in range(i - 1, -1, -1) if lines[k].strip()), None)
                if (
                    previous is not None
                    and not lines[previous].lstrip().startswith(("BO_", "SG_"))
                    and not lines[previous].rstrip().endswith(";")
                ):
                    i = previous  # the statement before is unterminated: it is the broken one
                skipped.append(f"{path.name}: skipped line {i + 1}: {lines[i].strip()[:80]!r} (syntax)")
                if lines[i].lstrip().startswith("BO_"):
                    _drop_message_block(lines, i)
                else:
                    lines[i] = ""
            else:
                raise MappingError(f"cannot load DBC {path} even leniently: {text}") from exc
    else:
        raise MappingError(f"{path}: more than {_MAX_REPAIRS} repairs needed; not loaded")
    kept: list[str] = []
    for message in database.messages:
        if id(message) in before:
            continue
        try:
            message.refresh(strict=True)
        except Exception as exc:  # cantools' own check of overlapping / out-of-frame signals
            kept.append(f"{path.name}: kept message {message.name} as is: {exc}")
        finally:
            message.refresh(strict=False)
    return skipped + kept


@dataclass(slots=True)
class CanStats:
    """What a CAN source did with the frames it read."""

    frames: int = 0
    #: frames with at least one mapped signal decoded from them
    decoded: int = 0
    #: frames of ids the mapping does not use (other traffic on the bus), and how many distinct ids
    unmapped: int = 0
    unmapped_ids: set[tuple[str, int]] = field(default_factory=set)
    #: frames of a mapped id on a bus the mapping does not read (``channel``)
    other_channel: int = 0
    #: frames counted as unparsable in the quality report (error/remote frames, decode errors, bad lines)
    refused: int = 0
    #: frames decoded per mapped DBC message name (a mapped message never seen is warned about)
    per_message: dict[str, int] = field(default_factory=dict)
    #: frames per mapped DBC message name that reached decoding, decoded or not
    seen: dict[str, int] = field(default_factory=dict)
    #: the buses each mapped frame id read from every bus (no ``channel``) arrived on
    buses: dict[int, set[Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data, for a replay's summary."""
        return {
            "frames": self.frames,
            "decoded": self.decoded,
            "unmapped": self.unmapped,
            "unmapped_ids": len(self.unmapped_ids),
            "other_channel": self.other_channel,
            "refused": self.refused,
            "per_message": dict(sorted(self.per_message.items())),
        }


def _same_channel(wanted: str, got: str) -> bool:
    """Whether a frame's channel ``got`` is the mapping's ``wanted``: the same name, or a number equal to
    the name's trailing number (``0`` is ``can0``, ``vcan0`` and channel 0)."""
    if got == wanted:
        return True
    if wanted.isdigit():
        match = _TRAILING_NUMBER_RE.search(got)
        return match is not None and int(match.group(1)) == int(wanted)
    return False


_TRAILING_NUMBER_RE = re.compile(r"(\d+)$")


class CanSource:
    """Reads frames from a python-can bus until stopped (or idle too long) and yields signal blocks."""

    def __init__(
        self,
        bus: Any,
        mapping: CanMapping,
        *,
        block_s: float = 1.0,
        idle_timeout_s: float | None = None,
        monitor: QualityMonitor | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.bus = bus
        self.mapping = mapping
        self.block_s = block_s
        self.idle_timeout_s = idle_timeout_s
        self.monitor = monitor or QualityMonitor()
        self.stop = stop or threading.Event()
        self.stats = CanStats()
        self.monitor.report.warnings.extend(mapping.warnings)

    @property
    def frames(self) -> int:
        """Frames read so far."""
        return self.stats.frames

    @property
    def report(self) -> SourceReport:
        """The quality report so far."""
        return self.monitor.report

    def _ignore(self, reason: str) -> None:
        ignored = self.report.unparsable
        ignored[reason] = ignored.get(reason, 0) + 1

    def _messages(self) -> Iterator[Any]:
        """Frames off the bus until stopped, or until idle for ``idle_timeout_s``."""
        last_frame = time.monotonic()
        while not self.stop.is_set():
            msg = self.bus.recv(timeout=0.1)
            now = time.monotonic()
            if msg is None:
                if self.idle_timeout_s is not None and now - last_frame > self.idle_timeout_s:
                    return
                continue
            last_frame = now
            yield msg

    def _timestamp(self, msg: Any) -> float:
        """The epoch time of a frame (a bus stamps frames with the epoch time)."""
        return float(msg.timestamp)

    def _channel(self, msg: Any) -> str:
        """A frame's channel as a mapping names it (python-can's channel of a live bus as is)."""
        return str(msg.channel)

    def __iter__(self) -> Iterator[SignalBlock]:
        yield from self._decode(self._messages())
        self._warn_unseen()

    def _warn_unseen(self) -> None:
        """A warning per mapped message the recording never carried (on the mapped bus): a wrong DBC,
        bus or channel would otherwise only show as signals without samples."""
        if self.stop.is_set() or self.stats.frames == 0:
            return
        for frame_id, buses in sorted(self.stats.buses.items()):
            if len(buses) > 1:
                names = sorted({d.vss for d in self.mapping.by_frame[frame_id] if d.channel is None})
                self.report.warnings.append(
                    f"frame id 0x{frame_id:x} arrived on {len(buses)} buses"
                    f" ({', '.join(sorted(map(str, buses)))}) and {', '.join(names)} read it from all of"
                    " them: if the buses carry different messages under that id, set channel"
                )
        for decoders in self.mapping.by_frame.values():
            for message in {id(d.message): d.message for d in decoders}.values():
                if message is None or message.name in self.stats.per_message:
                    continue
                seen = self.stats.seen.get(message.name, 0)
                if seen:
                    self.report.warnings.append(
                        f"mapped message {message.name} (0x{message.frame_id:x}): none of its {seen} frames"
                        f" decodes with the DBC (undecodable_0x{message.frame_id:x})"
                    )
                    continue
                channels = sorted({d.channel for d in decoders if d.message is message and d.channel})
                on = f" on channel {', '.join(channels)}" if channels else ""
                self.report.warnings.append(
                    f"mapped message {message.name} (0x{message.frame_id:x}) never seen{on} in"
                    f" {self.stats.frames} frames"
                )

    def _decode(self, messages: Iterable[Any]) -> Iterator[SignalBlock]:
        names = self.mapping.signals
        column_of = {n: i for i, n in enumerate(names)}
        by_frame = self.mapping.by_frame
        filtered = {fid for fid, ds in by_frame.items() if any(d.channel is not None for d in ds)}
        open_ids = {fid for fid, ds in by_frame.items() if any(d.channel is None for d in ds)}
        stats = self.stats
        rows_t: list[float] = []
        rows: list[list[float]] = []
        block_start: float | None = None
        for msg in messages:
            if self.stop.is_set():
                break
            stats.frames += 1
            if msg.is_error_frame or msg.is_remote_frame:
                self._ignore("error_or_remote_frame")
                stats.refused += 1
                continue
            decoders = by_frame.get(msg.arbitration_id)
            if decoders is None:
                stats.unmapped += 1
                stats.unmapped_ids.add((str(msg.channel), msg.arbitration_id))
                continue  # traffic this mapping does not use
            if msg.arbitration_id in open_ids:
                buses = stats.buses.get(msg.arbitration_id)
                if buses is None:
                    stats.buses[msg.arbitration_id] = {msg.channel}
                elif msg.channel not in buses:
                    buses.add(msg.channel)
            if msg.arbitration_id in filtered:
                channel = self._channel(msg)
                decoders = [d for d in decoders if d.channel is None or _same_channel(d.channel, channel)]
                if not decoders:
                    stats.other_channel += 1
                    continue
            data = bytes(msg.data)
            # each signal with its own DBC message: two DBCs (two buses) may reuse a frame id
            decoded_by: dict[int, dict[str, Any] | None] = {}
            raw_by: dict[int, dict[str, Any]] = {}
            row: list[float] | None = None
            for d in decoders:
                key = id(d.message)
                if key not in decoded_by:
                    name = d.message.name
                    stats.seen[name] = stats.seen.get(name, 0) + 1
                    try:
                        # a frame shorter than the DBC says (a 5-byte SAS frame of an 8-byte DBC
                        # message): the signals it carries whole still decode; the others have no sample
                        decoded = d.message.decode(data, decode_choices=False, allow_truncated=True)
                        if len(data) < d.message.length and not any(
                            e.needs <= decoded.keys() for e in decoders if e.message is d.message
                        ):
                            raise ValueError(f"{len(data)} bytes carry none of the mapped signals")
                        decoded_by[key] = decoded
                        stats.per_message[name] = stats.per_message.get(name, 0) + 1
                    except Exception as exc:  # cantools raises several types for a frame that does not fit
                        log.debug(
                            "frame 0x%x does not decode as %s: %s", msg.arbitration_id, d.message.name, exc
                        )
                        decoded_by[key] = None
                        self._ignore(f"undecodable_0x{msg.arbitration_id:x}")
                decoded = decoded_by[key]
                if decoded is None:
                    continue
                if row is None:
                    t = self._timestamp(msg)
                    if not rows_t or rows_t[-1] != t:
                        rows_t.append(t)
                        rows.append([np.nan] * len(names))
                    row = rows[-1]
                if d.valid is not None:
                    try:
                        usable = d.valid(decoded) != 0
                    except KeyError:  # its status signal is not in this frame (cut short, multiplexed)
                        usable = False
                    if not usable:
                        self._ignore(f"invalid_{d.vss}")
                        continue
                if d.choices is not None:
                    raw = raw_by.get(key)
                    if raw is None:  # value tables are keyed by the raw value, before the DBC's scaling
                        raw = raw_by[key] = d.message.decode(
                            data, decode_choices=False, scaling=False, allow_truncated=True
                        )
                    if d.dbc_signal not in raw:
                        self._ignore(f"truncated_{d.vss}")
                        continue
                    mapped = d.choices.get(int(raw[d.dbc_signal]))
                    if mapped is None:
                        self._ignore(f"unmapped_value_{d.dbc_signal}")
                    else:
                        row[column_of[d.vss]] = mapped
                    continue
                value: Any
                if d.expression is not None:
                    try:
                        value = d.expression(decoded)
                    except KeyError:  # a multiplexed signal this frame does not carry, or cut off
                        if len(data) < d.message.length:
                            self._ignore(f"truncated_{d.vss}")
                        continue
                    if not math.isfinite(value):  # a division by zero: no sample, counted
                        self._ignore(f"no_value_{d.vss}")
                        continue
                else:
                    value = decoded.get(d.dbc_signal)
                    if value is None and len(data) < d.message.length:
                        self._ignore(f"truncated_{d.vss}")
                        continue
                if isinstance(value, int | float):
                    row[column_of[d.vss]] = (float(value) * d.scale + d.offset) * d.factor
            if row is None:
                stats.refused += 1
                continue
            stats.decoded += 1
            if block_start is None:
                block_start = rows_t[-1]
            if rows_t[-1] - block_start >= self.block_s:
                yield self._block(rows_t, rows)
                rows_t, rows, block_start = [], [], None
        if rows_t:
            yield self._block(rows_t, rows)

    def _block(self, rows_t: list[float], rows: list[list[float]]) -> SignalBlock:
        data = np.asarray(rows, dtype=np.float64)
        columns = {name: data[:, i] for i, name in enumerate(self.mapping.signals)}
        return self.monitor.check(np.asarray(rows_t, dtype=np.float64), columns)


@dataclass(slots=True)
class _Frame:
    """One frame of a candump log (the attributes of ``can.Message`` the source reads)."""

    timestamp: float
    arbitration_id: int
    data: bytes
    channel: str
    is_extended_id: bool
    is_error_frame: bool = False
    is_remote_frame: bool = False
    is_fd: bool = False


#: ``(1436509052.249713) can0 123#DEADBEEF`` as ``candump -l``/``-L`` writes it; ``##<flags>`` for CAN FD,
#: ``#R`` (with an optional length) for a remote request, an optional R/T direction at the end
_CANDUMP_RE = re.compile(
    r"\((?P<t>[0-9]+(?:\.[0-9]*)?)\)\s+(?P<channel>\S+)\s+(?P<id>[0-9A-Fa-f]{1,8})"
    r"#(?:(?P<remote>[Rr][0-9]*)|#(?P<flags>[0-9A-Fa-f])(?P<fd>[0-9A-Fa-f.]*)|(?P<data>[0-9A-Fa-f.]*))"
    r"(?:\s+[RrTt])?"
)
_CAN_ERR_FLAG = 0x20000000


def _candump_frame(line: str) -> _Frame:
    """Parse one candump log line; ValueError if it is not a frame."""
    match = _CANDUMP_RE.fullmatch(line)
    if match is None:
        raise ValueError("not a candump frame")
    ident = match.group("id")
    can_id = int(ident, 16)
    extended = len(ident) > 3
    if extended and can_id & _CAN_ERR_FLAG:
        return _Frame(float(match.group("t")), can_id, b"", match.group("channel"), True, is_error_frame=True)
    if match.group("remote") is not None:
        return _Frame(
            float(match.group("t")), can_id, b"", match.group("channel"), extended, is_remote_frame=True
        )
    fd = match.group("fd") is not None
    text = (match.group("fd") if fd else match.group("data")).replace(".", "")
    if len(text) % 2 or len(text) > (128 if fd else 16):
        raise ValueError("data is not whole bytes, or too long")
    if can_id > (0x1FFFFFFF if extended else 0x7FF):
        raise ValueError("frame id out of range")
    return _Frame(
        float(match.group("t")), can_id, bytes.fromhex(text), match.group("channel"), extended, is_fd=fd
    )


class CanLogSource(CanSource):
    """A recorded CAN log (candump ``.log``, Vector ``.asc`` or ``.blf``, PEAK ``.trc``) decoded like a bus.

    Frames keep the recording's timestamps. candump and BLF store epoch times; an ASC file stores times
    relative to its ``date`` header, which is read to make them absolute; a TRC file relative to its
    ``$STARTTIME``, which PEAK's tools write in the logger's local time and python-can reads as UTC. A log
    with only relative times (below 1e8 s, i.e. before 1973) is anchored like a relative CSV recording
    (``time_base`` says so).
    """

    #: malformed candump lines quoted in the warning
    MAX_QUOTED_LINES = 3

    def __init__(
        self,
        path: str | Path,
        mapping: CanMapping,
        *,
        block_s: float = 60.0,
        monitor: QualityMonitor | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        super().__init__(None, mapping, block_s=block_s, monitor=monitor, stop=stop)
        self.path = Path(path)
        if not is_can_log(self.path):
            raise MappingError(f"{self.path}: not a CAN log; known: {', '.join(CAN_LOG_SUFFIXES)}")
        if not self.path.exists():
            raise MappingError(f"no such file: {self.path}")
        self.time_base: TimeBase | None = None

    def _messages(self) -> Iterator[Any]:
        if self.path.suffix.lower() == ".log":
            yield from self._candump()
            return
        import can

        # ASC: absolute times from the file's "date" line rather than the reader's default of 0-based times
        options: dict[str, Any] = {"relative_timestamp": False} if self.path.suffix.lower() == ".asc" else {}
        try:
            reader = can.LogReader(self.path, **options)
        except Exception as exc:  # python-can's readers raise OSError, struct.error, BLFParseError, ...
            raise MappingError(f"cannot read CAN log {self.path}: {exc}") from exc
        with reader:
            try:
                yield from reader
            except Exception as exc:  # a truncated or corrupt log (several types): stop with its reason
                raise MappingError(f"{self.path}: unreadable after {self.frames} frames: {exc}") from exc

    def _candump(self) -> Iterator[_Frame]:
        """The frames of a candump log; lines that are not frames are counted and quoted, not fatal."""
        bad: list[str] = []
        bad_count = 0
        try:
            with self.path.open(encoding="utf-8", errors="replace") as lines:
                for number, line in enumerate(lines, 1):
                    text = line.strip()
                    if not text or text.startswith("#"):  # blank lines and comments of some loggers
                        continue
                    try:
                        frame = _candump_frame(text)
                    except ValueError:
                        bad_count += 1
                        self._ignore("malformed_line")
                        if len(bad) < self.MAX_QUOTED_LINES:
                            bad.append(f"line {number}: {text[:60]!r}")
                        continue
                    yield frame
        except OSError as exc:
            raise MappingError(f"cannot read CAN log {self.path}: {exc.strerror}") from exc
        if bad_count:
            more = "; ..." if bad_count > len(bad) else ""
            quoted = "; ".join(bad) + more
            self.report.warnings.append(
                f"{self.path.name}: skipped {bad_count} lines that are not candump frames ({quoted})"
            )

    def _channel(self, msg: Any) -> str:
        # python-can counts ASC and BLF channels from 0 but gives TRC's as the file writes them, from 1
        if self.path.suffix.lower() == ".trc" and isinstance(msg.channel, int):
            return str(msg.channel - 1)
        return str(msg.channel)

    def _timestamp(self, msg: Any) -> float:
        stamp = float(msg.timestamp)
        if self.time_base is None:
            self.time_base = TimeBase(TimeFormat.EPOCH_S if stamp > 1e8 else TimeFormat.RELATIVE_S)
        return stamp + self.time_base.anchor if self.time_base.relative else stamp
