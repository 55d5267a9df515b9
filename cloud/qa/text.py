"""Phrase matching in Chinese and English transcripts, precompiled once per rule set.

How a phrase matches a turn (the choice, and why):

- An English phrase (no CJK characters) matches a whole-word sequence: the turn's text is lower-cased and cut
  into word tokens (``[a-z0-9]+`` with apostrophes), so "hi" matches "Hi, I'm Anna" and not "this". Tested as
  a substring of the space-joined tokens padded with spaces, which is one C-level ``in`` per phrase and
  exactly a token-sequence match. Latin words inside Chinese text ("SUV", "OK") are tokens the same way —
  jieba, too, keeps a run of ASCII letters and digits as one token.
- A Chinese phrase of two or more characters matches as a case-insensitive substring of the turn with its
  whitespace removed. Chinese has no spaces, and jieba cuts the same words differently by context
  (dictionary mode cuts "预约试驾" into 预约/试/驾, while "试驾" alone is one word), so a token-sequence match
  would miss what a manager plainly means; a multi-character phrase rarely sits inside an unrelated word.
- A one-character Chinese phrase (滚 "get lost") must be a whole jieba token, because as a substring it
  would fire inside ordinary words (滚动 "scroll"). jieba runs only on a turn where such a character occurs,
  and its dictionary is loaded once, on first use.

In other words a Chinese phrase matches on the jieba token sequence or, when it has two or more characters,
as a substring; the substring test comes first because it is the cheap one.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .model import Language

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_LETTER = re.compile(r"[A-Za-z]")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")

#: a record is Chinese when CJK characters are at least this share of its letters; one Chinese character
#: carries about as much as an English word of ~5 letters, so 0.3 is already mostly Chinese
ZH_SHARE = 0.3

_jieba_lock = threading.Lock()
_jieba_cut: Callable[[str], list[str]] | None = None


def detect_language(texts: Iterable[str]) -> Language:
    """Chinese when CJK characters make up at least ``ZH_SHARE`` of the letters, else English."""
    cjk = latin = 0
    for text in texts:
        cjk += len(_CJK.findall(text))
        latin += len(_LATIN_LETTER.findall(text))
    return Language.ZH if cjk and cjk >= ZH_SHARE * (cjk + latin) else Language.EN


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds a CJK ideograph."""
    return _CJK.search(text) is not None


def words(text: str) -> list[str]:
    """The lower-cased word tokens of ``text`` (Latin letters and digits; CJK characters are not words)."""
    return _WORD.findall(text.lower())


def segment(text: str) -> list[str]:
    """``text`` cut into words by jieba (dictionary mode, no HMM: deterministic and about twice as fast);
    whitespace and punctuation tokens are dropped."""
    global _jieba_cut
    if _jieba_cut is None:
        with _jieba_lock:
            if _jieba_cut is None:
                import jieba

                # jieba logs "Building prefix dict..." to stderr on its first use: not our output
                logging.getLogger("jieba").setLevel(logging.WARNING)
                jieba.setLogLevel(logging.WARNING)
                tokenizer = jieba.Tokenizer()
                tokenizer.initialize()
                _jieba_cut = lambda s: tokenizer.lcut(s, HMM=False)  # noqa: E731
    return [t for t in _jieba_cut(text.lower()) if t.strip() and (t.isalnum() or has_cjk(t))]


class PreparedTurn:
    """A turn's text in the forms the matchers need, computed once per turn and shared by every rule."""

    __slots__ = ("_tokens", "compact", "text", "words")

    def __init__(self, text: str) -> None:
        lower = text.lower()
        self.text = text
        self.compact = "".join(lower.split())
        self.words = " " + " ".join(_WORD.findall(lower)) + " "
        self._tokens: frozenset[str] | None = None

    def tokens(self) -> frozenset[str]:
        """The jieba tokens (computed on first use: most turns never need them)."""
        if self._tokens is None:
            self._tokens = frozenset(segment(self.text))
        return self._tokens


@dataclass(frozen=True, slots=True)
class PhraseSet:
    """Phrases compiled for matching: English as padded word sequences, Chinese as compact substrings, and
    single Chinese characters that must be whole jieba tokens."""

    phrases: tuple[str, ...]
    _word_keys: tuple[tuple[str, str], ...]
    _substrings: tuple[tuple[str, str], ...]
    _single_chars: tuple[tuple[str, str], ...]

    @classmethod
    def compile(cls, phrases: Sequence[str]) -> PhraseSet:
        """Compile ``phrases``; an empty phrase (nothing left after normalising) is a ``ValueError``."""
        word_keys: list[tuple[str, str]] = []
        substrings: list[tuple[str, str]] = []
        singles: list[tuple[str, str]] = []
        for phrase in phrases:
            if has_cjk(phrase):
                compact = "".join(phrase.lower().split())
                (singles if len(compact) == 1 else substrings).append((compact, phrase))
            else:
                tokens = words(phrase)
                if not tokens:
                    raise ValueError(f"phrase {phrase!r} has no words to match")
                word_keys.append((" " + " ".join(tokens) + " ", phrase))
        return cls(tuple(phrases), tuple(word_keys), tuple(substrings), tuple(singles))

    def first(self, turn: PreparedTurn) -> str | None:
        """The first phrase (in the order given) found in ``turn``, or None."""
        for key, phrase in self._word_keys:
            if key in turn.words:
                return phrase
        for key, phrase in self._substrings:
            if key in turn.compact:
                return phrase
        for key, phrase in self._single_chars:
            if key in turn.compact and key in turn.tokens():
                return phrase
        return None

    def all(self, turn: PreparedTurn) -> list[str]:
        """Every phrase found in ``turn``, in the order given."""
        found = [p for key, p in self._word_keys if key in turn.words]
        found += [p for key, p in self._substrings if key in turn.compact]
        found += [p for key, p in self._single_chars if key in turn.compact and key in turn.tokens()]
        return found
