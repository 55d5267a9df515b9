"""Lead quality: cleaning (repairs and junk rules), duplicate finding and rating (cloud/leads/)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cloud.leads.clean import clean, clean_many, name_key
from cloud.leads.dedupe import find_duplicates
from cloud.leads.model import INTENTS, Lead, Match, Person, RawLead, Rejection
from cloud.leads.rate import RatingSettings, rate

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


# full-width forms of printable ASCII (U+FF01..U+FF5E, and the ideographic space), as Chinese IMEs type them
_WIDE = {c: c + 0xFEE0 for c in range(0x21, 0x7F)} | {0x20: 0x3000}


def wide(text: str) -> str:
    """``text`` in full-width characters."""
    return text.translate(_WIDE)


def raw(**fields: Any) -> RawLead:
    base: dict[str, Any] = {"source": "form", "channel": "website", "created_at": NOW - timedelta(hours=1)}
    base.update(fields)
    return RawLead(**base)


def lead(**fields: Any) -> Lead:
    result = clean(raw(**fields), now=NOW)
    assert isinstance(result, Lead), result
    return result


def rejected(**fields: Any) -> str:
    result = clean(raw(**fields), now=NOW)
    assert isinstance(result, Rejection), result
    return result.reason


def person(customer_id: str, **fields: Any) -> Person:
    cleaned = lead(**fields)
    return Person(customer_id, cleaned.name, cleaned.phone, cleaned.email, cleaned.city, cleaned.name_key)


# -- cleaning: repairs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "+86 138-1234-5678",
        "0086 138 1234 5678",
        "138 1234 5678",
        "13812345678",
        wide("13812345678"),
        "86 13812345678",
    ],
)
def test_phones_in_every_common_form_become_e164(text: str) -> None:
    assert lead(name="Wang Wei", phone=text).phone == "+8613812345678"


def test_a_missing_country_code_and_full_width_digits_are_noted() -> None:
    cleaned = lead(name="王伟", phone=wide("138 1234 5678"))
    assert cleaned.phone == "+8613812345678"
    assert "phone: added country code +86" in cleaned.notes
    assert "phone: full-width characters converted" in cleaned.notes


def test_an_invalid_phone_is_dropped_with_a_note_when_an_email_remains() -> None:
    cleaned = lead(name="Li Na", phone="138 1234", email="lina@qq.com")
    assert cleaned.phone is None and cleaned.email == "lina@qq.com" and cleaned.contactable
    assert any(note.startswith("phone: dropped") for note in cleaned.notes)


def test_a_foreign_number_with_its_country_code_is_kept() -> None:
    assert lead(name="Anna Schmidt", phone="+49 30 901820").phone == "+4930901820"


@pytest.mark.parametrize(
    ("typed", "fixed", "note"),
    [
        (" WangWei@GMIAL.com ", "wangwei@gmail.com", "email: domain gmial.com repaired to gmail.com"),
        ("lina@qq.con", "lina@qq.com", "email: domain qq.con repaired to qq.com"),
        ("lina@163.cm", "lina@163.com", "email: domain 163.cm repaired to 163.com"),
        ("lina@hotmial.com", "lina@hotmail.com", "email: domain hotmial.com repaired to hotmail.com"),
        ("lina@qq\u3002com", "lina@qq.com", "email: full-width punctuation converted"),
        (wide("lina@qq.com"), "lina@qq.com", None),  # NFKC: a normalisation, not a repair
        ("LiNa@QQ.com", "lina@qq.com", None),
    ],
)
def test_email_typos_are_repaired_and_noted(typed: str, fixed: str, note: str | None) -> None:
    cleaned = lead(name="Li Na", email=typed)
    assert cleaned.email == fixed
    assert cleaned.notes == ((note,) if note else ())


@pytest.mark.parametrize(
    "real", ["a.b@email.com", "ab@mail.com", "ab@ymail.com", "ab@sina.com.cn", "ab@vip.qq.com"]
)
def test_real_domains_near_a_provider_are_not_repaired(real: str) -> None:
    assert lead(name="Li Na", email=real).email == real


def test_an_invalid_email_is_dropped_with_a_note() -> None:
    cleaned = lead(name="Li Na", phone="13912345670", email="lina@@qq")
    assert cleaned.email is None and any(note.startswith("email: dropped") for note in cleaned.notes)


def test_names_are_normalised_and_keyed() -> None:
    cleaned = lead(name=wide("  WANG  wei "), phone="13912345670")
    assert cleaned.name == "Wang Wei" and cleaned.name_key == "wangwei"
    assert lead(name="王伟", phone="13912345670").name == "王伟"
    assert lead(name="John O'BRIEN", phone="13912345670").name == "John O'Brien"
    assert lead(name="Ronald McDonald", phone="13912345670").name == "Ronald McDonald"  # mixed case kept
    assert name_key("Mr. Wang Wei") == "wangwei"
    assert name_key("王伟先生") == "王伟"
    assert name_key("李女士") == "李"
    assert name_key("Wang-Wei") == "wangwei"


# -- cleaning: junk ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["test", "Test 2", "TEST", "asdf", "qwerty", "123", "测试", "sdfsdf", "哈哈哈", "xkcdq"]
)
def test_test_and_junk_names_are_refused(name: str) -> None:
    assert "junk name" in rejected(name=name, phone="13912345670")


@pytest.mark.parametrize(
    "name", ["Lili", "Tingting", "丽丽", "Doherty", "Liberty", "王", "Ng Ka Ho", "An An"]
)
def test_real_names_that_look_odd_are_kept(name: str) -> None:
    lead(name=name, phone="13912345670")


@pytest.mark.parametrize(
    "phone", ["13800000000", "11111111111", "12345678901", "98765432109", wide("13888888888")]
)
def test_placeholder_phones_are_refused(phone: str) -> None:
    assert "placeholder phone" in rejected(name="Wang Wei", phone=phone, email="wangwei@qq.com")


@pytest.mark.parametrize(
    "email", ["x@mailinator.com", "x@YOPMAIL.com", "x@example.com", "x@sub.guerrillamail.com"]
)
def test_disposable_email_domains_are_refused(email: str) -> None:
    assert "disposable" in rejected(name="Wang Wei", email=email)


def test_nothing_contactable_is_refused_unless_the_customer_is_known() -> None:
    assert "not contactable" in rejected(name="Wang Wei", phone="12", email="nope")
    assert "not contactable" in rejected(name="王伟")
    known = lead(name="王伟", customer_id="C-1")
    assert not known.contactable


def test_a_future_created_at_is_refused_but_small_clock_skew_is_not() -> None:
    assert "future" in rejected(name="Wang Wei", phone="13912345670", created_at=NOW + timedelta(hours=2))
    lead(name="Wang Wei", phone="13912345670", created_at=NOW + timedelta(minutes=2))
    assert "time zone" in rejected(name="Wang Wei", phone="13912345670", created_at=datetime(2026, 1, 1))


def test_clean_many_splits_leads_and_rejections_in_order() -> None:
    leads, rejections = clean_many(
        [
            raw(name="A B", phone="13912345670"),
            raw(name="test", phone="13912345671"),
            raw(name="C D", email="c@qq.com"),
        ],
        now=NOW,
    )
    assert [x.name for x in leads] == ["A B", "C D"]
    assert [r.raw.name for r in rejections] == ["test"]


_text = st.one_of(
    st.none(), st.text(max_size=40), st.text(alphabet="0123456789+-() " + wide("0123456789"), max_size=20)
)


@settings(max_examples=300, deadline=None)
@given(
    name=_text, phone=_text, email=_text, city=_text, customer_id=st.one_of(st.none(), st.text(max_size=5))
)
def test_clean_never_raises_and_its_phones_parse(
    name: str | None, phone: str | None, email: str | None, city: str | None, customer_id: str | None
) -> None:
    result = clean(raw(name=name, phone=phone, email=email, city=city, customer_id=customer_id), now=NOW)
    if isinstance(result, Lead):
        assert result.contactable or result.raw.customer_id
        if result.phone is not None:
            assert result.phone.startswith("+")
            assert phonenumbers.is_valid_number(phonenumbers.parse(result.phone, None))
        if result.email is not None:
            assert result.email == result.email.strip().lower() and "@" in result.email
    else:
        assert result.reason


@settings(max_examples=200, deadline=None)
@given(digits=st.text(alphabet="0123456789", min_size=11, max_size=11), full_width=st.booleans())
def test_valid_cn_mobiles_are_e164_whatever_the_form(digits: str, full_width: bool) -> None:
    typed = "1" + digits[1:]
    if full_width:
        typed = typed.translate(str.maketrans("0123456789", wide("0123456789")))
    result = clean(raw(name="Wang Wei", phone=typed), now=NOW)
    if isinstance(result, Lead) and result.phone is not None:
        assert (
            phonenumbers.format_number(
                phonenumbers.parse(result.phone, None), phonenumbers.PhoneNumberFormat.E164
            )
            == result.phone
        )


# -- duplicates -------------------------------------------------------------------------------------------


def at(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def test_exact_phone_and_email_match_the_earliest_lead() -> None:
    leads = [
        lead(name="Wang Wei", phone="13912345670", created_at=at(5)),
        lead(name="WANG wei", phone="+86 139-1234-5670", created_at=at(3)),
        lead(name="Li Na", email="LiNa@qq.com", created_at=at(4)),
        lead(name="Li Na", email="lina@qq.con", created_at=at(2)),
    ]
    assert find_duplicates(leads, []) == [Match(1, 0, "phone", 1.0), Match(3, 2, "email", 1.0)]


def test_the_earliest_by_created_at_wins_not_the_first_by_index() -> None:
    leads = [
        lead(name="Wang Wei", phone="13912345670", created_at=at(1)),
        lead(name="Wang Wei", phone="13912345670", created_at=at(9)),
    ]
    assert find_duplicates(leads, []) == [Match(0, 1, "phone", 1.0)]


def test_a_known_customer_is_preferred_over_a_batch_lead() -> None:
    known = [person("C-7", name="王伟", phone="13912345670", city="上海")]
    leads = [
        lead(name="王伟", phone="13912345670", created_at=at(5)),
        lead(name="王伟先生", phone="139 1234 5670", created_at=at(3)),
        lead(name="Zhao Lei", customer_id="C-7", created_at=at(1)),
    ]
    assert find_duplicates(leads, known) == [
        Match(0, "C-7", "phone", 1.0),
        Match(1, "C-7", "phone", 1.0),
        Match(2, "C-7", "customer_id", 1.0),
    ]


def test_leads_naming_the_same_customer_are_one_person_even_if_the_customer_is_not_known() -> None:
    leads = [
        lead(name="Zhao Lei", customer_id="C-9", source="car", created_at=at(5)),
        lead(name="Zhao Lei", customer_id="C-9", phone="13912345670", created_at=at(3)),
    ]
    assert find_duplicates(leads, []) == [Match(1, 0, "customer_id", 1.0)]


def test_fuzzy_name_in_the_same_city_with_a_similar_phone_matches() -> None:
    leads = [
        lead(name="Wang Wei", phone="13912345670", city="Shanghai", created_at=at(5)),
        lead(name="Wagn Wei", phone="13912345607", city="shanghai", created_at=at(3)),  # two digits swapped
        lead(name="Wei Wang", phone="+8613912345670", city="上海", created_at=at(2)),  # other city spelling
    ]
    matches = find_duplicates(leads, [])
    assert matches[0].index == 1 and matches[0].other == 0 and matches[0].rule == "name_city_fuzzy"
    assert 0.85 <= matches[0].score <= 1.0
    assert matches[1] == Match(2, 0, "phone", 1.0)


def test_fuzzy_match_by_email_local_part_in_the_same_city() -> None:
    leads = [
        lead(name="张伟", email="zhangwei88@qq.com", city="北京", created_at=at(5)),
        lead(name="张伟", email="zhangwei88@163.com", city="北京市", created_at=at(3)),
        lead(name="张伟", email="zhangwei89@163.com", city="北京", created_at=at(2)),  # a namesake's number
    ]
    assert [(m.index, m.other, m.rule) for m in find_duplicates(leads, [])] == [(1, 0, "name_city_fuzzy")]


def test_the_same_local_part_at_another_provider_with_two_different_phones_is_two_people() -> None:
    leads = [
        lead(
            name="Wang Lei", phone="13912345670", email="wanglei1962@qq.com", city="Beijing", created_at=at(5)
        ),
        lead(
            name="Wang Lei",
            phone="13698765432",
            email="wanglei1962@163.com",
            city="Beijing",
            created_at=at(3),
        ),
    ]
    assert find_duplicates(leads, []) == []


def test_two_wang_wei_in_the_same_city_with_different_phones_are_not_merged() -> None:
    leads = [
        lead(name="Wang Wei", phone="13912345670", city="Shanghai", email="wangwei@qq.com", created_at=at(5)),
        lead(
            name="Wang Wei", phone="13698765432", city="Shanghai", email="wei.wang@163.com", created_at=at(3)
        ),
        lead(name="王伟", phone="13512340000", city="上海", created_at=at(2)),
        lead(name="王伟", phone="13787650000", city="上海", created_at=at(1)),
    ]
    assert find_duplicates(leads, []) == []


def test_a_similar_phone_in_another_city_or_without_a_name_is_not_enough() -> None:
    leads = [
        lead(name="Wang Wei", phone="13912345670", city="Shanghai", created_at=at(5)),
        lead(name="Wang Wei", phone="13912345607", city="Beijing", created_at=at(3)),
        lead(phone="13912345706", city="Shanghai", created_at=at(2)),
        lead(name="Li Na", phone="13912345760", city="Shanghai", created_at=at(1)),
    ]
    assert find_duplicates(leads, []) == []


def test_a_chain_resolves_to_the_earliest() -> None:
    # A~B by phone, B~C by e-mail: C is A's duplicate too, though it shares nothing with A
    leads = [
        lead(name="Li Na", email="c@qq.com", created_at=at(1)),  # C
        lead(name="Li Na", phone="13912345670", created_at=at(9)),  # A
        lead(name="Li Na", phone="13912345670", email="c@qq.com", created_at=at(5)),  # B
    ]
    assert find_duplicates(leads, []) == [Match(0, 1, "chain:email", 1.0), Match(2, 1, "phone", 1.0)]


def test_a_chain_through_a_known_customer() -> None:
    known = [person("C-1", name="Li Na", email="c@qq.com")]
    leads = [
        lead(name="Li Na", phone="13912345670", created_at=at(9)),
        lead(name="Li Na", phone="13912345670", email="c@qq.com", created_at=at(5)),
    ]
    assert find_duplicates(leads, known) == [
        Match(0, "C-1", "chain:phone", 1.0),
        Match(1, "C-1", "email", 1.0),
    ]


_leads_pool = [
    lead(name=n, phone=p, email=e, city=c, created_at=at(h))
    for n, p, e, c, h in [
        ("Wang Wei", "13912345670", None, "Shanghai", 1),
        ("Wang Wei", "13912345607", None, "Shanghai", 2),
        ("Wang Wei", None, "ww@qq.com", "Shanghai", 3),
        ("Wang Wei", "13912345670", "ww@qq.com", "Beijing", 4),
        ("Li Na", "13698765432", "lina@qq.com", "Beijing", 1),
        ("Li Na", "13698765432", None, None, 5),
        ("王伟", "13512340000", "w@163.com", "上海", 2),
        ("王伟", "13512340000", None, "上海", 2),
    ]
]


@settings(max_examples=100, deadline=None)
@given(st.permutations(range(len(_leads_pool))))
def test_find_duplicates_is_deterministic_and_order_independent(order: list[int]) -> None:
    shuffled = [_leads_pool[i] for i in order]
    first = find_duplicates(shuffled, [])
    assert first == find_duplicates(shuffled, [])

    # the same groups whatever the input order: map back to pool positions
    def groups(matches: list[Match], items: list[int]) -> set[frozenset[int]]:
        parent = {i: i for i in range(len(items))}
        for m in matches:
            assert isinstance(m.other, int)
            parent[m.index] = m.other
        out: dict[int, set[int]] = {}
        for i in parent:
            out.setdefault(parent[i], set()).add(items[i])
        return {frozenset(g) for g in out.values()}

    assert groups(first, order) == groups(find_duplicates(_leads_pool, []), list(range(len(_leads_pool))))
    for m in first:  # every duplicate points at an earlier or equally early lead
        assert isinstance(m.other, int)
        assert shuffled[m.other].raw.created_at <= shuffled[m.index].raw.created_at


# -- rating -----------------------------------------------------------------------------------------------


def test_a_fresh_test_drive_from_the_car_rates_above_an_old_newsletter_from_a_list() -> None:
    hot = lead(
        name="Wang Wei",
        phone="13912345670",
        channel="in_car",
        source="car",
        intent="test_drive",
        model_interest="DS-7",
        consent_contact=True,
        created_at=at(1),
    )
    cold = lead(
        name="Li Na",
        email="lina@qq.com",
        channel="purchased_list",
        intent="newsletter",
        created_at=at(24 * 30),
    )
    hot_rating, cold_rating = rate(hot, now=NOW), rate(cold, now=NOW)
    assert hot_rating.grade == "A" and cold_rating.grade == "C"
    assert hot_rating.score > cold_rating.score
    assert hot_rating.reasons[0] == "asked for a test drive (+30)"
    assert hot_rating.reasons[1] == "created 1 hour ago (+20)"


def test_intents_rank_in_order_all_else_equal() -> None:
    scores = [rate(lead(name="Wang Wei", phone="13912345670", intent=i), now=NOW).score for i in INTENTS]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores)


def test_recency_decays_and_phone_beats_email_only() -> None:
    hours = [1, 24, 72, 24 * 14]
    scores = [
        rate(lead(name="Wang Wei", phone="13912345670", created_at=at(h)), now=NOW).score for h in hours
    ]
    assert scores == sorted(scores, reverse=True)
    by_phone = rate(lead(name="Wang Wei", phone="13912345670"), now=NOW).score
    by_email = rate(lead(name="Wang Wei", email="ww@qq.com"), now=NOW).score
    assert by_phone > by_email


def test_signals_and_consent_move_the_score_and_show_in_the_reasons() -> None:
    base = lead(name="Wang Wei", phone="13912345670", intent="brochure")
    plain = rate(base, now=NOW)
    keen = rate(base, now=NOW, signals={"upgrade_probability": 0.8, "service_due": 1, "engagement": 0.5})
    assert keen.score == pytest.approx(plain.score + 12 + 8 + 5)
    assert "upgrade intent 80% (+12)" in keen.reasons
    refused = rate(lead(name="Wang Wei", phone="13912345670", intent="quote", consent_contact=False), now=NOW)
    assert refused.grade == "C" and refused.reasons[0] == "asked for a quote (+35)"
    assert "did not agree to be contacted (-25)" in refused.reasons


def test_unknown_or_broken_signals_are_refused() -> None:
    base = lead(name="Wang Wei", phone="13912345670")
    with pytest.raises(ValueError, match="unknown signal"):
        rate(base, now=NOW, signals={"upgrade_probabilty": 0.5})
    with pytest.raises(ValueError, match="finite"):
        rate(base, now=NOW, signals={"engagement": float("nan")})


def test_settings_are_strict_and_configurable() -> None:
    with pytest.raises(ValidationError):
        RatingSettings(grade_x=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        RatingSettings(grade_a=40, grade_b=60)
    web_first = RatingSettings(channel_points={"website": 30.0})
    base = lead(name="Wang Wei", phone="13912345670")
    assert rate(base, now=NOW, settings=web_first).score == pytest.approx(
        rate(base, now=NOW).score + 22, abs=0.11
    )


@settings(max_examples=200, deadline=None)
@given(
    intent=st.sampled_from(INTENTS),
    channel=st.sampled_from(["in_car", "website", "purchased_list", "somewhere"]),
    hours=st.floats(min_value=-1, max_value=24 * 400),
    signal=st.floats(min_value=-2, max_value=2),
)
def test_ratings_stay_in_range_and_are_deterministic(
    intent: str, channel: str, hours: float, signal: float
) -> None:
    base = lead(name="Wang Wei", phone="13912345670", intent=intent, channel=channel)
    now = base.raw.created_at + timedelta(hours=hours)
    first = rate(base, now=now, signals={"engagement": signal})
    assert 0 <= first.score <= 100 and first.grade in "ABC"
    assert first == rate(base, now=now, signals={"engagement": signal})
