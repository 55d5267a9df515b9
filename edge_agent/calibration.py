"""Per-vehicle self-calibration of the harsh-event thresholds, from the vehicle's own distribution of peaks.

A sensor profile's thresholds (:mod:`edge_agent.profiles`) fit a typical installation. One phone holder
rattles more than another, one box sits on a stiffer bracket, one car rides harder: the same driving gives
larger, spikier lobes. During its first ``learn_s`` of driving (default 2 hours) a vehicle's calibrator
collects, per harsh kind, the peaks of its *spikes*: lobes that reach half an entry threshold with less than
the least impulse and last at most 0.6 s, too short to be a manoeuvre (a bump, a rattle, a door), and that are
not the swing back of the lobe before. They measure the installation, not the driving: a harsh manoeuvre has
a large impulse and is never among them, so an aggressive driver's events do not move his thresholds (a first
version learnt from all lobes, and on the simulator's event-rich drives it raised every threshold to its
bound). Once learnt, each kind's entry and exit
thresholds are multiplied by

    scale = clamp(q90(spike peaks) / (REFERENCE_SHARE * entry threshold), 1.0, MAX_SCALE)

that is: when a tenth of this vehicle's spikes already reach 80 % of the threshold, its installation is
rougher than the profile assumed (a spike on top of an ordinary manoeuvre would make it look harsh) and the
threshold rises with it, by at most 40 %. The bounds:

- never below the profile's threshold (scale >= 1): a calm driver, whose lobes are all small, is not flagged
  for harmless manoeuvres because "relative to his own driving" they stand out;
- never more than ``MAX_SCALE`` above it: the rise only absorbs what an installation can add;
- a kind with fewer than ``min_lobes`` spikes learnt keeps scale 1.

On the simulator's drives (seeds 1000-1011, 1.5 hours per profile at 50 Hz) every scale stays 1.0.

The state (driving seconds seen, the peaks, the scales once learnt) is carried across trips by the agent and
persisted by the runner in the state directory (``<vehicle>.calibration.json``), so a restart does not start
learning again. After learning the scales are fixed; a config downlink that changes the vehicle class or
profile keeps them (they are relative).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .detectors import Threshold
from .protocol import HARSH_KINDS, EventKind
from .signals import SPEED, SignalBlock

#: q90 of the spikes is compared with this share of the entry threshold (chosen on seeds 1000-1011: every
#: scale of every profile stays 1.0 there; at 0.7 a phone's corners rose by 12 %)
REFERENCE_SHARE = 0.8
#: thresholds rise by at most this factor
MAX_SCALE = 1.4
#: a spike lasts at most this long (s): a bump or a rattle, not a manoeuvre (a high-passed gentle curve lasts
#: a second or more)
SPIKE_S = 0.6
#: at most this many peaks are kept per kind while learning (memory stays flat)
MAX_PEAKS = 5000


@dataclass
class ThresholdCalibrator:
    """Learns per-kind threshold scales from a vehicle's first hours of driving; see the module docstring."""

    learn_s: float = 2 * 3600.0
    min_lobes: int = 30
    driven_s: float = 0.0
    peaks: dict[str, list[float]] = field(default_factory=dict)
    #: the learnt scales (empty until learning ends)
    scales: dict[str, float] = field(default_factory=dict)
    #: the entry thresholds (magnitudes) the peaks were collected against, and the least impulses
    entries: dict[str, float] = field(default_factory=dict)
    min_areas: dict[str, float] = field(default_factory=dict)

    @property
    def learned(self) -> bool:
        """Whether learning is over (the scales are fixed)."""
        return bool(self.scales)

    def observe(self, kind: EventKind, peak: float, area: float, duration_s: float) -> None:
        """A closed lobe (the detectors' observer): its |peak| is kept when it is a spike (impulse below the
        kind's least impulse, at most ``SPIKE_S`` long); ignored once learning is over."""
        if self.scales or kind not in HARSH_KINDS:
            return
        if area >= self.min_areas.get(kind.value, 0.0) or duration_s > SPIKE_S:
            return
        values = self.peaks.setdefault(kind.value, [])
        if len(values) < MAX_PEAKS:
            values.append(round(float(peak), 3))

    def add_driving(self, block: SignalBlock) -> None:
        """Count the block's driving time (moving when speed is known); finish learning when it is enough."""
        if self.scales or len(block) < 2:
            return
        dt = np.diff(block.t, append=block.t[-1])
        speed = block.get(SPEED)
        moving = dt if speed is None else np.where(np.nan_to_num(speed) > 5.0, dt, 0.0)
        self.driven_s += float(np.sum(np.minimum(moving, 1.0)))
        if self.driven_s >= self.learn_s:
            self._finish()

    def _finish(self) -> None:
        scales = {}
        for kind in (k.value for k in HARSH_KINDS):
            values = self.peaks.get(kind, [])
            entry = self.entries.get(kind)
            if entry is None or len(values) < self.min_lobes:
                scales[kind] = 1.0
                continue
            q90 = float(np.percentile(values, 90))
            scales[kind] = round(float(np.clip(q90 / (REFERENCE_SHARE * entry), 1.0, MAX_SCALE)), 3)
        self.scales = scales
        self.peaks = {}

    def apply(self, thresholds: tuple[Threshold, ...]) -> tuple[Threshold, ...]:
        """``thresholds`` with each harsh kind's lobe rule scaled (unchanged while learning); records the
        entry thresholds the peaks are judged against."""
        for t in thresholds:
            if t.is_lobe and t.kind.value not in self.entries:
                self.entries[t.kind.value] = abs(t.value)
                self.min_areas[t.kind.value] = t.min_area
        if not self.scales:
            return thresholds
        out = []
        for t in thresholds:
            k = self.scales.get(t.kind.value, 1.0)
            if t.is_lobe and k != 1.0 and t.exit_value is not None:
                t = replace(t, value=round(t.value * k, 3), exit_value=round(t.exit_value * k, 3))
            out.append(t)
        return tuple(out)

    # persistence -------------------------------------------------------------------------------------
    def to_json(self) -> str:
        """The state as JSON."""
        return json.dumps(
            {
                "learn_s": self.learn_s,
                "min_lobes": self.min_lobes,
                "driven_s": round(self.driven_s, 1),
                "peaks": self.peaks,
                "scales": self.scales,
                "entries": self.entries,
                "min_areas": self.min_areas,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ThresholdCalibrator:
        """A calibrator from :meth:`to_json`'s output."""
        raw = json.loads(text)
        return cls(
            learn_s=float(raw["learn_s"]),
            min_lobes=int(raw["min_lobes"]),
            driven_s=float(raw["driven_s"]),
            peaks={k: [float(x) for x in v] for k, v in raw["peaks"].items()},
            scales={k: float(v) for k, v in raw["scales"].items()},
            entries={k: float(v) for k, v in raw.get("entries", {}).items()},
            min_areas={k: float(v) for k, v in raw.get("min_areas", {}).items()},
        )

    @classmethod
    def load(cls, path: Path) -> ThresholdCalibrator:
        """The stored state, or a fresh calibrator when there is none or it cannot be read."""
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()

    def save(self, path: Path) -> None:
        """Store the state (atomically: a crash leaves the old file or the new one)."""
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
