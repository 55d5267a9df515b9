"""Scoring a record against its dealer's rules, and the aggregates per consultant and per dealer.

Score: 100 x (the weights of the rules the record kept) / (the weights of all its rules), one decimal. A rule
is broken once or many times (a forbidden phrase in three turns) for the same loss: the score says how many
of the manager's rules the call kept, the violations say everything that happened.

What each kind checks (only the consultant's turns are searched for phrases: a customer saying "I don't
know" is no fault of the consultant's):

- ``required_step``: the first consultant turn holding one of the step's phrases (in the record's language)
  is where the step was taken. None: violation without a position. Found, but not among the consultant's
  first ``within_turns`` turns or starting after ``within_s``: violation at that turn (a step taken late is
  still reported as found). Turns are in start order, so the first match is the earliest one.
- ``forbidden_phrases``: a violation per consultant turn and phrase found.
- ``talk_share``: the consultant's speaking seconds over everyone's outside [min, max]: one violation.
- ``response_delay``: a violation for each consultant turn that follows a customer turn more than ``max_s``
  after that turn ended.
- ``interruptions``: a turn that starts more than ``min_overlap_s`` before the other speaker's previous turn
  ended interrupts it; more than ``max_count`` of them (by whom the rule says): one violation, at the first
  interruption past the limit.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from .model import CallRecord, Inspection, Speaker, Turn, Violation
from .rules import (
    CompiledRule,
    ForbiddenRule,
    InterruptionRule,
    ResponseDelayRule,
    RuleBook,
    RuleSet,
    StepRule,
    TalkShareRule,
)
from .text import PreparedTurn

_CONSULTANT = Speaker.CONSULTANT
_CUSTOMER = Speaker.CUSTOMER


def inspect_record(record: CallRecord, rules: RuleSet) -> Inspection:
    """``record`` scored against ``rules``: its violations in rule order, the steps found, the score."""
    turns = record.turns
    consultant = [i for i, t in enumerate(turns) if t.speaker is _CONSULTANT]
    prepared = {i: PreparedTurn(turns[i].text) for i in consultant}
    violations: list[Violation] = []
    steps: dict[str, int] = {}
    lost = 0.0
    for compiled in rules.rules:
        rule = compiled.rule
        if isinstance(rule, StepRule):
            found = _step(compiled, rule, record, consultant, prepared, steps)
        elif isinstance(rule, ForbiddenRule):
            found = _forbidden(compiled, record, consultant, prepared)
        elif isinstance(rule, TalkShareRule):
            found = _talk_share(compiled.id, rule, turns)
        elif isinstance(rule, ResponseDelayRule):
            found = _response_delay(compiled.id, rule, turns)
        else:
            found = _interruptions(compiled.id, rule, turns)
        if found:
            violations += found
            lost += rule.weight
    score = round(100.0 * (rules.total_weight - lost) / rules.total_weight, 1)
    return Inspection(
        record.record_id, record.dealer_id, record.consultant_id, record.language, score,
        rules.version, rules.hash, tuple(violations), steps,
    )  # fmt: skip


def inspect_all(records: Iterable[CallRecord], book: RuleBook) -> list[Inspection]:
    """Each record scored against its dealer's rule set."""
    return [inspect_record(r, book.for_dealer(r.dealer_id)) for r in records]


def _step(
    compiled: CompiledRule,
    rule: StepRule,
    record: CallRecord,
    consultant: list[int],
    prepared: dict[int, PreparedTurn],
    steps: dict[str, int],
) -> list[Violation]:
    phrases = compiled.phrases[record.language]
    for order, index in enumerate(consultant):
        phrase = phrases.first(prepared[index])
        if phrase is None:
            continue
        steps[compiled.id] = index
        start = record.turns[index].start_s
        late = []
        if rule.within_turns is not None and order >= rule.within_turns:
            late.append(f"consultant turn {order + 1}, expected within the first {rule.within_turns}")
        if rule.within_s is not None and start > rule.within_s:
            late.append(f"at {start:g} s, expected within {rule.within_s:g} s")
        if not late:
            return []
        message = f"{compiled.id} too late ({'; '.join(late)}): {phrase!r}"
        return [Violation(compiled.id, rule.kind, message, index, start)]
    message = f"{compiled.id} missing: {rule.description or 'no phrase of the step was said'}"
    return [Violation(compiled.id, rule.kind, message)]


def _forbidden(
    compiled: CompiledRule, record: CallRecord, consultant: list[int], prepared: dict[int, PreparedTurn]
) -> list[Violation]:
    phrases = compiled.phrases[record.language]
    out = []
    for index in consultant:
        for phrase in phrases.all(prepared[index]):
            start = record.turns[index].start_s
            out.append(Violation(compiled.id, "forbidden_phrases", f"said {phrase!r}", index, start))
    return out


def _talk_share(rule_id: str, rule: TalkShareRule, turns: tuple[Turn, ...]) -> list[Violation]:
    total = mine = 0.0
    for turn in turns:
        length = turn.end_s - turn.start_s
        total += length
        if turn.speaker is _CONSULTANT:
            mine += length
    if total <= 0:
        return []  # no timing (a chat without durations): nothing to judge
    share = mine / total
    if rule.min <= share <= rule.max:
        return []
    message = f"consultant talked {share:.0%} of the time, expected {rule.min:.0%} to {rule.max:.0%}"
    return [Violation(rule_id, rule.kind, message)]


def _response_delay(rule_id: str, rule: ResponseDelayRule, turns: tuple[Turn, ...]) -> list[Violation]:
    out = []
    for index in range(1, len(turns)):
        turn, before = turns[index], turns[index - 1]
        if turn.speaker is _CONSULTANT and before.speaker is _CUSTOMER:
            delay = turn.start_s - before.end_s
            if delay > rule.max_s:
                message = f"answered after {delay:.1f} s, expected within {rule.max_s:g} s"
                out.append(Violation(rule_id, rule.kind, message, index, turn.start_s))
    return out


def _interruptions(rule_id: str, rule: InterruptionRule, turns: tuple[Turn, ...]) -> list[Violation]:
    count = first_over = 0
    for index in range(1, len(turns)):
        turn, before = turns[index], turns[index - 1]
        if turn.speaker is before.speaker or before.end_s - turn.start_s <= rule.min_overlap_s:
            continue
        if rule.by != "any" and turn.speaker.value != rule.by:
            continue
        count += 1
        if count == rule.max_count + 1:
            first_over = index
    if count <= rule.max_count:
        return []
    message = f"{rule.by} interrupted {count} times, at most {rule.max_count} allowed"
    return [Violation(rule_id, rule.kind, message, first_over, turns[first_over].start_s)]


@dataclass(slots=True)
class Aggregate:
    """Records, mean score and violations by rule of one consultant (``consultant_id`` set) or dealer."""

    dealer_id: str
    consultant_id: str | None
    records: int = 0
    mean_score: float = 0.0
    violations: dict[str, int] = field(default_factory=dict)


def aggregate(inspections: Iterable[Inspection]) -> tuple[list[Aggregate], list[Aggregate]]:
    """The aggregates per consultant and per dealer, each sorted by dealer then consultant."""
    totals: dict[tuple[str, str | None], tuple[list[float], Counter[str]]] = defaultdict(
        lambda: ([], Counter())
    )
    for inspection in inspections:
        for key in ((inspection.dealer_id, inspection.consultant_id), (inspection.dealer_id, None)):
            scores, counts = totals[key]
            scores.append(inspection.score)
            counts.update(v.rule for v in inspection.violations)
    consultants: list[Aggregate] = []
    dealers: list[Aggregate] = []
    for (dealer_id, consultant_id), (scores, counts) in sorted(totals.items(), key=lambda kv: str(kv[0])):
        mean = round(sum(scores) / len(scores), 1)
        row = Aggregate(dealer_id, consultant_id, len(scores), mean, dict(sorted(counts.items())))
        (dealers if consultant_id is None else consultants).append(row)
    return consultants, dealers
