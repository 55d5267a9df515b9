"""Deterministic group assignment: the same customer always lands in the same group of the same campaign.

A customer's position in [0, 1) is the first 8 bytes of SHA-256 over a salt and their id, so assignment needs
no stored state, is the same on every run and every machine, and is independent between campaigns (the
campaign id is in the salt) — except for the global control group, whose salt is fixed, so that the same
customers are kept out of every campaign and the total effect of all campaigns can be measured against them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

#: the global control group's salt: changing it reshuffles who is never reached (do not, once in use)
GLOBAL_CONTROL_SALT = "drivesight-global-control-v1"
GLOBAL_CONTROL = "global_control"
HOLDOUT = "holdout"


def position(salt: str, customer_id: str) -> float:
    """The customer's uniform position in [0, 1) under ``salt``."""
    digest = hashlib.sha256(f"{salt}\x00{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def in_global_control(customer_id: str, share: float) -> bool:
    """Whether the customer is in the global control group that no campaign reaches."""
    return share > 0 and position(GLOBAL_CONTROL_SALT, customer_id) < share


def group(campaign_id: str, customer_id: str, holdout_share: float, arms: Sequence[tuple[str, float]]) -> str:
    """``holdout`` or the name of the customer's arm (``arms``: names with shares summing to 1)."""
    u = position(campaign_id, customer_id)
    if u < holdout_share:
        return HOLDOUT
    v = (u - holdout_share) / (1 - holdout_share) if holdout_share < 1 else 0.0
    edge = 0.0
    for name, share in arms:
        edge += share
        if v < edge:
            return name
    return arms[-1][0]  # rounding of the shares' sum


def push_id(campaign_id: str, customer_id: str) -> str:
    """The push's id: the same for a campaign and customer on every run, so a resend is recognisable."""
    return "p" + hashlib.sha256(f"{campaign_id}\x00{customer_id}".encode()).hexdigest()[:31]
