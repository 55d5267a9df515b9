"""Streaming signal processing in numpy: resampling, low-pass filtering, IMU mount calibration.

Each stage consumes signal blocks and yields signal blocks, keeping only the little state it needs across
block boundaries (the last valid sample per signal, a filter's tail in a ring buffer, a bounded warm-up
buffer), so the result does not depend on how a source chunks its samples and memory stays flat.

- :class:`Resampler` puts every signal on one fixed-rate grid by linear interpolation between its own valid
  samples; grid points farther than ``max_gap_s`` from any input sample are not produced, so a dropout stays
  a gap downstream (and can still end a trip).
- :class:`LowPass` is a moving average of ``N = round(0.443 * rate / cutoff)`` samples, whose -3 dB point is
  the cutoff; output times are shifted back by the window's half-length, so events keep their timing (the
  stream's first N-1 samples only fill the window).
- :class:`MountCalibrator` turns the raw axes of an accelerometer mounted at any angle into the car's frame
  (ISO 8855: x forward, y left, z up). Up is the direction of the mean specific force while the car stands
  (gravity alone; after a bounded wait, the mean over driving). Forward is the horizontal direction whose
  acceleration best explains the change of speed (least squares against d(speed)/dt); left is up x forward.
  Without a speed signal it learns nothing and the raw axes are dropped: on a winding road the principal
  horizontal axis is lateral, and a wrong axis would invent harsh events.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from . import signals as vss
from .signals import FloatArray, SignalBlock

log = logging.getLogger(__name__)

G = 9.80665
VERTICAL = "Vehicle.Acceleration.Vertical"
#: where a gyroscope's raw axes travel in a block (deg/s, the device's frame), for :class:`MountCalibrator`
GYRO_AXES = ("gyro.x", "gyro.y", "gyro.z")


class RingBuffer:
    """The last ``capacity`` rows of a (time, columns) stream, in a preallocated numpy array."""

    def __init__(self, capacity: int, width: int) -> None:
        self._data = np.full((capacity, width), np.nan)
        self._start = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def extend(self, rows: np.ndarray) -> None:
        """Append rows, overwriting the oldest when full."""
        capacity = self._data.shape[0]
        rows = rows[-capacity:]
        n = rows.shape[0]
        end = (self._start + self._size) % capacity
        first = min(n, capacity - end)
        self._data[end : end + first] = rows[:first]
        self._data[: n - first] = rows[first:]
        overflow = max(0, self._size + n - capacity)
        self._start = (self._start + overflow) % capacity
        self._size = min(capacity, self._size + n)

    def values(self) -> np.ndarray:
        """The stored rows, oldest first (a copy)."""
        idx = (self._start + np.arange(self._size)) % self._data.shape[0]
        return self._data[idx]


class Stage:
    """One processing step: blocks in, blocks out."""

    def process(self, block: SignalBlock) -> Iterator[SignalBlock]:
        """Consume a block; yield what is ready."""
        raise NotImplementedError

    def flush(self) -> Iterator[SignalBlock]:
        """The source ended: yield what is still held."""
        return iter(())


# ---------------------------------------------------------------------------------------------- resampler


class Resampler(Stage):
    """Linear interpolation of every signal onto the grid ``k / rate_hz``."""

    def __init__(self, rate_hz: float, *, max_gap_s: float = 1.0) -> None:
        self.period = 1.0 / rate_hz
        self.max_gap_s = max_gap_s
        self._next_k: int | None = None
        self._last: dict[str, tuple[float, float]] = {}  # signal -> last valid (t, value)
        self._last_t = -np.inf

    def process(self, block: SignalBlock) -> Iterator[SignalBlock]:
        if len(block) == 0:
            return
        t = block.t
        if self._next_k is None:  # the grid starts at the first sample ever seen
            self._next_k = int(np.ceil(t[0] / self.period - 1e-9))
        first_k = self._next_k
        last_k = int(np.floor(t[-1] / self.period + 1e-9))
        if last_k < first_k:
            self._remember(block)
            return
        grid = np.arange(first_k, last_k + 1) * self.period
        self._next_k = last_k + 1
        # keep grid points with an input sample within max_gap_s on both sides
        inputs = np.concatenate(([self._last_t], t))
        pos = np.searchsorted(inputs, grid, side="right")
        before = inputs[np.maximum(pos - 1, 0)]
        after = inputs[np.minimum(pos, inputs.size - 1)]
        near = (grid - before <= self.max_gap_s + 1e-9) & (
            np.maximum(after - grid, 0) <= self.max_gap_s + 1e-9
        )
        grid = grid[near]
        columns = {}
        for name, column in block.signals.items():
            valid = ~np.isnan(column)
            xs, ys = t[valid], column[valid]
            if name in self._last:
                lt, lv = self._last[name]
                xs, ys = np.concatenate(([lt], xs)), np.concatenate(([lv], ys))
            if xs.size == 0:
                columns[name] = np.full(grid.size, np.nan)
                continue
            # a grid point a rounding error past the last sample is that sample (the grid is k * period,
            # the samples t0 + i * step: they differ in the last bits), not "no sample"
            at = np.where((grid > xs[-1]) & (grid <= xs[-1] + 1e-6), xs[-1], grid)
            values = np.interp(at, xs, ys, left=np.nan, right=np.nan)
            # no interpolation across a signal's own dropout
            p = np.searchsorted(xs, grid, side="right")
            span = xs[np.minimum(p, xs.size - 1)] - xs[np.maximum(p - 1, 0)]
            values[(span > self.max_gap_s + 1e-9) & (p > 0) & (p < xs.size)] = np.nan
            columns[name] = values
        self._remember(block)
        if grid.size:
            yield SignalBlock(grid, columns, block.dtcs)
        elif block.dtcs:
            yield SignalBlock(np.empty(0), {k: np.empty(0) for k in block.signals}, block.dtcs)

    def _remember(self, block: SignalBlock) -> None:
        self._last_t = float(block.t[-1])
        for name, column in block.signals.items():
            idx = np.flatnonzero(~np.isnan(column))
            if idx.size:
                self._last[name] = (float(block.t[idx[-1]]), float(column[idx[-1]]))


# ------------------------------------------------------------------------------------------ anti-alias

#: the motion signals the conditioning smooths (others are only resampled); raw IMU axes too, before the
#: mount calibration
MOTION_SIGNALS = (
    vss.ACCEL_LONGITUDINAL, vss.ACCEL_LATERAL, vss.YAW_RATE, VERTICAL, "imu.x", "imu.y", "imu.z",
    "gyro.x", "gyro.y", "gyro.z",
)  # fmt: skip
#: the detection grid every source is put on (Hz), in the car and in replay alike
DETECTION_HZ = 10.0
#: width of the continuous-time box average before the grid (s): -3 dB at 0.89 Hz, zero at 2 Hz, so the
#: 10 Hz grid does not alias and harsh manoeuvres (lobes of 0.7-3 s) keep their peaks
SMOOTHING_S = 0.5
#: a signal's samples further apart than this are a dropout (s): no value is made across it
GAP_S = 1.5


class AntiAlias(Stage):
    """Box average of the named signals over ``window_s`` of continuous time, whatever the sample rate.

    Each output sample is the mean of the signal's linear interpolant over [t - w/2, t + w/2], computed
    exactly from its running integral. A 10 Hz and a 200 Hz recording of the same motion therefore give the
    same values (up to what the slower one did not sample), unlike a moving average of N samples, whose span
    in seconds depends on the rate. Samples keep their times; output lags input by ``window_s / 2`` (held in
    a small buffer). A window that spans a signal's own dropout longer than ``max_gap_s`` gives "no sample".
    Other signals pass through unchanged.
    """

    def __init__(
        self,
        window_s: float = SMOOTHING_S,
        signals: Sequence[str] = MOTION_SIGNALS,
        *,
        max_gap_s: float = 1.0,
    ) -> None:
        self.half = window_s / 2
        self.names = frozenset(signals)
        self.max_gap_s = max_gap_s
        self._t = np.empty(0)
        self._cols: dict[str, FloatArray] = {}
        self._done = -np.inf  # time of the last sample already yielded

    def process(self, block: SignalBlock) -> Iterator[SignalBlock]:
        if len(block) == 0:
            if block.dtcs:
                yield block
            return
        n_old = self._t.size
        t = np.concatenate((self._t, block.t))
        cols = {}
        for name in dict.fromkeys([*self._cols, *block.signals]):
            old = self._cols.get(name, np.full(n_old, np.nan))
            cols[name] = np.concatenate((old, block.signals.get(name, np.full(len(block), np.nan))))
        ready = (t > self._done) & (t <= t[-1] - self.half)
        out = self._output(t, cols, np.flatnonzero(ready), block.dtcs)
        if out is not None:
            yield out
        elif block.dtcs:
            yield SignalBlock(np.empty(0), {k: np.empty(0) for k in cols}, block.dtcs)
        # keep what the next outputs' windows still reach (plus a dropout's worth for the interpolation)
        keep = t >= min(self._done, t[-1] - self.half) - self.half - self.max_gap_s - 1e-9
        self._t = t[keep]
        self._cols = {k: v[keep] for k, v in cols.items()}

    def flush(self) -> Iterator[SignalBlock]:
        t, cols = self._t, self._cols
        out = self._output(t, cols, np.flatnonzero(t > self._done), ()) if t.size else None
        self._t, self._cols = np.empty(0), {}
        if out is not None:
            yield out

    def _output(
        self,
        t: FloatArray,
        cols: dict[str, FloatArray],
        rows: np.ndarray,
        dtcs: tuple[tuple[float, str], ...],
    ) -> SignalBlock | None:
        if rows.size == 0:
            return None
        at = t[rows]
        columns = {
            name: self._box(t, column, at) if name in self.names else column[rows]
            for name, column in cols.items()
        }
        self._done = float(at[-1])
        return SignalBlock(at, columns, dtcs)

    def _box(self, t: FloatArray, column: FloatArray, at: FloatArray) -> FloatArray:
        """The mean of ``column``'s linear interpolant over [at - half, at + half], clipped to its samples."""
        valid = ~np.isnan(column)
        xs, ys = t[valid], column[valid]
        if xs.size < 2:
            lone = np.full(at.size, np.nan)
            if xs.size:
                lone[np.abs(at - xs[0]) <= self.max_gap_s] = ys[0]
            return lone
        dx = np.diff(xs)
        slope = np.diff(ys) / np.where(dx > 0, dx, 1.0)
        integral = np.concatenate(([0.0], np.cumsum((ys[:-1] + ys[1:]) / 2 * dx)))

        def running(tau: FloatArray) -> FloatArray:
            j = np.clip(np.searchsorted(xs, tau, side="right") - 1, 0, xs.size - 2)
            d = tau - xs[j]
            result: FloatArray = integral[j] + ys[j] * d + 0.5 * slope[j] * d * d
            return result

        lo = np.maximum(at - self.half, xs[0])
        hi = np.minimum(at + self.half, xs[-1])
        width = hi - lo
        with np.errstate(invalid="ignore", divide="ignore"):
            mean: FloatArray = (running(hi) - running(lo)) / width
        # a window of one instant (a lone sample at the stream's edge): the interpolant's value there
        point = width <= 1e-9
        if point.any():
            mean[point] = np.interp(at[point], xs, ys)
        # no value across the signal's own dropout, nor far from its samples
        big = np.concatenate(([0], np.cumsum(dx > self.max_gap_s + 1e-9)))
        first = np.clip(np.searchsorted(xs, lo, side="right") - 1, 0, xs.size - 1)
        last = np.clip(np.searchsorted(xs, hi, side="left"), 0, xs.size - 1)
        gap = big[last] - big[first] > 0
        far = (xs[0] - at > self.max_gap_s) | (at - xs[-1] > self.max_gap_s)
        mean[gap | far] = np.nan
        return mean


def conditioning_stages(
    rate_hz: float | None = DETECTION_HZ, *, window_s: float = SMOOTHING_S, lowpass_hz: float | None = None
) -> list[Stage]:
    """The one conditioning path of every source, in the car and in replay: the rate-independent
    anti-alias box, then the fixed detection grid (and, if asked, a further low-pass on that grid).

    ``rate_hz=None`` keeps the source's own sample times (only the box average): for sources already on
    a fixed grid that should stay as they are.
    """
    stages: list[Stage] = [AntiAlias(window_s)] if window_s > 0 else []
    if rate_hz:
        # 1.5 s: a GPS speed's fixes come a second apart, give or take, and are interpolated between;
        # a longer dropout stays a gap
        stages.append(Resampler(rate_hz, max_gap_s=GAP_S))
        if lowpass_hz:
            stages.append(LowPass(lowpass_hz, rate_hz))
    return stages


# --------------------------------------------------------------------------------------------- low-pass


DEFAULT_FILTERED = (vss.ACCEL_LONGITUDINAL, vss.ACCEL_LATERAL, vss.YAW_RATE, VERTICAL)


class LowPass(Stage):
    """Moving-average low-pass of the named signals at a fixed (resampled) rate; others pass through."""

    def __init__(self, cutoff_hz: float, rate_hz: float, signals: Sequence[str] = DEFAULT_FILTERED) -> None:
        self.window = max(1, round(0.443 * rate_hz / cutoff_hz))
        self.delay_s = (self.window - 1) / 2 / rate_hz
        self.names = tuple(signals)
        self._tail: RingBuffer | None = None
        self._columns: list[str] = []

    def process(self, block: SignalBlock) -> Iterator[SignalBlock]:
        if len(block) == 0 or self.window == 1:
            yield block
            return
        w = self.window
        new = [n for n in block.signals if n not in self._columns]
        if self._tail is None or new:
            old = self._tail.values() if self._tail is not None else np.empty((0, 1 + len(self._columns)))
            self._columns += new
            self._tail = RingBuffer(w - 1, 1 + len(self._columns))
            self._tail.extend(np.hstack([old, np.full((old.shape[0], len(new)), np.nan)]))
        rows = np.column_stack(
            [block.t, *(block.signals.get(n, np.full(len(block), np.nan)) for n in self._columns)]
        )
        history = np.vstack([self._tail.values(), rows])
        self._tail.extend(rows)
        n_out = history.shape[0] - (w - 1)
        if n_out <= 0:
            return
        # output j averages rows j .. j+w-1 and describes the time of its centre row
        centre = (w - 1) // 2
        kernel = np.ones(w) / w
        columns: dict[str, FloatArray] = {}
        for i, name in enumerate(self._columns, start=1):
            if name in self.names:
                columns[name] = np.convolve(history[:, i], kernel, mode="valid")  # a NaN in the window: NaN
            else:
                columns[name] = history[centre : centre + n_out, i]
        t = history[w - 1 :, 0] - self.delay_s
        yield SignalBlock(t, columns, block.dtcs)


# ----------------------------------------------------------------------------------------- calibration


@dataclass
class MountCalibration:
    """Rotation from the device's axes to the car's (rows: forward, left, up), and how it was found."""

    rotation: np.ndarray
    method: str
    samples: int

    def apply(self, raw: np.ndarray) -> np.ndarray:
        """Rotate (n, 3) raw specific force into (forward, left, up) with gravity removed from up."""
        car: np.ndarray = raw @ self.rotation.T
        car[:, 2] -= G
        return car


MIN_REST_SAMPLES = 50
#: with sample times known, at least this much standing still (s): "up" from a second of rest at 50 Hz can
#: be the end of a stop's braking, tilted by it
MIN_REST_S = 5.0


def _enough_rest(count: int, t: np.ndarray | None) -> bool:
    if t is None or t.size < 2:
        return count >= MIN_REST_SAMPLES
    return count * float(np.median(np.diff(t))) >= MIN_REST_S


#: the principal-axis method needs this much straight acceleration and braking (seconds of samples past
#: 0.8 m/s^2 and 2.5 times the median, while the yaw rate stays under 4 deg/s)
MIN_STRAIGHT_S = 3.0


def forward_without_speed(plane: np.ndarray, t: np.ndarray, yaw: np.ndarray) -> np.ndarray | None:
    """Forward as a unit vector in the 2-D horizontal coordinates ``plane`` (n, 2), without speed.

    The axis: the principal axis of the horizontal specific force (0.5 s averages) while the car goes
    straight (gyro yaw rate ``yaw`` under 4 deg/s) and accelerates or brakes (at least 0.8 m/s^2): then all
    horizontal force is longitudinal. Cornering is excluded by the yaw rate, which is why this needs a gyro.

    The sign is ambiguous: the axis is forward or backward. The caller resolves it by the turns first (a
    turn's centripetal acceleration points to its inside, a_lat = v * yaw rate with v > 0: the lateral axis
    of the right forward correlates positively with the yaw rate; reversing is rare), then by the speed
    when there is one, and only failing both by what this function returns: the asymmetry of driving,
    braking harder than accelerating (a car brakes at 6-9 m/s^2 and accelerates at 2-4), so the side with
    the larger extremes (the 1 % tail) is backward, which a drive without firm braking can get wrong. None
    when there is too little straight acceleration or no clear axis (the two principal moments within a
    factor 2).
    """
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    if step <= 0:
        return None
    w = max(1, round(0.5 / step))
    kernel = np.ones(w) / w
    smooth = np.column_stack([np.convolve(plane[:, i], kernel, mode="same") for i in (0, 1)])
    yaw_s = np.convolve(np.nan_to_num(yaw), kernel, mode="same")
    magnitude = np.hypot(smooth[:, 0], smooth[:, 1])
    # well above the sensor's own floor (a phone's aliased vibration wanders by a m/s^2 in every direction)
    floor = max(0.8, 2.5 * float(np.median(magnitude)))
    straight = (magnitude >= floor) & (np.abs(yaw_s) < 4.0) & ~np.isnan(yaw)
    if straight.sum() * step < MIN_STRAIGHT_S:
        return None
    pts = smooth[straight]
    values, vectors = np.linalg.eigh(pts.T @ pts / pts.shape[0])  # uncentred: the axis through zero
    if values[1] < 2.0 * values[0]:
        return None
    axis: np.ndarray = vectors[:, 1]
    p = pts @ axis
    return axis if -np.percentile(p, 1) > np.percentile(p, 99) else -axis


def estimate_mount(
    raw: np.ndarray,
    dv_dt: np.ndarray | None,
    standing: np.ndarray | None = None,
    *,
    require_rest: bool = False,
    t: np.ndarray | None = None,
    yaw: np.ndarray | None = None,
    gyro: np.ndarray | None = None,
    sparse_speed: bool = False,
) -> MountCalibration | None:
    """Learn the mounting from raw (n, 3) accelerometer samples and, if known, the car's dv/dt (m/s^2).

    ``standing`` marks samples taken at rest: there the specific force is gravity alone, a cleaner "up"
    than the mean over driving, which cornering tilts. Without dv/dt, ``t`` and a yaw rate ``yaw`` (deg/s),
    or the raw (n, 3) ``gyro`` of the same device (its rate about "up" is the yaw rate, whatever the mount),
    let :func:`forward_without_speed` find forward (method ``principal-axis``). So does a ``sparse_speed``
    (GPS: a fix a second, about a second late, which a least-squares fit against the accelerometer cannot
    use); there the speed only decides which way the axis points.
    """
    has_gyro = t is not None and (yaw is not None or gyro is not None)
    if has_gyro and (dv_dt is None or sparse_speed):
        assert t is not None
        ok = ~np.isnan(raw).any(axis=1)
        return _mount_from_axis(
            raw[ok], t[ok], None if yaw is None else yaw[ok], None if gyro is None else gyro[ok],
            None if dv_dt is None else dv_dt[ok], None if standing is None else standing[ok],
            need_speed_sign=require_rest,
        )  # fmt: skip
    ok = ~np.isnan(raw).any(axis=1)
    if dv_dt is not None:
        ok &= ~np.isnan(dv_dt)
    a = raw[ok]
    if a.shape[0] < 100:
        return None
    at_rest = raw[ok & standing] if standing is not None else a[:0]
    rested = _enough_rest(at_rest.shape[0], t)
    if not rested and require_rest:
        return None
    mean = at_rest.mean(axis=0) if rested else a.mean(axis=0)
    if not 0.7 * G < np.linalg.norm(mean) < 1.3 * G:
        return None  # not an accelerometer at rest on average (or a wrong unit)
    up = mean / np.linalg.norm(mean)
    horizontal = a - np.outer(a @ up, up)
    helper = np.eye(3)[int(np.argmin(np.abs(up)))]
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(up, e1)
    plane = np.column_stack([horizontal @ e1, horizontal @ e2])  # 2-D horizontal coordinates
    if dv_dt is None or np.std(dv_dt[ok]) < 0.2:
        # Without a changing speed, forward cannot be told from sideways: on a winding road the principal
        # horizontal axis is lateral. A wrong axis would invent harsh events, so learn nothing.
        return None
    coef, *_ = np.linalg.lstsq(plane - plane.mean(axis=0), dv_dt[ok] - dv_dt[ok].mean(), rcond=None)
    forward = coef[0] * e1 + coef[1] * e2
    forward /= np.linalg.norm(forward)
    # A GPS speed a second late lines up with a high-passed accelerometer's rebound as well as with its lobe,
    # so the fit's sign can come out backwards (a phone's brakes read as accelerations): decide it as the gyro
    # path does, on the firm lobes against the speed shifted by its best lag.
    if sparse_speed and t is not None and _speed_sign(horizontal @ forward, dv_dt[ok], t[ok]) < 0:
        forward = -forward
    left = np.cross(up, forward)
    return MountCalibration(np.vstack([forward, left, up]), "speed", int(a.shape[0]))


def _speed_sign(p: np.ndarray, dv_dt: np.ndarray, t: np.ndarray) -> int:
    """+1 if the projection ``p`` grows with the speed's change, -1 if against it, 0 if undecided.

    A GPS speed lags by about a second and a phone's linear acceleration is high-passed (only its firm,
    short lobes are trustworthy), so: both averaged over 0.5 s, only samples where ``|p|`` exceeds 1 m/s^2,
    the speed shifted back by the lag (0-2 s) that correlates best.
    """
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    if step <= 0:
        return 0
    kernel = np.ones(max(1, round(0.5 / step)))
    kernel /= kernel.size
    ps = np.convolve(p, kernel, mode="same")
    valid = ~np.isnan(dv_dt)
    ds = np.convolve(np.where(valid, dv_dt, 0.0), kernel, mode="same")
    strong = np.flatnonzero(np.abs(ps) > 1.0)
    best = 0.0
    for lag in range(0, round(2.0 / step) + 1, max(1, round(0.1 / step))):
        idx = strong[strong + lag < t.size]
        idx = idx[valid[idx + lag]]
        if idx.size < 20:
            continue
        c = float(np.dot(ps[idx], ds[idx + lag]) / idx.size)
        if abs(c) > abs(best):
            best = c
    return 0 if best == 0 else (1 if best > 0 else -1)


def _horizontal_basis(up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.eye(3)[int(np.argmin(np.abs(up)))]
    e1 = np.cross(up, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(up, e1)


def _mount_from_axis(
    a: np.ndarray,
    t: np.ndarray,
    yaw: np.ndarray | None,
    gyro: np.ndarray | None,
    dv_dt: np.ndarray | None,
    standing: np.ndarray | None,
    *,
    need_speed_sign: bool = False,
) -> MountCalibration | None:
    if a.shape[0] < 100:
        return None
    rest = a[standing] if standing is not None else a[:0]
    mean = rest.mean(axis=0) if _enough_rest(rest.shape[0], t) else a.mean(axis=0)
    if not 0.7 * G < np.linalg.norm(mean) < 1.3 * G:
        return None
    up = mean / np.linalg.norm(mean)
    if yaw is None:
        assert gyro is not None
        yaw = gyro @ up
    e1, e2 = _horizontal_basis(up)
    horizontal = a - np.outer(a @ up, up)
    plane = np.column_stack([horizontal @ e1, horizontal @ e2])
    found = forward_without_speed(plane, t, yaw)
    if found is None:
        left = left_from_turns(plane, t, yaw)
        if left is None:
            return None
        return _calibration(up, e1, e2, np.array([left[1], -left[0]]), "turns", a.shape[0])
    method = "principal-axis"
    turn = _turn_sign(plane, found, t, yaw)
    if turn != 0:
        # a turn's centripetal acceleration points to its inside (a_lat = v * yaw rate, v > 0 driving
        # forward): "left" must correlate positively with the yaw rate, which a backward axis would invert
        return _calibration(up, e1, e2, found * turn, "principal-axis", a.shape[0])
    if dv_dt is not None:
        # the speed, however late and sparse, says which way is forward: the projection on forward must
        # grow with the speed's change (both averaged over 2 s, which absorbs a GPS's second of latency)
        sign = _speed_sign(plane @ found, dv_dt, t)
        if sign != 0:
            found = found * sign
            method = "principal-axis+speed"
        elif need_speed_sign:
            return None  # the speed will say which way is forward once it covers a firm manoeuvre: wait
    return _calibration(up, e1, e2, found, method, a.shape[0])


def _calibration(
    up: np.ndarray, e1: np.ndarray, e2: np.ndarray, found: np.ndarray, method: str, samples: int
) -> MountCalibration:
    forward = found[0] * e1 + found[1] * e2
    forward /= np.linalg.norm(forward)
    return MountCalibration(np.vstack([forward, np.cross(up, forward), up]), method, samples)


def left_from_turns(plane: np.ndarray, t: np.ndarray, yaw: np.ndarray) -> np.ndarray | None:
    """ "Left" as a unit vector in the 2-D horizontal coordinates, from the turns: a_lat = v * yaw rate with
    v > 0, so the yaw-weighted mean of the horizontal specific force points left (sign included).

    For drives with too little straight acceleration for :func:`forward_without_speed` (a phone's noise
    hides gentle starts and stops). Samples turning at 3 deg/s or more, 0.5 s averages; None with fewer
    than 5 s of them or when the weighted mean is not clearly larger than its noise.
    """
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    if step <= 0:
        return None
    kernel = np.ones(max(1, round(0.5 / step)))
    kernel /= kernel.size
    smooth = np.column_stack([np.convolve(plane[:, i], kernel, mode="same") for i in (0, 1)])
    w = np.convolve(np.nan_to_num(yaw), kernel, mode="same")
    turning = (np.abs(w) >= 3.0) & ~np.isnan(yaw)
    if turning.sum() * step < 5.0:
        return None
    weighted = smooth[turning] * w[turning, None]
    mean = weighted.mean(axis=0)
    # the mean must stand out of the spread of the samples it averages (a t-statistic of its length)
    spread = np.sqrt(np.sum(weighted.var(axis=0)) / turning.sum())
    if np.linalg.norm(mean) < 5.0 * spread:
        return None
    left: np.ndarray = mean / np.linalg.norm(mean)
    return left


def _turn_sign(plane: np.ndarray, found: np.ndarray, t: np.ndarray, yaw: np.ndarray) -> int:
    """+1 if the lateral acceleration (left of ``found``) turns with the yaw rate, -1 against, 0 undecided.

    Only samples turning at 3 deg/s or more count, with both averaged over 0.5 s; undecided when there are
    fewer than 2 s of them or the correlation is weak.
    """
    step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
    if step <= 0:
        return 0
    kernel = np.ones(max(1, round(0.5 / step)))
    kernel /= kernel.size
    left = np.array([-found[1], found[0]])  # 90 degrees counter-clockwise of forward, seen from "up"
    lat = np.convolve(plane @ left, kernel, mode="same")
    w = np.convolve(np.nan_to_num(yaw), kernel, mode="same")
    turning = (np.abs(w) >= 3.0) & ~np.isnan(yaw)
    if turning.sum() * step < 2.0:
        return 0
    r = float(np.corrcoef(lat[turning], w[turning])[0, 1])
    if not np.isfinite(r) or abs(r) < 0.2:
        return 0
    return 1 if r > 0 else -1


@dataclass
class MountCalibrator(Stage):
    """Buffers up to ``warmup_s`` of raw IMU samples, learns the mounting, then emits calibrated signals.

    ``axes`` name the raw accelerometer columns (in m/s^2). They are replaced by
    Vehicle.Acceleration.Longitudinal / Lateral / Vertical. If the warm-up ends without a usable calibration
    (no standing still yet, too little change of speed, no speed at all), it keeps buffering up to
    ``max_buffer_s`` and then gives up: the raw axes are dropped and ``calibration`` stays None, so no harsh
    event is invented from a misaligned sensor.
    """

    axes: tuple[str, str, str]
    warmup_s: float = 120.0
    #: a gyroscope in the same device (deg/s): its rate about "up" is the yaw rate, passed on as
    #: Vehicle.AngularVelocity.Yaw once the mount is known (unless the source has a yaw rate of its own)
    gyro_axes: tuple[str, str, str] = GYRO_AXES
    max_buffer_s: float = 900.0
    calibration: MountCalibration | None = None
    _held: list[SignalBlock] = field(default_factory=list)
    _gave_up: bool = False

    def _raw(self, block: SignalBlock) -> np.ndarray:
        return np.column_stack([block.signals[a] for a in self.axes])

    def _speed(self, block: SignalBlock) -> tuple[np.ndarray | None, bool]:
        """The speed (km/h) at every row, and whether it is sparse (a GPS's fix a second among the IMU's
        rows: interpolated between fixes at most 2 s apart)."""
        speed = block.get(vss.SPEED)
        if speed is None or len(block) < 3:
            return None, False
        valid = ~np.isnan(speed)
        if valid.sum() < 3:
            return None, False
        if valid.mean() > 0.5:
            return speed, False
        xs, ys = block.t[valid], speed[valid]
        filled = np.interp(block.t, xs, ys, left=np.nan, right=np.nan)
        p = np.clip(np.searchsorted(xs, block.t), 1, xs.size - 1)
        filled[xs[p] - xs[p - 1] > 2.0] = np.nan
        return filled, True

    def _dv_dt(self, speed: np.ndarray | None, t: np.ndarray) -> np.ndarray | None:
        return None if speed is None else np.gradient(speed / 3.6, t)

    def _gyro(self, block: SignalBlock) -> np.ndarray | None:
        if not all(a in block.signals for a in self.gyro_axes):
            return None
        return np.column_stack([block.signals[a] for a in self.gyro_axes])

    def _convert(self, block: SignalBlock) -> SignalBlock:
        columns = {k: v for k, v in block.signals.items() if k not in self.axes and k not in self.gyro_axes}
        if self.calibration is not None:
            car = self.calibration.apply(self._raw(block))
            columns[vss.ACCEL_LONGITUDINAL] = car[:, 0]
            columns[vss.ACCEL_LATERAL] = car[:, 1]
            columns[VERTICAL] = car[:, 2]
            gyro = self._gyro(block)
            if gyro is not None and vss.YAW_RATE not in columns:
                columns[vss.YAW_RATE] = gyro @ self.calibration.rotation[2]
        return SignalBlock(block.t, columns, block.dtcs)

    def _try(self, *, last_chance: bool) -> None:
        joined = concat_blocks(self._held)
        speed, sparse = self._speed(joined)
        # a GPS reads a little speed at rest
        standing = None if speed is None else np.nan_to_num(speed, nan=np.inf) < (2.0 if sparse else 0.5)
        if standing is not None and len(joined) > 2:
            # standing only where the whole +-1.5 s around is: a GPS speed lags by a second, and the end of
            # a stop's braking must not tilt "up"
            w = max(1, round(1.5 / float(np.median(np.diff(joined.t)))))
            k = np.ones(2 * w + 1)
            standing = np.convolve(standing.astype(float), k, mode="same") >= k.size - 0.5
        # with speed known, wait (bounded) for the car to stand still: gravity alone gives the cleanest "up"
        require_rest = standing is not None and not last_chance
        self.calibration = estimate_mount(
            self._raw(joined),
            self._dv_dt(speed, joined.t),
            standing,
            sparse_speed=sparse,
            require_rest=require_rest,
            t=joined.t,
            yaw=joined.get(vss.YAW_RATE),
            gyro=self._gyro(joined),
        )
        if self.calibration is not None:
            log.info(
                "IMU mount learned from %d samples (%s)", self.calibration.samples, self.calibration.method
            )

    def process(self, block: SignalBlock) -> Iterator[SignalBlock]:
        if self.calibration is not None or self._gave_up:
            yield self._convert(block)
            return
        self._held.append(block)
        span = (
            self._held[-1].t[-1] - self._held[0].t[0] if len(self._held[-1]) and len(self._held[0]) else 0.0
        )
        if span >= self.warmup_s:
            self._try(last_chance=span >= self.max_buffer_s)
            if self.calibration is None and span < self.max_buffer_s:
                return
            if self.calibration is None:
                self._gave_up = True
                log.warning("IMU mount not learned after %.0f s: accelerometer axes ignored", span)
            yield from self._release()

    def _release(self) -> Iterator[SignalBlock]:
        held, self._held = self._held, []
        for b in held:
            yield self._convert(b)

    def flush(self) -> Iterator[SignalBlock]:
        if self._held and self.calibration is None and not self._gave_up:
            self._try(last_chance=True)
            self._gave_up = self.calibration is None
        yield from self._release()


def concat_blocks(blocks: Sequence[SignalBlock]) -> SignalBlock:
    """One block of several consecutive ones (signals missing from some become NaN there)."""
    names = list(dict.fromkeys(n for b in blocks for n in b.signals))
    t = np.concatenate([b.t for b in blocks]) if blocks else np.empty(0)
    columns = {n: np.concatenate([b.signals.get(n, np.full(len(b), np.nan)) for b in blocks]) for n in names}
    return SignalBlock(t, columns, tuple(d for b in blocks for d in b.dtcs))


class Pipeline:
    """Stages applied in order to a stream of blocks."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)

    def run(self, blocks: Iterable[SignalBlock]) -> Iterator[SignalBlock]:
        """Push every block through every stage, then flush the stages in order."""
        for block in blocks:
            yield from self._through(block, 0)
        for i, stage in enumerate(self.stages):
            for out in stage.flush():
                yield from self._through(out, i + 1)

    def _through(self, block: SignalBlock, start: int) -> Iterator[SignalBlock]:
        if start == len(self.stages):
            yield block
            return
        for out in self.stages[start].process(block):
            yield from self._through(out, start + 1)
