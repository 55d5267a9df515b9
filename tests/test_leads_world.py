"""The lead management world (simulators/leads_world.py): its truth, and follow-up that measurably matters."""

from __future__ import annotations

import csv
import math
import unicodedata
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import phonenumbers
import pytest

from cloud.analytics.imports import CustomerRow, DealerRow
from cloud.leads.model import RawLead
from simulators.leads_world import (
    LEAD_COLUMNS,
    MODELS,
    FollowUp,
    LeadsWorld,
    dealer_profiles,
    simulate_follow_up,
    simulate_leads_world,
    write_customers_csv,
    write_dealers_csv,
    write_leads_csv,
)


@pytest.fixture(scope="module")
def world() -> LeadsWorld:
    return simulate_leads_world(20_000, 7)


def _digits(phone: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", phone) if c.isdigit())


def test_same_seed_same_world_other_seed_other_world() -> None:
    a, b, c = (simulate_leads_world(2_000, s) for s in (3, 3, 4))
    assert a.leads == b.leads and a.dealers == b.dealers and a.customers == b.customers
    for name in ("person", "is_duplicate", "is_junk", "duplicate_of", "purchase_p"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert a.leads != c.leads


@pytest.mark.parametrize(("dup", "junk"), [(0.15, 0.05), (0.3, 0.1), (0.0, 0.0)])
def test_shares_of_duplicates_and_junk_are_the_requested(dup: float, junk: float) -> None:
    w = simulate_leads_world(5_000, 11, duplicate_share=dup, junk_share=junk)
    assert abs(w.is_duplicate.mean() - dup) < 0.01 and abs(w.is_junk.mean() - junk) < 0.01
    assert not (w.is_duplicate & w.is_junk).any()
    assert len(w.customers) == 2_500


def test_a_duplicate_is_the_person_it_repeats_and_stays_findable(world: LeadsWorld) -> None:
    customers = {c.customer_id: c for c in world.customers}
    index = {c.customer_id: k for k, c in enumerate(world.customers)}
    dups = np.flatnonzero(world.is_duplicate)
    for i in dups:
        lead = world.leads[i]
        j = int(world.duplicate_of[i])
        if j >= 0:  # an earlier lead of the same person, not itself a duplicate or junk
            assert j < i and world.person[i] == world.person[j]
            assert not world.is_duplicate[j] and not world.is_junk[j]
            original = world.leads[j]
            phone, email, city = original.phone, original.email, original.city
        else:  # a known customer
            c = customers[world.true_customer[i]]
            assert world.person[i] == index[c.customer_id]
            phone, email, city = c.phone, c.email, c.city
        assert lead.customer_id is None  # a duplicate must be found by its contact fields
        variant = world.variant[i]
        if variant == "phone_format":
            assert lead.phone is not None and phone is not None
            assert _digits(lead.phone)[-11:] == _digits(phone)[-11:] and lead.phone != phone
        elif variant == "email_case":
            assert lead.email is not None and email is not None
            assert lead.email.lower() == email.lower() and lead.email != email
        else:
            assert variant == "name_variant"
            assert lead.phone is not None and phone is not None and lead.city == city
            assert _digits(lead.phone)[-8:] == _digits(phone)[-8:]
    assert set(world.variant[dups]) == {"phone_format", "email_case", "name_variant"}
    # no two people share the last eight digits, so a mistyped prefix never names someone else
    people: dict[str, int] = {}
    for i in np.flatnonzero(~world.is_junk):
        phone = world.leads[i].phone
        if phone is not None:
            assert people.setdefault(_digits(phone)[-8:], int(world.person[i])) == world.person[i]


def test_phones_are_valid_chinese_mobiles_and_junk_is_junk(world: LeadsWorld) -> None:
    for i in range(0, len(world.leads), 37):
        lead = world.leads[i]
        if lead.phone is None or world.is_junk[i]:
            continue
        number = phonenumbers.parse(unicodedata.normalize("NFKC", lead.phone), "CN")
        assert phonenumbers.is_valid_number(number), lead.phone
    for c in world.customers[:500]:
        assert c.phone.startswith("+861") and phonenumbers.is_valid_number(phonenumbers.parse(c.phone))
    junk = [world.leads[i] for i in np.flatnonzero(world.is_junk)]
    assert (world.person[world.is_junk] == -1).all() and (world.purchase_p[world.is_junk] == 0).all()
    assert any(j.phone in ("13800000000", "12345678901") for j in junk)
    assert any(j.email and j.email.endswith("mailinator.com") for j in junk)
    assert any(j.phone is None and j.email is None for j in junk)


def test_only_the_car_upgrade_and_service_name_the_customer(world: LeadsWorld) -> None:
    named = [lead for lead in world.leads if lead.customer_id is not None]
    assert named and {lead.source for lead in named} == {"car", "upgrade", "service"}
    assert all(lead.customer_id is not None for lead in world.leads if lead.source in ("car", "upgrade"))
    created = [lead.created_at for lead in world.leads]
    assert created == sorted(created) and created[-1] - created[0] > timedelta(days=28)


def test_purchase_intent_is_higher_from_the_car_and_for_test_drives(world: LeadsWorld) -> None:
    def mean(pred: Callable[[RawLead], bool]) -> float:
        picked = [world.purchase_p[i] for i, lead in enumerate(world.leads) if pred(lead)]
        return float(np.mean(picked))

    assert mean(lambda x: x.source in ("car", "upgrade")) > 1.3 * mean(lambda x: x.source == "campaign")
    assert mean(lambda x: x.intent == "test_drive") > 3 * mean(lambda x: x.intent == "newsletter")
    assert 0 < world.purchase_p.max() <= 0.9


def _round_robin(world: LeadsWorld, hours: float, n: int) -> dict[int, tuple[str, float]]:
    showrooms = [d.dealer_id for d in world.dealers if d.role == "showroom"]
    return {i: (showrooms[i % len(showrooms)], hours) for i in range(n)}


def test_faster_contact_gives_more_orders(world: LeadsWorld) -> None:
    fast = simulate_follow_up(world, _round_robin(world, 0.5, 20_000), 1)
    slow = simulate_follow_up(world, _round_robin(world, 72.0, 20_000), 1)
    f, s = fast.count("order"), slow.count("order")
    assert f > 2 * s, f"orders: {f} when contacted within 0.5 h, {s} within 72 h, of 20,000 leads"
    assert fast.count("contacted") + fast.count("lost") + f + fast.count("test_drive") > 0
    reasons = {r for r in slow.lost_reason if r is not None}
    assert reasons == {"no_answer", "bought_elsewhere", "not_interested", "price"}
    # the same seed and assignments give the same outcome
    again = simulate_follow_up(world, _round_robin(world, 72.0, 20_000), 1)
    assert again.status == slow.status and again.order_at == slow.order_at


def test_a_skilled_dealer_converts_more_and_expertise_books_more(world: LeadsWorld) -> None:
    base = world.dealers[0]
    twins = tuple(
        replace(base, dealer_id=f"T{k}", capacity=10_000, skill=skill, models=models)
        for k, (skill, models) in enumerate([(1.6, ()), (0.6, ()), (1.0, MODELS), (1.0, ())])
    )
    w = replace(world, dealers=twins)
    leads = range(10_000)
    out = [simulate_follow_up(w, {i: (f"T{k}", 1.0) for i in leads}, 5) for k in range(4)]
    high, low = out[0].count("order"), out[1].count("order")
    assert high > 1.5 * low, f"orders: skill 1.6 gave {high}, skill 0.6 gave {low} of 10,000 leads"

    def booked(f: FollowUp) -> int:
        return sum(t is not None for t in f.appointment_at)

    expert, novice = booked(out[2]), booked(out[3])
    assert expert > 1.1 * novice, (
        f"appointments: {expert} by a dealer who knows the models, {novice} otherwise"
    )


def test_capacity_overflow_waits_for_the_next_days(world: LeadsWorld) -> None:
    small = replace(world.dealers[0], dealer_id="S", capacity=20)
    big = replace(world.dealers[0], dealer_id="B", capacity=10_000)
    w = replace(world, dealers=(small, big))
    first_day = [i for i, lead in enumerate(w.leads) if lead.created_at < w.start + timedelta(hours=20)][:200]
    assert len(first_day) == 200
    tight = simulate_follow_up(w, {i: ("S", 0.5) for i in first_day}, 2)
    loose = simulate_follow_up(w, {i: ("B", 0.5) for i in first_day}, 2)
    assert tight.load["S"].max() == 20 and tight.load["S"].sum() == 200
    assert (loose.queued_hours == 0).all() and tight.queued_hours.max() > 24 * 8
    waits = tight.queued_hours[first_day]
    assert waits[-1] > waits[0]  # in assignment order: the last assigned waits longest
    assert np.nanmax(tight.delay_hours[first_day]) > 24 * 8
    reached_tight = sum(t is not None for t in tight.contacted_at)
    reached_loose = sum(t is not None for t in loose.contacted_at)
    assert reached_tight < 0.5 * reached_loose, (reached_tight, reached_loose)


def test_never_contacted_stays_new_and_as_of_cuts_the_future(world: LeadsWorld) -> None:
    d = world.dealers[0].dealer_id
    never = simulate_follow_up(world, {0: (d, math.inf), 1: (d, 1.0)}, 3)
    assert never.status[0] == "new" and never.dealer[0] == d and math.isinf(never.delay_hours[0])
    assert never.status[2] == "new" and never.dealer[2] is None
    assignments = _round_robin(world, 2.0, 5_000)
    as_of = world.start + timedelta(days=3)
    cut = simulate_follow_up(world, assignments, 3, as_of=as_of)
    full = simulate_follow_up(world, assignments, 3)
    for steps in (cut.contacted_at, cut.appointment_at, cut.test_drive_at, cut.order_at, cut.lost_at):
        assert all(t is None or t <= as_of for t in steps)
    assert cut.count("order") < full.count("order") and cut.count("new") > full.count("new")
    assert {"contacted", "appointment", "test_drive"} <= set(cut.status)
    with pytest.raises(ValueError, match="no dealer"):
        simulate_follow_up(world, {0: ("D999", 1.0)}, 3)


def test_csv_files_are_the_import_formats(tmp_path: Path) -> None:
    w = simulate_leads_world(500, 9, dealers=12)
    write_leads_csv(w, tmp_path / "leads.csv")
    write_dealers_csv(w, tmp_path / "dealers.csv")
    write_customers_csv(w, tmp_path / "customers.csv")
    with (tmp_path / "leads.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == LEAD_COLUMNS and len(rows) == 500
    for row, lead in zip(rows, w.leads, strict=True):
        assert datetime.fromisoformat(row["created_at"]) == lead.created_at
        assert row["created_at"].endswith("+08:00")
        assert row["consent_contact"] == {True: "true", False: "false", None: ""}[lead.consent_contact]
        assert row["phone"] == (lead.phone or "") and row["customer_id"] == (lead.customer_id or "")
    for name, model, count in (("dealers", DealerRow, 12), ("customers", CustomerRow, 250)):
        with (tmp_path / f"{name}.csv").open(encoding="utf-8", newline="") as fh:
            records = list(csv.DictReader(fh))
        assert list(records[0]) == list(model.model_fields) and len(records) == count
        for record in records:
            model.model_validate(record)  # what the import checks for every line
    profiles = dealer_profiles(w)
    assert {p["role"] for p in profiles} == {"showroom", "call_centre"}
    assert all(p["models"] == [] for p in profiles if p["role"] == "call_centre")
