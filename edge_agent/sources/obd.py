"""OBD-II source through python-OBD (an ELM327 adapter on a serial port or Bluetooth tty).

OBD-II is a request/response protocol: the source polls the supported PIDs at ``poll_hz`` (a cheap ELM327
answers roughly 10-20 requests per second in total, so a few PIDs at 2 Hz is a sensible default), reads the
stored trouble codes every ``dtc_every_s``, and yields a block every ``block_s``. Values arrive as
quantities with units and are converted to the VSS unit. A PID the car does not support is skipped; one that
fails to answer becomes "no sample" and is counted in the quality report.

Requires the ``obd`` extra.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from .. import signals as vss
from ..signals import SignalBlock
from .quality import QualityMonitor, SourceReport

log = logging.getLogger(__name__)

#: python-OBD command name -> (VSS signal, unit to ask pint for)
PIDS: dict[str, tuple[str, str | None]] = {
    "SPEED": (vss.SPEED, "kph"),
    "RPM": (vss.ENGINE_SPEED, None),
    "FUEL_LEVEL": (vss.FUEL_LEVEL, None),
}


class ObdSource:
    """Polls an OBD-II adapter and yields signal blocks and fault codes."""

    def __init__(
        self,
        connection: Any,
        *,
        poll_hz: float = 2.0,
        block_s: float = 10.0,
        dtc_every_s: float = 60.0,
        max_polls: int | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.time,
        monitor: QualityMonitor | None = None,
    ) -> None:
        import obd

        self._obd = obd
        self.connection = connection
        self.period = 1.0 / poll_hz
        self.block_s = block_s
        self.dtc_every_s = dtc_every_s
        self.max_polls = max_polls
        self.stop = stop or threading.Event()
        self.clock = clock
        self.monitor = monitor or QualityMonitor(gap_s=max(2.0, 3.0 / poll_hz))
        self.commands = {
            name: (obd.commands[name], signal, unit)
            for name, (signal, unit) in PIDS.items()
            if connection.supports(obd.commands[name])
        }
        if not self.commands:
            log.warning("the car answers none of the OBD-II PIDs this source reads")

    @classmethod
    def open(cls, port: str | None = None, **kwargs: Any) -> ObdSource:
        """Connect to an adapter (``port`` None: python-OBD scans for one) and build the source."""
        import obd

        connection = obd.OBD(port, fast=False, timeout=5)
        if not connection.is_connected():
            raise ConnectionError(
                f"no OBD-II adapter answered on {port or 'any port'}: {connection.status()}"
            )
        return cls(connection, **kwargs)

    @property
    def report(self) -> SourceReport:
        """The quality report so far."""
        return self.monitor.report

    def _value(self, name: str, command: Any, unit: str | None) -> float:
        response = self.connection.query(command)
        if response.is_null():
            self.report.unparsable[name] = self.report.unparsable.get(name, 0) + 1
            return float("nan")
        value = response.value
        if unit is not None:
            value = value.to(unit)
        return float(getattr(value, "magnitude", value))

    def _dtcs(self, t: float) -> tuple[tuple[float, str], ...]:
        response = self.connection.query(self._obd.commands.GET_DTC)
        if response.is_null():
            return ()
        return tuple((t, str(code)) for code, _description in response.value)

    def __iter__(self) -> Iterator[SignalBlock]:
        names = [signal for _cmd, signal, _unit in self.commands.values()]
        rows_t: list[float] = []
        rows: list[list[float]] = []
        dtcs: list[tuple[float, str]] = []
        next_dtc = self.clock()
        polls = 0
        block_start: float | None = None
        while not self.stop.is_set() and (self.max_polls is None or polls < self.max_polls):
            t = self.clock()
            rows_t.append(t)
            rows.append(
                [self._value(name, cmd, unit) for name, (cmd, _signal, unit) in self.commands.items()]
            )
            if t >= next_dtc:
                dtcs += self._dtcs(t)
                next_dtc = t + self.dtc_every_s
            polls += 1
            block_start = t if block_start is None else block_start
            if t - block_start >= self.block_s:
                yield self._block(rows_t, rows, names, dtcs)
                rows_t, rows, dtcs, block_start = [], [], [], None
            time.sleep(max(0.0, t + self.period - self.clock()))
        if rows_t:
            yield self._block(rows_t, rows, names, dtcs)

    def _block(
        self, rows_t: list[float], rows: list[list[float]], names: list[str], dtcs: list[tuple[float, str]]
    ) -> SignalBlock:
        data = np.asarray(rows, dtype=np.float64).reshape(len(rows_t), len(names))
        columns = {name: data[:, i] for i, name in enumerate(names)}
        return self.monitor.check(np.asarray(rows_t, dtype=np.float64), columns, tuple(dtcs))
