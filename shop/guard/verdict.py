"""The answer guard: is a model answer supported by what the model was given?

Checks, cheapest and most certain first (docs/design/answer-guard.md):
1. broken output from the text alone (shop/guard/broken.py): empty, garbled, a loop, the other
   language, cut off mid-sentence at the token limit;
2. every number-bearing claim (shop/guard/claims.py) against the facts, the conversation and the
   persona (shop/guard/facts.py);
3. promises the shop never makes (guarantees, exceptions, compensation, codes), unless the facts
   say the same words;
4. an offer (a benefit, something free, a members' perk) in words found nowhere in what the
   model was given: an invented service or rule.

Not checked: a policy turned into its negation ("colour swaps aren't possible"). Matching a
negated sentence to the fact it is about by shared words caught 3 of 11 such answers on the dev
half and failed 4 faithful ones; see the design note.

An answer is read sentence by sentence (`ReleaseGate`), so a stream can show each sentence once
it has passed, and the whole answer (JSON) is the same gate fed at once: both paths give the same
verdict for the same text.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from shop.config import GuardConfig
from shop.guard import broken
from shop.guard.claims import extract_claims
from shop.guard.facts import HARD_ENDS, FactSheet, Words, sheet_of, split_sentences
from shop.text import Language, NormalizedText, normalize

# Promises a shop assistant never makes on its own, whatever the shop (shop config adds more).
BUILT_IN_PROMISES = {
    "zh": (r"保证|担保|承诺|包您|一定(?:会|能|可以)|肯定(?:会|能|可以)|绝对|百分之百|"
           r"(?:不会|没)有任何(?:风险|问题)|无论如何|不管怎样|照样|"
           r"特别(?:为|给|帮)您|特批|破例|例外|特殊处理|额外(?:送|赠|补|给|返)|送您|赠送|补偿|"
           r"赔偿|赔您|全额退款|无条件|优惠码|折扣码|红包|返现|私下|下次(?:给|送)"),
    "en": (r"guarantee|promise|i assure|definitely (?:will|arrive|be|get)|for sure|"
           r"make an exception|as an exception|just this once|this one time|special(?:ly)? "
           r"(?:approve|arrange)|extra (?:gift|discount|coupon)|free gift|compensat|"
           r"full refund|no questions asked|(?:coupon|discount|promo) code|use (?:the )?code|"
           r"voucher|cash ?back|on the house|regardless of|no matter what|anyway,? (?:i|we)|"
           r"(?:totally|completely|perfectly|absolutely|100%) safe|no risk|zero risk|"
           r"i'll (?:cover|waive|refund|replace|send you a new)"),
}
# An offer or a rule: the sentences in which an invented service shows (a benefit, something free,
# a members' perk). Only these are read for words found nowhere in what the model was given.
_OFFER = re.compile(
    r"提供|享受|享有|赠|送|免费|会员|积分|返|补贴|终身|半价|服务|福利|"
    r"\b(?:offer|offers|provide|provides|member|members|earn|earns|free|credit|points?|reward|"
    r"program|programme|scheme|service|pickups?|insurance|perk|bonus|lifetime)\b")
# "I can't confirm", "我这边无法确认": the assistant saying what it does not know is not a claim.
_UNSURE = re.compile(
    r"无法确认|不确定|没有(?:相关|这方面的|确切)?信息|暂时没有|不清楚|帮您(?:转|核实|确认)|转人工|"
    r"\bi (?:can't|cannot|don't|do not) (?:confirm|know|have|say|arrange|check)|"
    r"\bnot sure\b|\bno information\b")
# Unsupported offer: at least this many content words found nowhere in what the model was
# given (tuned on the dev half).
UNSUPPORTED_MIN_WORDS = 4
_NUMERALS = re.compile(r"[\d零〇一二两三四五六七八九十百千万]|^(?:one|two|three|four|five|six|seven|"
                       r"eight|nine|ten|eleven|twelv|thirt|fourt|fift|sixt|sevent|eight|ninet|"
                       r"twenti|thirti|forti|hundr|thousand)")
# Words of any answer, which say nothing about the shop (English stems).
_GENERIC_EN = frozenset(
    "that like onli also just they'r we'll you'll it' that' there' unfortun sure realli "
    "alway usual normal current exact specif whether which while where when then".split())


_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}|[a-z]{4,}")


def _unseen_pairs(normalized: str, sheet: FactSheet) -> int:
    """An upper bound of `new_words` without segmenting: Chinese character pairs and English
    words of four letters or more that the facts do not contain (a new word has at least one).
    Segmenting costs most of the check; most sentences skip it here."""
    unseen = 0
    for run in _CJK_RUN.findall(normalized):
        if run.isascii():
            unseen += run not in sheet.text
        else:
            unseen += sum(run[i:i + 2] not in sheet.text for i in range(len(run) - 1))
    return unseen


def new_words(words: set[str], sheet: FactSheet) -> list[str]:
    """The content words of a sentence found nowhere in what the model was given: no numbers,
    Chinese words of two characters or more none of whose character pairs the facts contain,
    English stems of four letters or more."""
    found = []
    for word in words - sheet.words:
        if _NUMERALS.search(word):
            continue
        if word.isascii():
            if len(word) >= 4 and word not in _GENERIC_EN and word not in sheet.text:
                found.append(word)
        elif len(word) >= 2 and not any(word[i:i + 2] in sheet.text
                                        for i in range(len(word) - 1)):
            found.append(word)
    return found


REASONS = ("empty", "garbled", "loop", "wrong_language", "cut_off", "unsupported_number",
           "promise", "unsupported_offer")


@dataclass(frozen=True)
class Failure:
    """Why an answer failed, and the part of it that did (logged: nothing else of it is)."""

    reason: str  # one of REASONS
    claim: str


class AnswerGuard:
    """One shop's guard: its mode, its promise patterns, what its persona says."""

    def __init__(self, config: GuardConfig, words: Words, persona_texts: Iterable[str]):
        self.mode = config.mode
        self._words = words
        self._persona = tuple(persona_texts)
        # Both languages' patterns, whatever the answer's language (a Chinese answer may
        # promise in English words).
        self._promises = re.compile("|".join(
            f"(?:{p})" for p in (*BUILT_IN_PROMISES.values(), *config.promise_patterns.zh,
                                 *config.promise_patterns.en)))

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def facts(self, fact_texts: Iterable[str], conversation_texts: Iterable[str]) -> FactSheet:
        """What an answer may say: the facts given, the shopper's and assistant's turns, the
        persona and the shop's fixed messages."""
        return sheet_of((*fact_texts, *conversation_texts, *self._persona), self._words)

    def gate(self, language: Language, sheet: FactSheet, question: str = "") -> ReleaseGate:
        """A gate for one answer; `question`, the shopper's message, is not shown back."""
        return ReleaseGate(self, language, sheet, question)

    def check(self, answer: str, finish_reason: str | None, language: Language,
              sheet: FactSheet, question: str = "") -> ReleaseGate:
        """The whole answer at once (a JSON response, an evaluation): the gate after it."""
        gate = self.gate(language, sheet, question)
        gate.feed(answer)
        gate.end(finish_reason)
        return gate

    # --- the checks ------------------------------------------------------------------------

    def check_sentence(self, sentence: str, normalized: str, sheet: FactSheet
                       ) -> Failure | None:
        """Claims, promises and offers of one sentence (`normalized`: its normalised form)."""
        for claim in extract_claims(normalized):
            if not sheet.supports(claim):
                return Failure("unsupported_number", claim.text)
        for match in self._promises.finditer(normalized):
            if match.group(0) not in sheet.text:
                return Failure("promise", sentence.strip())
        if _OFFER.search(normalized) and not _UNSURE.search(normalized) and \
                _unseen_pairs(normalized, sheet) >= UNSUPPORTED_MIN_WORDS and \
                len(new_words(set(self._words(normalized)), sheet)) >= UNSUPPORTED_MIN_WORDS:
            return Failure("unsupported_offer", sentence.strip())
        return None


_NOT_WORD = re.compile(r"[^\w]|_")
ECHO_MIN_CHARS = 4  # a shorter question said back ("吗？", "ok?") is not an echo
REPEAT_MIN_CHARS = 6  # a part this long inside what was already shown is a repeat
_SENTENCE_BREAK = re.compile(rf"[{HARD_ENDS}，、：]|[.,:]\s")
# A sentence longer than this is released up to its last clause mark (a Chinese comma, or an
# English one followed by a space: "1,099" is one number). Not at an enumeration comma (、): a
# list's items are not clauses, and a list that loops ("羊毛、山羊绒、羊毛、…") would show its
# first items before the third repeat fails it.
CLAUSE_RELEASE_CHARS = 24
_CLAUSE_END = re.compile(r"(?<=[，：])|(?<=[,:])(?= )")


class ReleaseGate:
    """One answer's text as it arrives: `feed` returns what may be shown now (the complete
    sentences that passed), `end` what may be shown at the end. After a failure nothing more
    is released; `failure` says why and `released` holds what was shown before it.

    Words of the other language are not shown before the answer has enough words for its
    language to be judged (broken.LANGUAGE_MIN_WORDS, about a sentence): an answer in the other
    language would show its first clauses before it fails. The sentences that passed wait
    until then (or the end of a shorter answer); an answer in its language alone is not held."""

    def __init__(self, guard: AnswerGuard, language: Language, sheet: FactSheet,
                 question: str = ""):
        self._guard = guard
        self._question = _core(normalize(question))
        self._sheet = sheet
        self._pending = ""
        self._shown: list[str] = []
        self._held: list[str] = []  # passed, not shown until the language is settled
        self._running = broken.RunningText(language)  # every sentence, shown or not
        self._said: Counter[str] = Counter()  # sentence -> times said
        self._space = ""  # whitespace between sentences, held for the next one shown
        self._shown_core = ""  # what was shown, letters only: a part inside it is a repeat
        self.failure: Failure | None = None

    @property
    def released(self) -> str:
        return "".join(self._shown)

    def feed(self, text: str) -> str:
        if self.failure is not None or not text:
            return ""
        self._pending += text
        if not _SENTENCE_BREAK.search(self._pending, max(0, len(self._pending) - len(text) - 1)):
            return ""  # no sentence ended in it (most tokens): nothing to split
        # Every part but the last ends a sentence; the last one only with a mark that cannot
        # continue it (an English full stop may still become "3.5").
        parts = split_sentences(self._pending)
        if parts[-1] and parts[-1][-1] in HARD_ENDS:
            complete, self._pending = parts, ""
        else:
            complete, self._pending = parts[:-1], parts[-1]
            # A long sentence goes a clause at a time, so the shopper is not kept waiting for
            # its end (and a sentence that never ends is read before the token limit).
            if len(self._pending) > CLAUSE_RELEASE_CHARS:
                clauses = _CLAUSE_END.split(self._pending)
                complete.extend(clauses[:-1])
                self._pending = clauses[-1]
        return self._release(complete)

    def end(self, finish_reason: str | None) -> str:
        """The rest of the answer once the model has finished (`finish_reason` as it gave it)."""
        if self.failure is not None:
            return ""
        whole = "".join(self._shown + self._held) + self._pending
        if broken.is_empty(whole):
            self.failure = Failure("empty", "")
            return ""
        if broken.cut_off(whole, finish_reason):
            tail = self._pending.strip() or whole.rstrip()[-20:]
            self.failure = Failure("cut_off", tail)
            return self._show_held()  # they passed: the answer ends at the last of them
        if (reason := self._running.end(self._pending)) is not None:
            self.failure = Failure(reason, "")
            return ""
        tail, self._pending = [self._pending] if self._pending.strip() else [], ""
        return self._release(tail, at_end=True)

    def _release(self, parts: list[str], at_end: bool = False) -> str:
        shown: list[str] = []  # shown by this call: held parts once the language is settled
        for part in parts:
            # Still normalised once stripped: the claims read it without normalising again.
            key = NormalizedText(normalize(part).strip())
            if not key:
                self._space += part  # goes out with the next sentence shown, if any
                continue
            reason = self._running.add(part)
            self._said[key] += 1
            if reason is None and self._said[key] >= broken.LOOP_CLAUSE_REPEATS:
                reason = "loop"
            failure = Failure(reason, "") if reason is not None else None
            core = _core(key)
            if failure is None and (self._said[key] > 1 or self._running.repeats or (
                    len(core) >= REPEAT_MIN_CHARS and core in self._shown_core)):
                continue  # says again what was said: not shown (a third time is a loop)
            if failure is None and self._echoes(core, key):
                continue
            failure = failure or self._guard.check_sentence(part, key, self._sheet)
            if failure is not None:
                self.failure = failure
                break  # what is still held is never shown
            self._held.append(self._space + part)
            self._space = ""
            self._shown_core += core + "|"
            if self._running.language_settled:
                shown.append(self._show_held())
        if at_end and self.failure is None:
            shown.append(self._show_held())
        return "".join(shown)

    def _show_held(self) -> str:
        shown, self._held = self._held, []
        self._shown.extend(shown)
        return "".join(shown)

    def _echoes(self, core: str, key: str) -> bool:
        """A question that is the shopper's own message, or part of it, said back to them
        (small models often start so): not shown, and not a failure."""
        return key[-1] in "?？" and len(core) >= ECHO_MIN_CHARS and core in self._question


def _core(text: str) -> str:
    """Letters, digits and Chinese characters only: what an echo is compared on."""
    return _NOT_WORD.sub("", text)



