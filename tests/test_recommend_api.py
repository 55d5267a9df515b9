"""A customer's recommendations through the API: by portrait and popularity, with reasons, without what they
bought, only with marketing consent, audited, from a model cached between requests."""

from __future__ import annotations

from datetime import timedelta

import psycopg
from fastapi.testclient import TestClient

from cloud.access.keys import create_key
from cloud.api.app import create_app
from cloud.config import CloudSettings
from cloud.privacy.audit import personal_subject
from tests.helpers import count
from tests.test_campaigns import NOON_SHANGHAI, _world


def test_recommendations_route(fresh_database: str, vehicle_prefix: str) -> None:
    customers = _world(fresh_database, vehicle_prefix)
    ev_owner, buyer, no_consent = customers[0], customers[1], customers[3]  # i % 10 == 3: no consent
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO customer_tags (customer_id, tag, score, evidence, config_version)"
            " VALUES (%s, 'ev', 0.9, '{}', 1)",
            (ev_owner,),
        )
        for c in customers[5:40]:
            conn.execute(
                "INSERT INTO conversions (customer_id, item_id, at) VALUES (%s, 'I-TYRES', %s)",
                (c, NOON_SHANGHAI - timedelta(days=2)),
            )
        conn.execute(
            "INSERT INTO conversions (customer_id, item_id, at) VALUES (%s, 'I-TYRES', %s)",
            (buyer, NOON_SHANGHAI - timedelta(days=2)),
        )
        # an online article, bought more than anything: it teaches the models but is no offer to recommend
        conn.execute(
            "INSERT INTO content_items (item_id, kind, title, body, category, tags, target_models,"
            " valid_from, valid_until, cost_per_send, value_per_conversion) VALUES"
            " ('I-ARTICLE', 'article', 'Winter driving', 'read me', 'accessory', '{ev,winter}', '{}',"
            "  NULL, NULL, 0, 0)"
        )
        for c in customers[5:60]:
            conn.execute(
                "INSERT INTO conversions (customer_id, item_id, at) VALUES (%s, 'I-ARTICLE', %s)",
                (c, NOON_SHANGHAI - timedelta(days=2)),
            )
        key = create_key(conn, name="marketing", scopes=["marketing:read"]).key
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(fresh_database, settings=CloudSettings(recommend_cache_s=60))) as api:
        ev = api.get(f"/v1/customers/{ev_owner}/recommendations?k=5", headers=headers)
        assert ev.status_code == 200, ev.text
        body = ev.json()
        assert body["algorithm"] == "personalized"
        top = body["items"][0]
        assert top["item_id"] == "I-CHARGE" and top["title"] == "Home charging"
        assert any("ev" in r for r in top["reasons"]), top
        assert "I-OLD" not in [i["item_id"] for i in body["items"]]  # expired
        popular = api.get(f"/v1/customers/{ev_owner}/recommendations?algorithm=popularity", headers=headers)
        assert popular.json()["items"][0]["item_id"] == "I-TYRES"
        # only the offer kinds campaigns recommend, whatever the algorithm
        for algorithm in ("personalized", "popularity", "itemknn", "als"):
            ranked = api.get(
                f"/v1/customers/{ev_owner}/recommendations?algorithm={algorithm}", headers=headers
            )
            assert "I-ARTICLE" not in [i["item_id"] for i in ranked.json()["items"]], algorithm
        bought = api.get(f"/v1/customers/{buyer}/recommendations?algorithm=popularity", headers=headers)
        assert "I-TYRES" not in [i["item_id"] for i in bought.json()["items"]]
        refused = api.get(f"/v1/customers/{no_consent}/recommendations", headers=headers)
        assert refused.status_code == 404 and refused.json()["code"] == "not_found"
        # the model is fitted once and served from the cache
        again = api.get(f"/v1/customers/{ev_owner}/recommendations?k=5", headers=headers)
        assert again.json()["fitted_at"] == body["fitted_at"]
        bad = api.get(f"/v1/customers/{ev_owner}/recommendations?algorithm=magic", headers=headers)
        assert bad.status_code == 422
    with psycopg.connect(fresh_database, autocommit=True) as conn:
        reads = "SELECT count(*) FROM audit_log WHERE action = 'recommendations.read' AND subject = %s"
        assert count(conn, reads, personal_subject("customer", ev_owner)) == 7  # 3 + the 4 algorithms
