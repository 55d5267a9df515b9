"""Rule sets per dealer, from TOML: the shipped ``rules.toml``, an optional file over it, and per-dealer
overrides in ``[dealers.<id>]`` sections.

A rule is a table under ``[rules.<id>]`` with a ``kind`` (``required_step``, ``forbidden_phrases``,
``talk_share``, ``response_delay``, ``interruptions``) and a ``weight`` for the score. A file given with
``--rules`` is laid over the shipped one: a rule of the same id takes the fields it gives (a different
``kind`` replaces the rule whole), a new id adds a rule. A dealer's section does the same over the merged
defaults (``[dealers.D1.rules.response_delay] max_s = 8``) and may ``disable`` rules by id. Every table is
checked whole at load: an unknown field or kind, a bad bound, an unknown rule id in ``disable`` or, when the
dealers are known, an unknown dealer is a ``RulesError`` naming the file and the entry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from cloud.settings_file import load_toml
from edge_agent.protocol import format_validation_error

from . import RulesError
from .model import Language
from .text import PhraseSet


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Weighted(_Strict):
    weight: float = Field(ge=0, le=1000)
    description: str = ""


class _Phrases(_Weighted):
    zh: list[str] = []
    en: list[str] = []

    @model_validator(mode="after")
    def _some_phrase(self) -> Self:
        if not self.zh and not self.en:
            raise ValueError("give at least one phrase in zh or en")
        for phrase in (*self.zh, *self.en):
            PhraseSet.compile([phrase])  # a phrase with nothing to match is refused here, not at inspection
        return self


class StepRule(_Phrases):
    """A step the consultant must take, found by phrases, optionally early enough."""

    kind: Literal["required_step"]
    #: among the consultant's first N turns
    within_turns: int | None = Field(default=None, ge=1)
    #: the turn starts within N seconds of the conversation's start
    within_s: float | None = Field(default=None, gt=0)


class ForbiddenRule(_Phrases):
    """Phrases a consultant must not say."""

    kind: Literal["forbidden_phrases"]


class TalkShareRule(_Weighted):
    """Bounds on the consultant's share of the speaking time."""

    kind: Literal["talk_share"]
    min: float = Field(ge=0, le=1)
    max: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class ResponseDelayRule(_Weighted):
    """The longest wait from a customer's turn's end to the consultant's next turn's start."""

    kind: Literal["response_delay"]
    max_s: float = Field(gt=0)


class InterruptionRule(_Weighted):
    """How many times a speaker may start before the other's turn ended."""

    kind: Literal["interruptions"]
    max_count: int = Field(ge=0)
    #: overlaps up to this long are not interruptions (speaker diarisation jitters by a few tenths)
    min_overlap_s: float = Field(default=0.0, ge=0)
    #: whose interruptions count
    by: Literal["consultant", "customer", "any"] = "consultant"


AnyRule = StepRule | ForbiddenRule | TalkShareRule | ResponseDelayRule | InterruptionRule
#: the rule model of each kind (looked up by hand rather than through a discriminated union, so that an error
#: names the entry as written, ``rules.greeting.within_s``, without the tag pydantic would insert)
KINDS: dict[str, type[AnyRule]] = {
    "required_step": StepRule,
    "forbidden_phrases": ForbiddenRule,
    "talk_share": TalkShareRule,
    "response_delay": ResponseDelayRule,
    "interruptions": InterruptionRule,
}


class _DealerSection(_Strict):
    rules: dict[str, dict[str, Any]] = {}
    disable: list[str] = []


class _RulesFile(_Strict):
    version: str | None = None
    rules: dict[str, dict[str, Any]] = {}
    dealers: dict[str, _DealerSection] = {}


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A validated rule with its phrases compiled per language (empty for the timing rules)."""

    id: str
    rule: AnyRule
    phrases: Mapping[Language, PhraseSet]


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The rules one dealer's records are inspected with; ``hash`` identifies their exact content."""

    dealer_id: str | None
    version: str
    hash: str
    rules: tuple[CompiledRule, ...]
    total_weight: float


@dataclass(frozen=True, slots=True)
class RuleBook:
    """The default rule set and the dealers' own."""

    default: RuleSet
    dealers: Mapping[str, RuleSet]

    def for_dealer(self, dealer_id: str) -> RuleSet:
        """The rules for ``dealer_id``'s records (the default when it has no section)."""
        return self.dealers.get(dealer_id, self.default)


def load_rules(path: Path | None = None, *, known_dealers: Collection[str] | None = None) -> RuleBook:
    """The shipped rules with ``path`` laid over them; ``RulesError`` naming the file and entry when refused.
    With ``known_dealers``, a dealer section for any other dealer is refused."""
    files = [("rules.toml (shipped)", _read(None))]
    if path is not None:
        files.append((str(path), _read(path)))
    version = "unversioned"
    rules: dict[str, dict[str, Any]] = {}
    dealers: dict[str, tuple[str, _DealerSection]] = {}
    for where, data in files:
        version = data.version or version
        rules = _merged(rules, data.rules)
        for dealer_id, section in data.dealers.items():
            if known_dealers is not None and dealer_id not in known_dealers:
                raise RulesError(f"{where}: dealers.{dealer_id}: unknown dealer (not among the dealers)")
            if dealer_id in dealers:  # the later file's section over the earlier one's
                old = dealers[dealer_id][1]
                section = _DealerSection(
                    rules=_merged(old.rules, section.rules), disable=[*old.disable, *section.disable]
                )
            dealers[dealer_id] = (where, section)
    where = files[-1][0]
    default = _rule_set(None, version, rules, where, "rules")
    own = {}
    for dealer_id, (at, section) in dealers.items():
        entry = f"dealers.{dealer_id}"
        for rule_id in section.disable:
            if rule_id not in rules and rule_id not in section.rules:
                raise RulesError(f"{at}: {entry}.disable: no rule {rule_id!r}")
        merged = {k: v for k, v in _merged(rules, section.rules).items() if k not in section.disable}
        own[dealer_id] = _rule_set(dealer_id, version, merged, at, f"{entry}.rules")
    return RuleBook(default, own)


def _read(path: Path | None) -> _RulesFile:
    return load_toml(path, package="cloud.qa", filename="rules.toml", schema=_RulesFile, error=RulesError)


def _merged(base: dict[str, dict[str, Any]], over: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = dict(base)
    for rule_id, fields in over.items():
        old = out.get(rule_id, {})
        same_kind = "kind" not in fields or fields["kind"] == old.get("kind")
        out[rule_id] = {**old, **fields} if same_kind else dict(fields)
    return out


def _rule_set(
    dealer_id: str | None, version: str, raw: dict[str, dict[str, Any]], where: str, entry: str
) -> RuleSet:
    compiled = []
    for rule_id, fields in raw.items():
        kind = fields.get("kind")
        model = KINDS.get(kind) if isinstance(kind, str) else None
        if model is None:
            what = "missing" if kind is None else f"unknown kind {kind!r}"
            raise RulesError(f"{where}: {entry}.{rule_id}.kind: {what}; one of {', '.join(KINDS)}")
        try:
            rule: AnyRule = model.model_validate(fields)
        except ValidationError as exc:
            raise RulesError(f"{where}: {format_validation_error(exc, f'{entry}.{rule_id}')}") from exc
        phrases: dict[Language, PhraseSet] = {}
        if isinstance(rule, StepRule | ForbiddenRule):
            phrases = {Language.ZH: PhraseSet.compile(rule.zh), Language.EN: PhraseSet.compile(rule.en)}
        compiled.append(CompiledRule(rule_id, rule, phrases))
    total = sum(c.rule.weight for c in compiled)
    if total <= 0:
        raise RulesError(f"{where}: {entry}: the weights add up to 0, so no score can be given")
    # the hash covers what the rules do (not how the files were laid out): two loads agree when they agree
    canonical = json.dumps(
        {"version": version, "rules": {c.id: c.rule.model_dump() for c in compiled}}, sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()[:16]
    return RuleSet(dealer_id, version, digest, tuple(compiled), total)
