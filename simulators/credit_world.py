"""Applicants for vehicle financing and leasing, with a hidden probability of default.

Each applicant has an annual income (log-normal, rising with employment years and by region), a
debt-to-income ratio, a vehicle price (about half a year's income, more for the well-off), a down payment
(a share of the price), a loan term of 24 to 72 months, years in the current job (sometimes not given),
past delinquencies (Poisson, more with high debt), whether the applicant is already a customer and, if so,
how many service visits the dealer recorded. Two protected columns are written too: ``gender`` and
``birth_year``. They have no effect of their own on default, but they are weakly correlated with inputs that
do (in this world women earn a little less and older applicants have more years in their job), so a
scorecard that never sees them can still approve their groups at different rates: the approval-rate report
is there to show it.

The hidden log-odds of default, before noise:
``-2.4 + 4.0 (dti - 0.32) + 0.7 delinquencies - 0.3 (down payment share - 0.15) / 0.1
- 0.35 ln(income / 45,000) + 0.012 (term - 48) - 0.05 min(employment years, 10) - 0.35 existing customer
- 0.05 min(service visits, 6) + a region effect``, plus a per-applicant shock (normal, sd 0.6) no column
shows; about one applicant in ten defaults. ``truth`` holds the probability of default without the shock's
draw (for an upper bound on AUC).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REGIONS = ("north", "south", "east", "west", "capital", "coast", "mountains", "islands")
REGION_EFFECT = (0.0, 0.15, 0.05, -0.1, -0.2, 0.1, 0.3, 0.45)
REGION_SHARE = (0.18, 0.17, 0.16, 0.15, 0.2, 0.08, 0.04, 0.02)
TERMS = (24, 36, 48, 60, 72)
COLUMNS = (
    "applicant_id", "income", "debt_to_income", "vehicle_price", "down_payment", "loan_term_months",
    "employment_years", "past_delinquencies", "existing_customer", "service_visits", "region", "gender",
    "birth_year", "defaulted",
)  # fmt: skip


@dataclass
class Applicants:
    """Column arrays (``columns``, named as in the CSV) and the hidden probability of default."""

    columns: dict[str, np.ndarray]
    truth: np.ndarray

    def __len__(self) -> int:
        return len(self.truth)


def simulate_applicants(rows: int, seed: int, year: int = 2026) -> Applicants:
    """``rows`` applicants drawn with ``numpy.random.default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    gender = rng.choice(np.array(["female", "male", "diverse"]), rows, p=[0.44, 0.55, 0.01])
    age = np.clip(rng.normal(44, 13, rows), 18, 85)
    birth_year = (year - age).astype(int)
    region = rng.choice(len(REGIONS), rows, p=REGION_SHARE)
    employment = np.clip(rng.gamma(2.0, 2.5, rows) + 0.12 * (age - 30), 0, 45).round(1)
    income = np.exp(
        np.log(45_000) + 0.025 * np.minimum(employment, 20) - 0.08 * (gender == "female")
        + 0.1 * (region == REGIONS.index("capital")) + rng.normal(0, 0.38, rows)
    ).round(-2)  # fmt: skip
    dti = np.clip(rng.beta(3, 6, rows) * 0.9 - 0.02 * np.log(income / 45_000), 0.0, 0.85).round(3)
    price = (income * rng.lognormal(np.log(0.55), 0.3, rows) + 8_000 * (income > 90_000)).round(-2)
    share = np.clip(rng.beta(2, 9, rows) + 0.03 * np.log(income / 45_000), 0, 0.6)
    down = (price * share).round(-1)
    term = rng.choice(np.array(TERMS), rows, p=[0.1, 0.2, 0.3, 0.25, 0.15])
    delinquencies = rng.poisson(0.25 + 1.2 * dti, rows)
    existing = rng.random(rows) < 0.35
    visits = np.where(existing, rng.poisson(3.0, rows), 0)
    logit = (
        -2.4 + 4.0 * (dti - 0.32) + 0.7 * delinquencies - 0.3 * (share - 0.15) / 0.1
        - 0.35 * np.log(income / 45_000) + 0.012 * (term - 48) - 0.05 * np.minimum(employment, 10)
        - 0.35 * existing - 0.05 * np.minimum(visits, 6) + np.array(REGION_EFFECT)[region]
    )  # fmt: skip
    shock = rng.normal(0, 0.6, rows)
    truth = 1 / (1 + np.exp(-logit))
    defaulted = rng.random(rows) < 1 / (1 + np.exp(-(logit + shock)))
    employment_text = np.where(rng.random(rows) < 0.04, "", employment.astype(str))  # not given
    region_text = np.where(rng.random(rows) < 0.02, "", np.array(REGIONS)[region])
    columns = {
        "applicant_id": np.array([f"APP-{i:07d}" for i in range(rows)]),
        "income": income, "debt_to_income": dti, "vehicle_price": price, "down_payment": down,
        "loan_term_months": term, "employment_years": employment_text, "past_delinquencies": delinquencies,
        "existing_customer": np.where(existing, "yes", "no"), "service_visits": visits, "region": region_text,
        "gender": gender, "birth_year": birth_year, "defaulted": defaulted.astype(int),
    }  # fmt: skip
    return Applicants(columns, truth)


def write_applicants_csv(path: Path, rows: int = 5000, seed: int = 7) -> Applicants:
    """Simulate applicants and write them to ``path`` as CSV (header row, one applicant per row)."""
    applicants = simulate_applicants(rows, seed)
    with path.open("w", newline="", encoding="utf-8") as handle:
        out = csv.writer(handle)
        out.writerow(COLUMNS)
        out.writerows(zip(*(applicants.columns[c].tolist() for c in COLUMNS), strict=True))
    return applicants
