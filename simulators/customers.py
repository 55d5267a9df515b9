"""Simulated customers for churn modelling: service history, complaints, usage trend, and whether they left.

Churn ("no longer services the car in the brand's network within six months") is drawn from a known
logistic model of the features, so a trained model can be judged against the truth it tries to learn:

    logit = -2.6 + 2.2 * usage_decline + 0.006 * days_since_service + 0.5 * complaints_12m
            + 1.1 * unresolved_complaint + 0.02 * dealer_distance_km - 0.6 * (satisfaction - 3)
            - 0.03 * warranty_months_left + 0.3 * (vehicle_age_years > 5)
"""

from __future__ import annotations

import numpy as np

CHURN_FEATURES: tuple[str, ...] = (
    "vehicle_age_years",
    "warranty_months_left",
    "trips_per_week",
    "usage_decline",
    "days_since_service",
    "service_visits_12m",
    "complaints_12m",
    "unresolved_complaint",
    "dealer_distance_km",
    "satisfaction",
)


def simulate_customers(customers: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature rows (float32, :data:`CHURN_FEATURES` order) and churn labels (0/1)."""
    rng = np.random.default_rng(seed)
    age = rng.gamma(2.0, 2.0, customers).clip(0, 15)
    warranty = np.maximum(0.0, 36 - age * 12 + rng.normal(0, 3, customers)).clip(0, 60)
    before = rng.gamma(4.0, 2.5, customers)  # trips per week a year ago
    decline = np.clip(rng.beta(1.5, 6.0, customers) + (age > 6) * 0.1, 0, 1)
    now = before * (1 - decline)
    days_since_service = rng.exponential(150, customers).clip(0, 900)
    visits = rng.poisson(np.clip(2.2 - days_since_service / 300, 0.1, None))
    complaints = rng.poisson(0.4, customers)
    unresolved = (complaints > 0) & (rng.random(customers) < 0.35)
    distance = rng.gamma(2.0, 8.0, customers)
    satisfaction = np.clip(np.round(rng.normal(3.8, 0.8, customers) - 0.5 * unresolved), 1, 5)
    logit = (
        -2.6 + 2.2 * decline + 0.006 * days_since_service + 0.5 * complaints + 1.1 * unresolved
        + 0.02 * distance - 0.6 * (satisfaction - 3) - 0.03 * warranty + 0.3 * (age > 5)
    )  # fmt: skip
    churned = (rng.random(customers) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    X = np.column_stack(
        [
            age,
            warranty,
            now,
            decline,
            days_since_service,
            visits,
            complaints,
            unresolved,
            distance,
            satisfaction,
        ]
    ).astype(np.float32)
    return X, churned
