"""Trip scores follow the documented formula."""

from __future__ import annotations

import pytest

from edge_agent.protocol import EventKind
from edge_agent.scoring import eco_score, safety_score

BRAKE, ACCEL, CORNER = EventKind.HARSH_BRAKE, EventKind.HARSH_ACCEL, EventKind.HARSH_CORNER


def _safety(km: float, counts: dict, speeding_s: float = 0.0, night: float = 0.0) -> float:
    return safety_score(km, counts, moving_s=1000.0, speeding_s=speeding_s, night_share=night)


@pytest.mark.parametrize(("events_per_100km", "expected"), [(0, 100.0), (1, 95.1), (10, 60.7), (30, 22.3)])
def test_safety_reference_points(events_per_100km: int, expected: float) -> None:
    assert _safety(100.0, {BRAKE: events_per_100km}) == expected


def test_safety_weights_and_penalties() -> None:
    assert _safety(100.0, {ACCEL: 10}) > _safety(100.0, {BRAKE: 10}) == _safety(100.0, {CORNER: 10})
    assert _safety(100.0, {}, speeding_s=500.0) == 75.0  # half the moving time speeding
    assert _safety(100.0, {}, night=1.0) == 90.0
    assert _safety(100.0, {EventKind.IDLING: 5, EventKind.SPEEDING: 3}) == 100.0  # counted by time, not count


def test_short_trips_use_a_distance_floor() -> None:
    assert _safety(0.3, {BRAKE: 1}) == _safety(5.0, {BRAKE: 1}) == 36.8


def test_eco_reference_points() -> None:
    def eco(counts: dict, idle_s: float = 0.0, speeding_s: float = 0.0) -> float:
        return eco_score(
            100.0, counts, duration_s=2000.0, idle_s=idle_s, moving_s=1000.0, speeding_s=speeding_s
        )

    assert eco({}) == 100.0
    assert eco({BRAKE: 5, ACCEL: 5}) == 67.0
    assert eco({CORNER: 20}) == 100.0  # cornering costs safety, not energy
    assert eco({}, idle_s=1000.0) == 75.0
    assert eco({}, speeding_s=1000.0) == 70.0


def test_scores_stay_in_range() -> None:
    assert _safety(1.0, {BRAKE: 10_000, CORNER: 10_000}, speeding_s=10_000, night=5.0) == 0.0
    assert 0.0 <= eco_score(0.0, {ACCEL: 10**6}, duration_s=0, idle_s=5, moving_s=0, speeding_s=9) <= 100.0
