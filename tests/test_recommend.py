"""Recommenders (cloud/recommend): planted structure recovered, top-k rules, cold start and reasons, metrics
against hand-computed values, the file reader, determinism, and the CLI."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.recommend.algorithms import NAMES, UnknownAlgorithmError, make
from cloud.recommend.cli import main
from cloud.recommend.data import (
    Interaction,
    Interactions,
    ItemAttributes,
    ItemFeatures,
    NotFittedError,
    UserAttributes,
    UserFeatures,
)
from cloud.recommend.evaluate import evaluate, ranking_metrics, relevant_items, stratified_split
from cloud.recommend.files import InteractionFileError, parse_interactions, read_interactions
from cloud.recommend.itemknn import ItemKNN
from cloud.recommend.personalized import Personalized
from cloud.recommend.popularity import DAY_S, Popularity

ROOT = Path(__file__).resolve().parent.parent
DAY0 = 1_700_000_000.0


def planted(seed: int, users: int = 160, items: int = 28) -> Interactions:
    """Two user groups liking two item groups. Group A is 60% of users, so popularity ranks A's items first
    and serves B's users badly; a recommender that learns the groups serves both."""
    rng = np.random.default_rng(seed)
    rows: list[tuple[str, str, float, float]] = []
    half = items // 2
    for u in range(users):
        group = 0 if u < 0.6 * users else 1
        own = np.arange(half) + group * half
        other = np.arange(half) + (1 - group) * half
        picked = list(rng.choice(own, size=10, replace=False)) + list(rng.choice(other, size=1))
        for i in picked:
            rows.append((f"U{u}", f"I{i}", 1.0, DAY0 + float(rng.integers(0, 30)) * DAY_S))
    return Interactions.from_records(rows)


def group_of_item(item: str, items: int = 28) -> int:
    return 0 if int(item[1:]) < items // 2 else 1


def group_of_user(user: str, users: int = 160) -> int:
    return 0 if int(user[1:]) < 0.6 * users else 1


# --- planted structure


@pytest.fixture(scope="module")
def planted_results() -> dict[str, dict[str, float]]:
    train, test = stratified_split(planted(7), 0.75, seed=3)
    results = evaluate(NAMES, train, test, 5, seed=1)
    return {r["algorithm"]: r for r in results}


@pytest.mark.parametrize("name", ["itemknn", "als", "bpr", "personalized"])
def test_learning_algorithms_beat_popularity_on_held_out_interactions(
    planted_results: dict[str, dict[str, float]], name: str
) -> None:
    pop = planted_results["popularity"]
    got = planted_results[name]
    # popularity serves group B (40% of users) nothing of theirs; learning the groups serves everyone
    assert got["precision_at_k"] > pop["precision_at_k"] + 0.08, (got, pop)
    assert got["ndcg_at_k"] > pop["ndcg_at_k"] + 0.1, (got, pop)
    assert got["coverage"] > pop["coverage"]


@pytest.mark.parametrize("name", ["itemknn", "als", "personalized"])
def test_recommendations_come_from_the_users_own_group(name: str) -> None:
    data = planted(11)
    model = make(name, seed=0).fit(data)
    top = model.recommend_all(list(data.user_ids), 3)
    own = [
        group_of_item(item) == group_of_user(user) for user, items in top.as_dict().items() for item in items
    ]
    assert np.mean(own) > 0.9


def test_popularity_gives_everyone_the_same_ranking_minus_what_they_have() -> None:
    data = planted(5)
    model = Popularity().fit(data)
    seen = data.pairs_by_user()
    counts: dict[str, int] = {}
    for item in data.item_ids:
        counts[item] = int(np.sum(data.items == data.item_index[item]))
    overall = sorted(data.item_ids, key=lambda i: (-counts[i], data.item_index[i]))
    for user, items in model.recommend_all(list(data.user_ids)[:20], 5).as_dict().items():
        assert items == [i for i in overall if i not in seen[user]][:5]


# --- popularity: decay, window, region


def test_popularity_decays_with_age_and_drops_what_is_outside_the_window() -> None:
    now = DAY0 + 100 * DAY_S
    rows = [(f"u{n}", "old", 1.0, DAY0) for n in range(10)]  # 100 days old, ten interactions
    rows += [(f"u{n}", "new", 1.0, now - DAY_S) for n in range(3)]  # yesterday, three
    rows += [("someone", "x", 1.0, now)]
    data = Interactions.from_records(rows)
    plain = Popularity().fit(data).recommend("someone", 2)
    assert [r.item for r in plain] == ["old", "new"]
    decayed = Popularity(half_life_days=10, now=now).fit(data).recommend("someone", 2)
    assert [r.item for r in decayed] == ["new", "old"]
    windowed = Popularity(window_days=30, now=now).fit(data)
    assert windowed.scores_[data.item_index["old"]] == 0.0
    assert [r.reasons for r in plain] == [("popular",), ("popular",)]


def test_popularity_by_region_and_items_targeted_at_a_region() -> None:
    rows = [(f"n{u}", "north-hit", 1.0, None) for u in range(5)]
    rows += [(f"s{u}", "south-hit", 1.0, None) for u in range(8)]
    rows += [(f"s{u}", "south-only", 1.0, None) for u in range(8)]
    data = Interactions.from_records(rows)
    users = UserFeatures(
        {f"n{u}": UserAttributes(region="north") for u in range(5)}
        | {f"s{u}": UserAttributes(region="south") for u in range(8)}
        | {"n-new": UserAttributes(region="north")}
    )
    items = ItemFeatures({"south-only": ItemAttributes(regions=frozenset({"south"}))})
    model = Popularity(min_region_users=3).fit(data, users, items)
    recs = model.recommend("n-new", 3)
    # north's own ranking first; the item targeting the south never reaches the north
    assert [r.item for r in recs] == ["north-hit", "south-hit"]
    assert recs[0].reasons == ("popular in north",)
    everyone = Popularity().fit(data, None, items).recommend("stranger", 3)
    assert "south-only" not in [r.item for r in everyone]  # a user of unknown region: untargeted items only


# --- top-k rules


@pytest.mark.parametrize("name", NAMES)
def test_topk_never_returns_a_seen_item_and_returns_exactly_k(name: str) -> None:
    data = planted(3)
    model = make(name, seed=0).fit(data)
    seen = data.pairs_by_user()
    top = model.recommend_all(list(data.user_ids), 7)
    for user, items in top.as_dict().items():
        assert len(items) == 7 and len(set(items)) == 7
        assert not set(items) & seen[user]
    assert np.all(np.diff(top.scores, axis=1) <= 0)


def test_fewer_than_k_only_when_the_catalogue_runs_out() -> None:
    rows = [("greedy", f"I{i}", 1.0, None) for i in range(8)] + [("other", "I0", 1.0, None)]
    data = Interactions.from_records([*rows, ("x", "I8", 1.0, None), ("x", "I9", 1.0, None)])
    for name in NAMES:
        model = make(name, seed=0).fit(data)
        top = model.recommend_all(["greedy", "other"], 5)
        assert [len(items) for items in top.as_dict().values()] == [2, 5], name
        assert list(top.items[0, 2:]) == [-1, -1, -1] and np.isnan(top.scores[0, 2:]).all()


def test_excluded_and_expired_items_are_never_recommended() -> None:
    data = planted(4)
    now = DAY0 + 40 * DAY_S
    features = ItemFeatures(
        {
            "I1": ItemAttributes(valid_until=now - 1),  # expired
            "I2": ItemAttributes(valid_from=now + DAY_S),  # not yet
            "I3": ItemAttributes(valid_from=now - DAY_S, valid_until=now + DAY_S),  # running
        }
    )
    model = make("personalized", seed=0).fit(data, None, features)
    user = "U0"
    got = {r.item for r in model.recommend(user, 40, exclude={"I4", "I5"}, at=now)}
    assert not got & {"I1", "I2", "I4", "I5"}
    assert "I3" in got or "I3" in data.pairs_by_user()[user]
    later = {r.item for r in model.recommend(user, 40, at=now + 2 * DAY_S)}
    assert "I2" in later or "I2" in data.pairs_by_user()[user]


def test_recommending_before_fit_is_an_error_and_names_are_checked() -> None:
    with pytest.raises(NotFittedError):
        ItemKNN().recommend("u", 3)
    with pytest.raises(UnknownAlgorithmError, match="choose from"):
        make("random")


# --- cold start and reasons


def catalogue_features() -> ItemFeatures:
    return ItemFeatures(
        {
            "suv-offer": ItemAttributes(tags={"family_use": 1.0}, categories={"suv": 0.9}),
            "sport-offer": ItemAttributes(tags={"aggressive": 1.0}, categories={"sports": 1.0}),
            "eco-offer": ItemAttributes(tags={"eco": 1.0}),
            "new-suv": ItemAttributes(categories={"suv": 1.0}),  # never interacted with
        }
    )


def test_cold_start_falls_back_from_history_to_tags_to_popularity() -> None:
    rows = [(f"u{n}", "eco-offer", 1.0, None) for n in range(6)]
    rows += [(f"u{n}", "sport-offer", 1.0, None) for n in range(3)]
    rows += [("u0", "suv-offer", 1.0, None), ("u1", "suv-offer", 1.0, None)]
    data = Interactions.from_records(rows)
    users = UserFeatures({"newcomer": UserAttributes(tags={"family_use": 0.8}, categories={"suv": 1.0})})
    model = Personalized().fit(data, users, catalogue_features())
    # history: similar items, with the items named
    with_history = model.recommend("u2", 2)
    assert with_history[0].item == "suv-offer"
    assert with_history[0].reasons[0] == "similar to items you viewed: sport-offer, eco-offer"
    assert with_history[1].reasons == ("new in the catalogue",)  # new-suv: no interactions, no tags of u2
    # no history but a portrait: matched tags and categories, the never-seen SUV offer included
    newcomer = model.recommend("newcomer", 2)
    assert {r.item for r in newcomer} == {"suv-offer", "new-suv"}
    assert "matched tags: family_use" in newcomer[0].reasons
    assert "matched categories: suv" in newcomer[0].reasons
    # nothing known: popularity
    stranger = model.recommend("stranger", 2)
    assert [r.item for r in stranger] == ["eco-offer", "sport-offer"]
    assert all(r.reasons == ("popular",) for r in stranger)


@pytest.mark.parametrize("name", NAMES)
def test_every_recommendation_carries_reasons(name: str) -> None:
    data = planted(2)
    model = make(name, seed=0).fit(data)
    recs = model.recommend("U1", 5)
    assert len(recs) == 5
    assert all(r.reasons and all(isinstance(x, str) and x for x in r.reasons) for r in recs)
    if name in ("itemknn", "personalized"):
        assert any(x.startswith("similar to items you viewed: I") for r in recs for x in r.reasons)


# --- determinism


@pytest.mark.parametrize("name", ["als", "bpr", "personalized"])
def test_learned_models_are_deterministic_with_a_seed(name: str) -> None:
    data = planted(9)
    users = list(data.user_ids)
    first = make(name, seed=5).fit(data).recommend_all(users, 5)
    second = make(name, seed=5).fit(data).recommend_all(users, 5)
    assert np.array_equal(first.items, second.items)
    assert np.array_equal(first.scores, second.scores)
    other = make(name, seed=6).fit(data).recommend_all(users, 5)
    assert not np.array_equal(first.scores, other.scores)  # the seed is really used


# --- split and metrics


def test_stratified_split_is_per_user_and_seeded() -> None:
    data = planted(1)
    train, test = stratified_split(data, 0.75, seed=4)
    assert len(train) + len(test) == len(data)
    for user, items in data.pairs_by_user().items():
        n_train = len(train.pairs_by_user()[user])
        assert n_train == round(0.75 * len(items))
        assert train.pairs_by_user()[user] | test.pairs_by_user().get(user, set()) == items
    again, _ = stratified_split(data, 0.75, seed=4)
    other, _ = stratified_split(data, 0.75, seed=5)
    assert again.pairs_by_user() == train.pairs_by_user() != other.pairs_by_user()


def test_metrics_against_hand_computed_values() -> None:
    recommended = {"a": ["x", "y", "z"], "b": ["p", "q", "r"], "c": ["m"]}
    relevant = {"a": {"y", "w"}, "b": {"p", "r", "s", "t"}, "c": {"n"}, "d": {"x"}}
    m = ranking_metrics(recommended, relevant, 3, catalogue_size=10)
    # users a, b, c (d got no recommendations). a: hit at 2; b: hits at 1 and 3; c: none.
    assert m.users == 3
    assert m.precision_at_k == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert m.recall_at_k == pytest.approx((1 / 2 + 2 / 4 + 0) / 3)
    log2 = math.log2
    ndcg_a = (1 / log2(3)) / (1 + 1 / log2(3))
    ndcg_b = (1 + 1 / log2(4)) / (1 + 1 / log2(3) + 1 / log2(4))
    assert m.ndcg_at_k == pytest.approx((ndcg_a + ndcg_b + 0) / 3)
    map_a = (1 / 2) / min(3, 2)
    map_b = (1 / 1 + 2 / 3) / min(3, 4)
    assert m.map_at_k == pytest.approx((map_a + map_b) / 3)
    assert m.map == pytest.approx(((1 / 2) / 2 + (1 + 2 / 3) / 4) / 3)
    assert m.coverage == pytest.approx(7 / 10)


def test_relevance_can_require_a_minimum_rating() -> None:
    test = Interactions.from_records([("a", "x", 5.0, None), ("a", "y", 2.0, None), ("b", "z", 1.0, None)])
    assert relevant_items(test) == {"a": {"x", "y"}, "b": {"z"}}
    assert relevant_items(test, min_rating=4) == {"a": {"x"}}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from("abcdef"),
        st.tuples(
            st.lists(st.integers(0, 30), max_size=12, unique=True), st.sets(st.integers(0, 30), max_size=9)
        ),
        min_size=1,
    ),
    st.integers(1, 10),
)
def test_metric_invariants(data: dict[str, tuple[list[int], set[int]]], k: int) -> None:
    recommended = {u: [str(i) for i in rec] for u, (rec, _) in data.items()}
    relevant = {u: {str(i) for i in rel} for u, (_, rel) in data.items()}
    m = ranking_metrics(recommended, relevant, k, catalogue_size=31)
    for value in (m.precision_at_k, m.recall_at_k, m.ndcg_at_k, m.map_at_k, m.map, m.coverage):
        assert 0.0 <= value <= 1.0 + 1e-12
    assert m.map <= m.map_at_k + 1e-12
    # recommending exactly the relevant items, in any order, is perfect on every rank metric
    perfect = {u: sorted(rel)[:k] for u, rel in relevant.items()}
    p = ranking_metrics(perfect, relevant, k, catalogue_size=31)
    if p.users:
        assert p.ndcg_at_k == pytest.approx(1.0) and p.map_at_k == pytest.approx(1.0)
        expected = np.mean([min(len(r), k) / k for r in relevant.values() if r])
        assert p.precision_at_k == pytest.approx(expected)


# --- the file reader


@pytest.mark.parametrize(
    "text",
    [
        "u1,i1,5,100\nu1,i2,3,200\nu2,i1,4,300\n",
        "user,item,rating,timestamp\nu1,i1,5,100\nu1,i2,3,200\nu2,i1,4,300\n",
        "u1\ti1\t5\t100\nu1\ti2\t3\t200\nu2\ti1\t4\t300\n",
        "u1;i1;5;100\nu1;i2;3;200\nu2;i1;4;300\n",
        "timestamp;rating;item;user\n100;5;i1;u1\n200;3;i2;u1\n300;4;i1;u2\n",
        "userId|movieId|rating|timestamp\nu1|i1|5|1970-01-01T00:01:40\nu1|i2|3|200\nu2|i1|4|300\n",
    ],
    ids=["comma", "header", "tab", "semicolon", "named-columns", "pipe-iso"],
)
def test_reader_takes_each_layout(text: str) -> None:
    data = parse_interactions(text)
    assert data.user_ids == ("u1", "u2") and data.item_ids == ("i1", "i2")
    assert list(data.weights) == [5.0, 3.0, 4.0]
    assert list(data.timestamps) == [100.0, 200.0, 300.0]


def test_reader_takes_two_columns_as_unit_weights() -> None:
    data = parse_interactions("customer,item\nC1,offer-9\nC2,offer-9\n")
    assert list(data.weights) == [1.0, 1.0] and np.isnan(data.timestamps).all()


def test_reader_names_every_bad_line_and_reads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text("1\t2\t5\t100\n1\t3\tfive\t100\n2\t3\n2\t4\t4\tyesterday\n\t4\t4\t100\n3\t4\tnan\t1\n")
    with pytest.raises(InteractionFileError) as caught:
        read_interactions(path)
    assert [n for n, _ in caught.value.problems] == [2, 3, 4, 5, 6]
    message = str(caught.value)
    assert "line 2: rating 'five' is not a finite number" in message
    assert "line 3: 2 fields, expected 4" in message
    assert "line 4: timestamp 'yesterday'" in message
    assert "line 5: empty user or item" in message


@pytest.mark.parametrize("text", ["", "user,item,rating\n"])
def test_reader_refuses_a_file_without_interactions(text: str) -> None:
    with pytest.raises(InteractionFileError, match="no interactions"):
        parse_interactions(text)


def test_interactions_from_records_and_arrays_agree() -> None:
    a = Interactions.from_records([Interaction("u", "i", 2.0, 5.0), ("v", "i", 1.0, None)])
    b = Interactions.from_arrays(["u", "v"], ["i", "i"], [2.0, 1.0], [5.0, math.nan])
    assert a.user_ids == b.user_ids and a.item_ids == b.item_ids
    assert a.matrix().toarray().tolist() == b.matrix().toarray().tolist() == [[2.0], [1.0]]


# --- the CLI


def write_planted(path: Path, data: Interactions) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f, delimiter="\t")
        for u, i, w, t in zip(data.users, data.items, data.weights, data.timestamps, strict=True):
            out.writerow([data.user_ids[u], data.item_ids[i], int(w), int(t)])


def test_cli_split_topk_evaluate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "all.tsv"
    write_planted(source, planted(8))
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    assert main(["recommend", "split", str(source), "--train-out", str(train), "--test-out", str(test)]) == 0
    capsys.readouterr()
    out = tmp_path / "top.csv"
    args = [
        "recommend",
        "topk",
        "--train",
        str(train),
        "--k",
        "4",
        "--algorithm",
        "itemknn",
        "--out",
        str(out),
    ]
    assert main([*args, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["rows"] == 4 * doc["users"]
    seen = read_interactions(train).pairs_by_user()
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["user", "item", "rank", "score"]
    per_user: dict[str, list[str]] = {}
    for row in rows:
        per_user.setdefault(row["user"], []).append(row["item"])
        assert row["item"] not in seen[row["user"]]
    assert set(per_user) == set(seen) and all(len(v) == 4 for v in per_user.values())
    assert (
        main(["recommend", "evaluate", "--train", str(train), "--test", str(test), "--k", "5", "--json"]) == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["algorithm"] for line in lines] == list(NAMES)
    for line in lines:
        for key in ("precision_at_k", "recall_at_k", "ndcg_at_k", "map_at_k", "coverage", "seconds"):
            assert isinstance(line[key], float | int)


def test_cli_evaluate_output_is_only_json_and_a_bad_file_exits_2(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    write_planted(train, planted(6))
    command = [sys.executable, "-m", "cloud.recommend.cli", "recommend", "evaluate"]
    args = [
        "--train",
        str(train),
        "--test",
        str(train),
        "--algorithm",
        "popularity",
        "--algorithm",
        "itemknn",
    ]
    ok = subprocess.run([*command, *args, "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert [json.loads(line)["algorithm"] for line in ok.stdout.splitlines()] == ["popularity", "itemknn"]
    assert "popularity: precision@10" in ok.stderr  # progress goes to stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("u,i,1,1\nu,j,x,1\n")
    refused = subprocess.run(
        [*command, "--train", str(bad), "--test", str(train), "--json"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert (refused.returncode, refused.stdout) == (2, "")
    assert "line 2: rating 'x' is not a finite number" in refused.stderr
    assert "Traceback" not in refused.stderr


# --- reasons in bulk, aggregated interactions


def portrait_world(seed: int = 4, users: int = 260) -> tuple[Interactions, UserFeatures, ItemFeatures]:
    """Two taste groups with repeated interactions, portraits (some empty), regions (some unknown) and items
    with tags, categories and a few regional targets: every reason a recommender gives has a case."""
    rng = np.random.default_rng(seed)
    tags, cats, regions = (
        ["ev", "family", "sport", "eco", "winter"],
        ["suv", "sedan", "charging"],
        ["n", "s", "e"],
    )
    items = {
        f"I{i}": ItemAttributes(
            tags={str(t): 1.0 for t in rng.choice(tags, 2, replace=False)},
            categories={str(c): float(rng.uniform(0.2, 1)) for c in rng.choice(cats, 2, replace=False)},
            regions=frozenset([regions[i % 3]]) if i % 7 == 0 else frozenset(),
        )
        for i in range(40)
    }
    portraits = {
        f"U{u}": UserAttributes(
            tags={str(t): float(rng.uniform(0.1, 1)) for t in rng.choice(tags, 3, replace=False)}
            if u % 5
            else {},
            categories={str(c): float(rng.uniform(0.1, 1)) for c in rng.choice(cats, 2, replace=False)}
            if u % 4
            else {},
            region=regions[u % 3] if u % 6 else None,
        )
        for u in range(users)
    }
    rows = []
    for u in range(users - 30):  # the last 30 have a portrait only
        group = np.arange(20) + 20 * (u % 2)
        for i in rng.choice(group, 8, replace=False).tolist() + rng.choice(40, 2).tolist():
            for _ in range(int(rng.integers(1, 3))):
                rows.append(
                    (
                        f"U{u}",
                        f"I{i}",
                        float(rng.choice([1.0, 2.0, 5.0])),
                        DAY0 + float(rng.integers(0, 90)) * DAY_S,
                    )
                )
    return Interactions.from_records(rows), UserFeatures(portraits), ItemFeatures(items)


@pytest.mark.parametrize("name", NAMES)
def test_reasons_in_bulk_are_the_reasons_of_recommend(name: str) -> None:
    data, users, items = portrait_world()
    model = make(name, seed=0).fit(data, users, items)
    who = [f"U{u}" for u in range(200, 260)] + [f"U{u}" for u in range(140)] + ["stranger"]
    per_user = {w: model.recommend(w, 4) for w in who}
    pairs = [(w, r.item) for w in who for r in per_user[w]]
    assert len(pairs) > 800
    bulk = model.explain_many([w for w, _ in pairs], [i for _, i in pairs])
    assert bulk == [r.reasons for w in who for r in per_user[w]]
    said = {x for reasons in bulk for x in reasons}
    if name == "personalized":
        assert any(x.startswith("matched tags: ") for x in said) and any(
            x.startswith("similar to") for x in said
        )
    if name == "popularity":
        assert any(x.startswith("popular in ") for x in said)


def test_aggregated_interactions_recommend_as_the_events_do() -> None:
    data, users, items = portrait_world()
    pairs: dict[tuple[int, int], list[float]] = {}
    for u, i, w, t in zip(
        data.users.tolist(), data.items.tolist(), data.weights, data.timestamps, strict=True
    ):
        p = pairs.setdefault((u, i), [0.0, -math.inf, 0])
        p[0], p[1], p[2] = p[0] + w, max(p[1], t), p[2] + 1
    keys = list(pairs)
    summed = Interactions(
        data.user_ids,
        data.item_ids,
        np.array([k[0] for k in keys]),
        np.array([k[1] for k in keys]),
        np.array([pairs[k][0] for k in keys]),
        np.array([pairs[k][1] for k in keys]),
        np.array([pairs[k][2] for k in keys]),
    )
    assert len(summed) < len(data)
    who = [*users.users, "stranger"]
    for name in NAMES:
        a = make(name, seed=0).fit(data, users, items).recommend_all(who, 5)
        b = make(name, seed=0).fit(summed, users, items).recommend_all(who, 5)
        assert np.array_equal(a.items, b.items), name
        assert np.allclose(a.scores, b.scores, equal_nan=True), name
    # popularity counts events, not pairs
    assert np.array_equal(Popularity().fit(data).scores_, Popularity().fit(summed).scores_)
