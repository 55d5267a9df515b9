"""Edge pipeline throughput: the vectorized agent against a per-sample Python loop doing the same work.

Prints one JSON line:

- ``samples_per_s``: the vectorized agent, fed blocks of one minute, with a real SQLite outbox (on tmpfs, so
  that the shared disk's fsync latency does not decide the result);
- ``baseline_samples_per_s``: a straightforward loop over samples doing the same signal work (trip cut,
  distance/idle/night, the driving-style moments, every detector's state machine, feature counters,
  telemetry downsampling);
- ``speedup``, and ``events_match``: both found the same events;
- ``samples_per_s_with_models`` and ``peak_rss_mb``: the agent as the car runs it, with the driving-style
  and vehicle-health ONNX models loaded and scoring every trip and window (the peak includes the simulator
  generating the trips, about 25 MB). The speedup compares the two without models, since the baseline does
  not run them.

The two are measured in interleaved rounds and the medians reported, so machine noise hits both alike.
Simulated trips are generated one at a time and their generation is not timed.

    python tests/benchmarks/edge_pipeline.py                    # about 2 million samples
    python tests/benchmarks/edge_pipeline.py --samples 200000   # smoke size

Targets (issue 3): >= 100,000 samples/s on one core, >= 10x the baseline, peak RSS <= 120 MB.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from edge_agent import signals as vss
from edge_agent.agent import EdgeAgent, TelemetrySettings
from edge_agent.detectors import DEFAULT_THRESHOLDS, Direction, Threshold
from edge_agent.model_store import ModelStore
from edge_agent.outbox import Outbox
from edge_agent.protocol import EventsV1, decode
from edge_agent.signals import SignalBlock
from edge_agent.trips import TripSettings
from simulators.fleet import build_fleet
from simulators.vehicle import initial_state, simulate_day

BLOCK = 600


def trips(total_samples: int, seed: int) -> Iterator[SignalBlock]:
    """Simulated trips of a small fleet, one at a time, until ``total_samples`` are produced."""
    produced = 0
    specs = build_fleet(8, seed)
    day = date(2026, 11, 2)
    states = {s.vehicle_id: initial_state(s, np.random.default_rng(seed)) for s in specs}
    d = 0
    while produced < total_samples:
        for spec in specs:
            rng = np.random.default_rng([seed, d, int(spec.vehicle_id[-4:])])
            day_trips, states[spec.vehicle_id] = simulate_day(
                spec, day + timedelta(days=d), states[spec.vehicle_id], rng
            )
            for trip in day_trips:
                yield trip.block
                produced += len(trip.block)
                if produced >= total_samples:
                    return
        d += 1


def vectorized(
    total: int, seed: int, outbox_dir: Path, *, models: bool = False
) -> tuple[float, int, list[tuple[str, float]]]:
    outbox = Outbox(outbox_dir / "bench.db", "bench", max_bytes=1 << 34)
    agent = EdgeAgent(
        outbox,
        trip_settings=TripSettings(timezone="Asia/Shanghai"),
        telemetry=TelemetrySettings(),
        models=ModelStore(outbox_dir / "models") if models else None,
    )
    elapsed, samples = 0.0, 0
    for block in trips(total, seed):
        # one vehicle's trips follow each other with gaps, as in the car; blocks of one minute
        start = time.perf_counter()
        for i in range(0, len(block), BLOCK):
            agent.process(block.slice(i, i + BLOCK))
        elapsed += time.perf_counter() - start
        samples += len(block)
    start = time.perf_counter()
    agent.close_trip()
    elapsed += time.perf_counter() - start
    events = []
    after = -1
    while batch := outbox.pending(after_seq=after, limit=100):  # small pages: keep the harness out of the RSS
        after = batch[-1].seq
        for item in batch:
            if not item.topic.endswith("/events"):
                continue
            body = decode(item.topic, item.payload).body
            if isinstance(body, EventsV1):
                events += [(e.kind.value, round(e.start.timestamp(), 1)) for e in body.events]
    outbox.close()
    return elapsed, samples, sorted(events)


# ------------------------------------------------------------------------------ the per-sample baseline


@dataclass
class _Run:
    start: float
    last: float
    peak: float


@dataclass
class _LoopState:
    last_t: float | None = None
    last_v: float | None = None
    distance_km: float = 0.0
    idle_s: float = 0.0
    night_s: float = 0.0
    max_speed: float = 0.0
    speed2_s: float = 0.0
    abs_lon_s: float = 0.0
    lat2_s: float = 0.0
    stops: int = 0
    was_idle: bool = True
    runs: dict[int, _Run | None] = field(default_factory=dict)
    features: dict[str, list[float]] = field(default_factory=dict)
    next_tele: float = -math.inf
    telemetry: list[tuple[float, list[float]]] = field(default_factory=list)
    events: list[tuple[str, float]] = field(default_factory=list)


def _passes(thr: Threshold, x: float, hour: float) -> bool:
    if math.isnan(x):
        return False
    if thr.local_hours is not None:
        lo, hi = thr.local_hours
        inside = (lo <= hour < hi) if lo <= hi else (hour >= lo or hour < hi)
        if not inside:
            return False
    if thr.direction is Direction.ABOVE:
        return x >= thr.value
    if thr.direction is Direction.BELOW:
        return x <= thr.value
    return abs(x) >= thr.value


def _close(state: _LoopState, i: int, thr: Threshold) -> None:
    run = state.runs.get(i)
    if run is not None and run.last - run.start + 1e-9 >= thr.min_duration_s:
        state.events.append((thr.kind.value, round(run.start, 1)))
    state.runs[i] = None


def baseline(total: int, seed: int) -> tuple[float, int, list[tuple[str, float]]]:
    """The same work, one sample at a time, in plain Python."""
    offset = 8 * 3600.0
    settings = TripSettings()
    state = _LoopState()
    tele_names = list(TelemetrySettings().signals)
    elapsed, samples = 0.0, 0
    for block in trips(total, seed):
        columns = {n: block.signals[n].tolist() for n in block.signals}
        times = block.t.tolist()
        feature_names = [n for n in columns if vss.is_feature(n)]
        start = time.perf_counter()
        for k, t in enumerate(times):
            if state.last_t is not None and (t - state.last_t > settings.trip_gap_s or t < state.last_t):
                for i, thr in enumerate(DEFAULT_THRESHOLDS):
                    _close(state, i, thr)
                state = _LoopState(events=state.events)
            v = columns[vss.SPEED][k]
            dt = t - state.last_t if state.last_t is not None else 0.0
            if state.last_v is not None and not math.isnan(v):
                state.distance_km += (v + state.last_v) / 2 * dt / 3600
            if not math.isnan(v):
                idle = v < settings.idle_speed_kmh
                if idle:
                    state.idle_s += dt
                    state.stops += 0 if state.was_idle else 1
                else:  # the driving-style moments, as the agent keeps them
                    state.speed2_s += v * v * dt
                    lon, lat = columns[vss.ACCEL_LONGITUDINAL][k], columns[vss.ACCEL_LATERAL][k]
                    if not (math.isnan(lon) or math.isnan(lat)):
                        state.abs_lon_s += abs(lon) * dt
                        state.lat2_s += lat * lat * dt
                state.was_idle = idle
                state.max_speed = max(state.max_speed, v)
                state.last_v = v
            hour = ((t - dt + offset) % 86400) / 3600
            if hour >= settings.night_start_h or hour < settings.night_end_h:
                state.night_s += dt
            for i, thr in enumerate(DEFAULT_THRESHOLDS):
                column = columns.get(thr.signal)
                if column is None or (thr.only_without is not None and thr.only_without in columns):
                    continue
                x = column[k]
                run = state.runs.get(i)
                if _passes(thr, x, ((t + offset) % 86400) / 3600):
                    if run is not None and t - run.last <= thr.max_gap_s + 1e-9:
                        run.last = t
                        run.peak = max(run.peak, x) if thr.direction is Direction.ABOVE else min(run.peak, x)
                    else:
                        _close(state, i, thr)
                        state.runs[i] = _Run(t, t, x)
                elif run is not None and t - run.last > thr.max_gap_s + 1e-9:
                    _close(state, i, thr)
            for name in feature_names:
                on = columns[name][k] > 0
                f = state.features.setdefault(name, [0.0, 0.0, 0.0])
                if on and not f[2]:
                    f[0] += 1
                if on:
                    f[1] += dt
                f[2] = float(on)
            if t >= state.next_tele:
                state.telemetry.append((t, [columns[n][k] for n in tele_names if n in columns]))
                state.next_tele = math.floor(t) + 1.0  # the first sample of each one-second bucket
            state.last_t = t
        elapsed += time.perf_counter() - start
        samples += len(times)
    for i, thr in enumerate(DEFAULT_THRESHOLDS):
        _close(state, i, thr)
    return elapsed, samples, sorted(state.events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--samples", type=int, default=2_000_000)
    parser.add_argument("--baseline-samples", type=int, default=None, help="default: a tenth of --samples")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    base_n = args.baseline_samples or max(args.samples // 10, 50_000)
    # the outbox on tmpfs where there is one: this measures the pipeline, not the shared disk's fsync latency
    scratch = "/dev/shm" if Path("/dev/shm").is_dir() else None
    # first, the car as it runs: with the driving-style and vehicle-health models loaded; the peak RSS is
    # taken here, before any baseline run, whose Python lists of floats would dominate it
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        m_time, m_samples, _ = vectorized(args.samples, args.seed, Path(tmp), models=True)
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fast, slow = [], []
    v_events: list[tuple[str, float]] = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(dir=scratch) as tmp:
            v_time, v_samples, v_events = vectorized(args.samples, args.seed, Path(tmp))
        b_time, b_samples, b_events = baseline(base_n, args.seed)
        fast.append(v_samples / v_time)
        slow.append(b_samples / b_time)
    # the baseline covers a prefix of the same trips: compare events in that prefix
    with tempfile.TemporaryDirectory(dir=scratch) as tmp:
        _, _, prefix_events = vectorized(base_n, args.seed, Path(tmp))
    samples_per_s, baseline_per_s = float(np.median(fast)), float(np.median(slow))
    print(
        json.dumps(
            {
                "samples": v_samples,
                "samples_per_s": round(samples_per_s),
                "baseline_samples": b_samples,
                "baseline_samples_per_s": round(baseline_per_s),
                "speedup": round(samples_per_s / baseline_per_s, 1),
                "rounds": args.rounds,
                "samples_per_s_with_models": round(m_samples / m_time),
                "peak_rss_mb": round(peak_rss_mb, 1),
                "events": len(v_events),
                "events_match": prefix_events == b_events,
                "outbox_on": scratch or "disk",
                "models_loaded": True,
            }
        )
    )


if __name__ == "__main__":
    main()
