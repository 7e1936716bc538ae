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
_TRIPLED_CJK = re.compile(r"([\u4e00-\u9fff]{1,3})(?:\s*\1){2,}")

# Thresholds, tuned on the dev half of evals/answer-checks.yaml (docs/design/answer-guard.md).
LOOP_CLAUSE_REPEATS = 3  # the same clause (4+ characters) this many times
LOOP_MIN_BYTES = 160  # below this, compression says nothing
LOOP_COMPRESSION = 0.30  # compressed / raw size of a looping answer
WRONG_LANGUAGE_SHARE = 0.5  # share of the answer's words in the other language
SPACED_CJK_PAIRS = 3  # "发票 发票抬头 个人": Chinese words separated by spaces


def is_empty(text: str) -> bool:
    return not _HAS_CONTENT.search(text)


def loops(text: str) -> bool:
    """The same clause again and again, or a text that compresses like a loop does."""
    clauses = Counter(c.strip().lower() for c in _CLAUSE.findall(text) if len(c.strip()) >= 4)
    if clauses and clauses.most_common(1)[0][1] >= LOOP_CLAUSE_REPEATS:
        return True
    raw = text.encode()
    return len(raw) >= LOOP_MIN_BYTES and len(zlib.compress(raw, 1)) < LOOP_COMPRESSION * len(raw)


def other_language_share(text: str, language: Language) -> float:
    """The share of the answer's words (a Chinese character or an English word each) in the
    language it should not be in."""
    chinese = len(_CJK.findall(text))
    english = len(_LATIN_WORD.findall(text))
    total = chinese + english
    if total == 0:
        return 0.0
    return (english if language == "zh" else chinese) / total


def word_count(text: str) -> int:
    """Chinese characters and English words."""
    return len(_CJK.findall(text)) + len(_LATIN_WORD.findall(text))


def wrong_language(text: str, language: Language) -> bool:
    return other_language_share(text, language) > WRONG_LANGUAGE_SHARE


def garbled(text: str) -> bool:
    """Words stuttered ("is is", "开 开 开") or Chinese split into spaced fragments."""
    if _DOUBLED_WORD.search(text) or _TRIPLED_CJK.search(text):
        return True
    return len(_SPACED_CJK.findall(text)) >= SPACED_CJK_PAIRS


def ends_mid_sentence(text: str) -> bool:
    stripped = text.rstrip()
    if not stripped:
        return False
    return stripped[-1] not in SENTENCE_ENDS and not _EMOJI_OR_SYMBOL.search(stripped)


def cut_off(text: str, finish_reason: str | None) -> bool:
    """The answer stopped at the token limit mid-sentence. With the finish reason unknown (an
    answer checked on its own, as in the evaluation), the text alone decides."""
    if finish_reason not in ("length", None):
        return False
    return ends_mid_sentence(text)
