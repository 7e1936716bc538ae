"""Broken output, judged from the answer's text alone: empty or garbled text, a repetition loop,
an answer mostly in the other language, an answer cut off mid-sentence.

Small models fail this way at any temperature (the 135M offline stand-in often; Qwen3-0.6B
sometimes, mostly at the token limit). Each check is a linear pass over the text; none needs the
facts, so they run first.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter

from shop.text import Language

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
_HAS_CONTENT = re.compile(r"[\w\u3400-\u9fff]")
# Where a sentence or clause may end (a cut-off answer ends elsewhere).
SENTENCE_ENDS = "。！？!?.…~～）)」』】\"'”’*"
_EMOJI_OR_SYMBOL = re.compile(r"[\U0001F000-\U0001FFFF\u2600-\u27BF]$")
_CLAUSE = re.compile(r"[^。！？!?.;；,，、\n]+")
_SPACED_CJK = re.compile(r"[\u4e00-\u9fff] [\u4e00-\u9fff]")
_DOUBLED_WORD = re.compile(r"\b([a-z]{2,})\s+\1\b", re.IGNORECASE)
_TRIPLED_CJK = re.compile(r"([\u4e00-\u9fff]{1,3})(?:\s+\1){2,}")

# Thresholds, tuned on the dev half of evals/answer-checks.yaml (docs/design/answer-guard.md).
LOOP_CLAUSE_REPEATS = 3  # the same clause (4+ characters) this many times
REPEAT_HIDDEN_CHARS = 10  # a sentence repeating a clause this long is not shown again
LOOP_MIN_BYTES = 160  # below this, compression says nothing
LOOP_COMPRESSION = 0.30  # compressed / raw size of a looping answer
WRONG_LANGUAGE_SHARE = 0.5  # share of the answer's words in the other language
SPACED_CJK_PAIRS = 3  # "发票 发票抬头 个人": Chinese words separated by spaces
LANGUAGE_MIN_WORDS = 12  # the language is judged once the answer has this many words


class RunningText:
    """An answer's text as it arrives, sentence by sentence: the checks that need what came
    before (a clause said again and again, the language so far, spaced fragments) kept as
    counts, so each sentence costs its own length, not the answer's."""

    def __init__(self, language: Language):
        self.language = language
        self.clauses: Counter[str] = Counter()
        self.chinese = 0
        self.english = 0
        self.spaced_pairs = 0
        self.parts: list[str] = []
        self.repeats = False

    def add(self, part: str) -> str | None:
        """Take one more sentence; the reason the answer is broken so far, or None.
        `repeats` then says whether it says again a clause said before (not to be shown)."""
        self.parts.append(part)
        self.repeats = False
        if _DOUBLED_WORD.search(part) or _TRIPLED_CJK.search(part):
            return "garbled"
        self.spaced_pairs += len(_SPACED_CJK.findall(part))
        if self.spaced_pairs >= SPACED_CJK_PAIRS:
            return "garbled"
        for clause in _CLAUSE.findall(part):
            clause = clause.strip().lower()
            if len(clause) >= 4:
                self.clauses[clause] += 1
                if self.clauses[clause] >= LOOP_CLAUSE_REPEATS:
                    return "loop"
                if self.clauses[clause] > 1 and len(clause) >= REPEAT_HIDDEN_CHARS:
                    self.repeats = True
        self.chinese += len(_CJK.findall(part))
        self.english += len(_LATIN_WORD.findall(part))
        total = self.chinese + self.english
        if total >= LANGUAGE_MIN_WORDS:
            other = self.english if self.language == "zh" else self.chinese
            if other > WRONG_LANGUAGE_SHARE * total:
                return "wrong_language"
        return None

    @property
    def language_settled(self) -> bool:
        """Whether the text so far may be shown as far as its language goes: it has no word of
        the other language yet, or enough words for the language check to have judged it."""
        other = self.english if self.language == "zh" else self.chinese
        return other == 0 or self.chinese + self.english >= LANGUAGE_MIN_WORDS

    def end(self, tail: str) -> str | None:
        """The checks of the whole text, with its unfinished `tail`: a loop that compresses
        like one."""
        raw = ("".join(self.parts) + tail).encode()
        if len(raw) >= LOOP_MIN_BYTES and len(zlib.compress(raw, 1)) < LOOP_COMPRESSION * len(raw):
            return "loop"
        return None


def is_empty(text: str) -> bool:
    return not _HAS_CONTENT.search(text)


def ends_mid_sentence(text: str) -> bool:
    stripped = text.rstrip()
    if not stripped:
        return False
    return stripped[-1] not in SENTENCE_ENDS and not _EMOJI_OR_SYMBOL.search(stripped)


def whole_sentences(text: str) -> str:
    """`text` up to the end of its last complete sentence; "" when no sentence ended (a
    released clause, "从杭州发货后，", is not one)."""
    stripped = text.rstrip()
    while stripped and ends_mid_sentence(stripped):
        stripped = stripped[:-1].rstrip()
    return stripped


def cut_off(text: str, finish_reason: str | None) -> bool:
    """The answer stopped at the token limit mid-sentence. With the finish reason unknown (an
    answer checked on its own, as in the evaluation), the text alone decides."""
    if finish_reason not in ("length", None):
        return False
    return ends_mid_sentence(text)
