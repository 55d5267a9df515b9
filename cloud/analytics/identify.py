"""Identification: which customer each online account (site or app) belongs to.

Vehicles are tied to customers by exact key already (the purchase record of the VIN,
``vehicles.customer_id``).
Online accounts are linked by rules tried in order; an account linked by an earlier rule is not looked at by a
later one, and a rule links an account only when exactly one customer matches (an ambiguous match is counted,
not guessed):

1. ``phone``: the same phone number, compared as digits without the country code;
2. ``email``: the same email address, compared in lower case;
3. ``name_birth_city`` (fuzzy): the same name after folding case and spaces, the same birth year and the same
   city. Names alone collide (a population of 100,000 has many a "wang wei"); birth year and city make the
   match specific while tolerating how people type their names.

Linking accounts of the site and the app to the same customer is the network-wide identification: the
customer's portrait then sees everything they did on either.

A merge (``identity_merges``) is the accounts one rule joined to one customer in one run; it owns those
links (``identity_links``). Undoing a merge stamps the merge and its links; the history stays, and an undone
(account, customer) pair is never linked again automatically, since a person said they are not the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

#: rule name -> the join condition between online_accounts a and customers c
RULES: dict[str, str] = {
    "phone": "a.phone IS NOT NULL AND c.phone = a.phone",
    "email": "a.email IS NOT NULL AND c.email = a.email",
    "name_birth_city": (
        "a.name_key IS NOT NULL AND lower(regexp_replace(btrim(c.name), '\\s+', ' ', 'g')) = a.name_key"
        " AND c.birth_year = a.birth_year AND c.city = a.city"
    ),
}


@dataclass(frozen=True, slots=True)
class RuleResult:
    """What one rule did: merges made (one per customer), accounts linked, accounts left ambiguous."""

    rule: str
    merges: int
    linked: int
    ambiguous: int


def link_accounts(conn: psycopg.Connection[tuple[object, ...]]) -> list[RuleResult]:
    """Link every unlinked account that a rule matches to exactly one customer; one merge per customer."""
    results = []
    for rule, condition in RULES.items():
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "CREATE TEMP TABLE matches ON COMMIT DROP AS"
                " SELECT a.account_id, min(c.customer_id) AS customer_id, count(*) AS candidates"
                f" FROM online_accounts a JOIN customers c ON {condition}"
                " WHERE NOT EXISTS (SELECT 1 FROM identity_links l"
                "                   WHERE l.account_id = a.account_id AND l.undone_at IS NULL)"
                "   AND NOT EXISTS (SELECT 1 FROM identity_links u WHERE u.account_id = a.account_id"
                "                   AND u.customer_id = c.customer_id AND u.undone_at IS NOT NULL)"
                " GROUP BY a.account_id"
            )
            row = cur.execute(
                "SELECT count(*) FILTER (WHERE candidates = 1), count(*) FILTER (WHERE candidates > 1)"
                " FROM matches"
            ).fetchone()
            assert row is not None
            linked, ambiguous = int(str(row[0])), int(str(row[1]))
            cur.execute(
                "WITH g AS (INSERT INTO identity_merges (rule, customer_id, links)"
                "  SELECT %(rule)s, customer_id, count(*) FROM matches WHERE candidates = 1"
                "  GROUP BY customer_id ORDER BY customer_id RETURNING merge_id, customer_id)"
                " INSERT INTO identity_links (account_id, customer_id, rule, merge_id)"
                " SELECT m.account_id, m.customer_id, %(rule)s, g.merge_id"
                " FROM matches m JOIN g USING (customer_id) WHERE m.candidates = 1",
                {"rule": rule},
            )
            merges = cur.execute(
                "SELECT count(DISTINCT customer_id) FROM matches WHERE candidates = 1"
            ).fetchone()
            assert merges is not None
        results.append(RuleResult(rule, int(str(merges[0])), linked, ambiguous))
    return results


def undo_merge(conn: psycopg.Connection[tuple[object, ...]], merge_id: int) -> int:
    """Undo a merge: its links stop counting (and are not made again); return how many links it had."""
    with conn.transaction():
        merge = conn.execute(
            "UPDATE identity_merges SET undone_at = now()"
            " WHERE merge_id = %s AND undone_at IS NULL RETURNING 1",
            (merge_id,),
        ).fetchone()
        if merge is None:
            raise ValueError(f"merge {merge_id} does not exist or is already undone")
        return conn.execute(
            "UPDATE identity_links SET undone_at = now() WHERE merge_id = %s AND undone_at IS NULL",
            (merge_id,),
        ).rowcount
