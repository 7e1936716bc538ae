"""The response cache on its own: what makes two questions the same, the bounds (entries, bytes,
TTL, a promotion's end), and invalidation of exactly the answers built from a changed entry."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone

from shop.conversation import Conversation
from shop.knowledge.entries import KnowledgeEntry
from shop.response_cache import ResponseCache

NOW = 1_800_000_000.0


def entry(entry_id: str, text: str = "fact", valid_until: datetime | None = None
          ) -> KnowledgeEntry:
    return KnowledgeEntry(entry_id, entry_id.split("/")[0], {"en": entry_id, "zh": entry_id},
                          {"en": text, "zh": text}, (text,), valid_until=valid_until)


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def cache(**bounds):
    clock, dropped = Clock(), []
    settings = {"max_entries": 100, "max_bytes": 1_000_000, "ttl_s": 60.0, **bounds}
    made = ResponseCache(**settings, clock=clock,
                         on_dropped=lambda shop, reason, n: dropped.append((shop, reason, n)))
    return made, clock, dropped


def key(question: str, facts=(entry("faq/a"),), shop: str = "s", options=("t", 0.2)):
    return ResponseCache.key(shop, "model", question, "zh", facts, options)


def test_the_same_question_in_another_script_width_or_punctuation_is_a_hit():
    made, _, _ = cache()
    made.put(key("請問，包郵嗎？"), "包邮", "stop", [entry("faq/a")])
    assert made.get(key("请问包邮吗")).text == "包邮"
    assert made.get(key("请问 包邮吗!!")).text == "包邮"


def test_another_shop_sampling_or_fact_version_is_a_miss():
    made, _, _ = cache()
    made.put(key("包邮吗"), "包邮", "stop", [entry("faq/a")])
    assert made.get(key("包邮吗", shop="other")) is None
    assert made.get(key("包邮吗", options=("t", 0.9))) is None
    edited = entry("faq/a", text="new fact")  # same id, different content
    assert made.get(key("包邮吗", facts=(edited,))) is None
    assert made.get(key("包邮吗", facts=(entry("faq/a"), entry("promo/b")))) is None


def test_least_recently_used_answers_go_first_when_full_in_entries_or_bytes():
    made, _, dropped = cache(max_entries=2)
    for question in ("one", "two"):
        made.put(key(question), question, "stop", [entry("faq/a")])
    made.get(key("one"))  # "two" is now the least recently used
    made.put(key("three"), "three", "stop", [entry("faq/a")])
    assert made.get(key("two")) is None and made.get(key("one")) is not None
    assert dropped == [("s", "evicted", 1)]

    small, _, _ = cache(max_bytes=5000)
    for i in range(10):
        small.put(key(f"q{i}"), "x" * 1000, "stop", [entry("faq/a")])
    stats = small.stats()
    assert stats.bytes <= 5000 and 0 < stats.entries < 10
    assert not small.put(key("huge"), "x" * 6000, "stop", [entry("faq/a")])


def test_answers_expire_at_the_ttl_or_when_a_promotion_they_used_ends():
    made, clock, dropped = cache(ttl_s=60)
    made.put(key("ttl"), "a", "stop", [entry("faq/a")])
    promo_end = datetime.fromtimestamp(NOW + 10, timezone.utc)
    promo = entry("promo/sale", valid_until=promo_end)
    made.put(key("sale", facts=(promo,)), "b", "stop", [promo])
    clock.now = NOW + 11
    assert made.get(key("sale", facts=(promo,))) is None  # the promotion ended
    assert made.get(key("ttl")) is not None
    clock.now = NOW + 61
    assert made.get(key("ttl")) is None
    assert dropped == [("s", "expired", 1), ("s", "expired", 1)]
    assert made.stats().entries == 0


def test_a_changed_entry_drops_exactly_the_answers_built_from_it():
    made, _, dropped = cache()
    a, b = entry("faq/a"), entry("faq/b")
    made.put(key("uses a", facts=(a,)), "1", "stop", [a])
    made.put(key("uses a and b", facts=(a, b)), "2", "stop", [a, b])
    made.put(key("uses b", facts=(b,)), "3", "stop", [b])
    made.put(key("uses a", facts=(a,), shop="other"), "4", "stop", [a])
    assert made.invalidate("s", {"faq/a"}) == 2
    assert made.get(key("uses a", facts=(a,))) is None
    assert made.get(key("uses a and b", facts=(a, b))) is None
    assert made.get(key("uses b", facts=(b,))).text == "3"
    assert made.get(key("uses a", facts=(a,), shop="other")).text == "4"  # another shop's
    assert dropped == [("s", "source_changed", 2)]
    assert made.invalidate("s", {"faq/a"}) == 0


def test_only_complete_single_turn_grounded_text_answers_are_cached():
    facts = [entry("faq/a")]
    single = Conversation.from_messages([{"role": "user", "content": "包邮吗"}])
    assert ResponseCache.cacheable(single, facts)
    assert not ResponseCache.cacheable(single, [])  # ungrounded
    history = Conversation.from_messages([
        {"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "包邮吗"}])
    assert not ResponseCache.cacheable(history, facts)
    image = Conversation.from_messages([{"role": "user", "content": [
        {"type": "text", "text": "包邮吗"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}])
    assert not ResponseCache.cacheable(image, facts)
    instructed = Conversation.from_messages([{"role": "system", "content": "be formal"},
                                             {"role": "user", "content": "包邮吗"}])
    assert not ResponseCache.cacheable(instructed, facts)
    punctuation_only = Conversation.from_messages([{"role": "user", "content": "？？"}])
    assert not ResponseCache.cacheable(punctuation_only, facts)
    assert ResponseCache.storable("Yes.", "stop", handed_off=False)
    assert not ResponseCache.storable("Yes.", "length", handed_off=False)  # cut short
    assert not ResponseCache.storable("Yes.", "stop", handed_off=True)
    assert not ResponseCache.storable("  ", "stop", handed_off=False)  # nothing said


def test_digest_follows_what_an_entry_says_not_how_it_is_matched():
    a = entry("faq/a")
    assert dataclasses.replace(a, documents=("other words",)).digest == a.digest
    assert dataclasses.replace(a, text={"en": "changed", "zh": "fact"}).digest != a.digest
