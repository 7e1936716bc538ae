"""Curated answers: a FAQ entry's approved answer sent as the reply, with no model call, when the
shopper's message matches that entry confidently.

A wrong canned answer is worse than a slow right one, so the rule is strict and every part of it
can only say no:
- the shop turned it on (`curated_answers.enabled`) and the entry is a FAQ with an approved
  answer in the reply language;
- no image (a photo changes the question), not small talk (the persona answers that), no
  instructions from the client's system or developer messages (a fixed text cannot follow them),
  and one question, not two ("偏大还是偏小？洗了会缩水吗？": one approved answer covers one);
- the message stands on its own: the first shopper turn, or a later one with no word that
  points back ("it", "that one", "这个", "那…呢"): such a follow-up needs the history, which a
  fixed answer cannot read;
- the message IS one of the questions the shop wrote for the entry (same `question_key`: width,
  case, punctuation, traditional or simplified Chinese aside), or it has at least `min_words`
  words and, searched on the latest message alone, the best entry reaches the shop's `min_relevance` AND
  leads the runner-up (of any kind: a product or policy that matches nearly as well means the
  question may be about that) by `min_margin`;
- and that entry is the first by words AND the first by meaning
  (of every entry, any kind), at least `min_similarity` close. Words and meaning fail in
  different ways (a shared product name; a paraphrase of a sibling question), so agreement is
  what makes a fixed answer safe: on the dev halves of both labelled sets, 64 of 64 sent answers
  were right at 0.93 (0.318 of FAQ-answerable questions), where words alone sent a wrong one
  before reaching 0.12. With retrieval by meaning off (shops.meaning.enabled false), only the
  shop's written questions get a fixed answer.

Thresholds come from scripts/tune_retrieval.py on development data only (see its docstring).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from shop.config import CuratedAnswersConfig
from shop.conversation import Conversation, is_small_talk
from shop.knowledge.entries import KnowledgeEntry
from shop.knowledge.index import ScoredEntry
from shop.text import Language, normalize

# Words that make a later turn lean on an earlier one. Whole words in English; substrings in
# Chinese (no spaces), where they are specific enough not to fire on ordinary questions.
_POINTS_BACK_EN = re.compile(
    r"\b(it|its|it's|that|this|these|those|them|they|one|ones|same|other|another|else|also|"
    r"too|either|instead|then|what about|how about|and)\b")
_POINTS_BACK_ZH = ("这个", "那个", "这款", "那款", "这件", "那件", "这双", "那双", "它", "同款",
                   "另外", "另一", "其他", "也", "还有", "那呢", "呢", "那")


@dataclass(frozen=True)
class CuratedMatch:
    """The entry whose approved answer is the reply, and how confidently it matched."""

    entry_id: str
    title: str
    answer: str
    relevance: float  # inf for a written question
    margin: float


def points_back(text: str) -> bool:
    """Whether a message refers to something said before ("and in grey?", "那这个呢")."""
    normalized = normalize(text)
    return bool(_POINTS_BACK_EN.search(normalized)) or any(
        marker in normalized for marker in _POINTS_BACK_ZH)


# A clause that asks something: it ends with a question mark, or (Chinese, often written without
# one) with a question particle.
_CLAUSES = re.compile(r"[^?？。.!！;；,，\n]+(?:[?？]|(?<=[吗呢么嘛])(?=[。.!！;；,，\n]|$))")


def asks_several(text: str) -> bool:
    """Whether a message asks two questions or more ("偏大还是偏小？洗了会缩水吗？"): one approved
    answer covers one of them, so the model answers such a message."""
    return len(_CLAUSES.findall(normalize(text))) >= 2


def may_use_curated(conversation: Conversation) -> bool:
    """The conversation parts of the rule: no image, no client instructions, not small talk,
    one question, needs no history."""
    latest = conversation.normalized_latest
    if conversation.has_images or conversation.client_instructions or not latest.strip():
        return False
    if is_small_talk(latest) or asks_several(latest):
        return False
    return not conversation.earlier_user_turns or not points_back(latest)


def margin_of(found: list[ScoredEntry]) -> float:
    """How far the best entry leads the runner-up (the whole relevance when there is none)."""
    if not found:
        return 0.0
    return found[0].relevance - (found[1].relevance if len(found) > 1 else 0.0)


def _approved(entry: KnowledgeEntry, language: Language, relevance: float,
              margin: float) -> CuratedMatch | None:
    """`entry`'s curated answer in `language`, if it is a FAQ entry with one."""
    answer = entry.approved_answer.get(language)
    if entry.kind != "faq" or not answer:
        return None
    return CuratedMatch(entry.id, entry.title[language], answer, relevance, margin)


def exact_match(entry: KnowledgeEntry | None, config: CuratedAnswersConfig,
                language: Language) -> CuratedMatch | None:
    """The curated answer for a message that is one of `entry`'s written questions."""
    if not config.enabled or entry is None:
        return None
    return _approved(entry, language, math.inf, math.inf)


def curated_match(found: list[ScoredEntry], config: CuratedAnswersConfig,
                  language: Language, words: int) -> CuratedMatch | None:
    """The curated answer for search results `found` (latest message alone, best first) of a
    message of `words` words."""
    if not config.enabled or not found or words < config.min_words:
        return None
    best = found[0]
    margin = margin_of(found)
    if best.relevance < config.min_relevance or margin < config.min_margin:
        return None
    if best.similarity is None or not (
            best.first_by_words and best.first_by_meaning
            and best.similarity >= config.min_similarity):
        return None
    return _approved(best.entry, language, best.relevance, margin)
