"""The response cache: a generated answer kept and sent again, without a model call, to the next
shopper who asks the same question of the same shop.

What counts as the same question: the same shop, model, sampling and reply language, the same
`question_key` of the message (width, case, punctuation, whitespace, traditional or simplified
Chinese aside), and the same facts given to the model: the key holds each fact's id AND digest
(KnowledgeEntry.digest). So an edited entry, a promotion that starts (now retrieved) or ends (no
longer retrieved) gives a different key at once, even before the reload below frees the stale
answers' memory. An answer also expires at its TTL or when one of its facts stops being valid
(a promotion's end), whichever comes first.

What is cached (`cacheable`): single-turn text (no history, no image, no client instructions),
grounded (the model had facts), and, once answered (`storable`), a complete answer
(finish_reason "stop"), not empty, that is not a hand-off. Anything else is a `bypass`.

Invalidation by source: every answer records the entry ids it was built from, and a knowledge
base reload drops exactly the answers that used an entry the reload changed or removed.

Bounded in entries and in bytes (least recently used first out). One cache per ingress replica:
with N replicas a hot question is generated at most N times per TTL instead of once, which at a
peak (thousands of requests per minute for tens of hot questions) is a rounding error, and it
needs no network hop or shared store that could fail (docs/design/fast-answers.md).

Thread-safe: knowledge reloads run in a worker thread beside the event loop.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

from shop.conversation import Conversation
from shop.knowledge.entries import KnowledgeEntry
from shop.text import question_key

# Bytes an entry costs beyond its texts (key tuple, dict slot, the record itself): a rough
# figure, so the byte bound errs towards holding fewer answers.
OVERHEAD_BYTES = 512


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    finish_reason: str
    source_ids: tuple[str, ...]
    expires_at: float  # clock time
    size: int


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int


class ResponseCache:
    """LRU of generated answers, bounded in entries and bytes, with a TTL."""

    def __init__(self, max_entries: int, max_bytes: int, ttl_s: float,
                 clock: Callable[[], float] = time.time,
                 on_dropped: Callable[[str, str, int], None] | None = None):
        """`on_dropped(shop, reason, count)` is told of answers dropped before use: reason
        `source_changed`, `expired` or `evicted` (for the metrics)."""
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._on_dropped = on_dropped or (lambda shop, reason, count: None)
        self._lock = threading.Lock()
        self._answers: OrderedDict[tuple, CachedAnswer] = OrderedDict()
        self._by_source: dict[tuple[str, str], set[tuple]] = {}  # (shop, entry id) -> keys
        self._bytes = 0

    @staticmethod
    def cacheable(conversation: Conversation, facts: Iterable[KnowledgeEntry]) -> bool:
        """Whether a model answer to this conversation may be cached (see the module doc)."""
        return (not conversation.earlier_user_turns and not conversation.assistant_turns
                and not conversation.has_images and not conversation.client_instructions
                and bool(question_key(conversation.normalized_latest)) and any(True for _ in facts))

    @staticmethod
    def storable(text: str, finish_reason: str | None, handed_off: bool) -> bool:
        """A model answer worth sending again: complete, not empty, not a hand-off."""
        return finish_reason == "stop" and bool(text.strip()) and not handed_off

    @staticmethod
    def key(shop: str, model: str, question: str, language: str,
            facts: Iterable[KnowledgeEntry], options: Hashable) -> tuple:
        """`options`: everything else that shapes the answer (sampling, template switches)."""
        return (shop, model, question_key(question), language,
                tuple((fact.id, fact.digest) for fact in facts), options)

    def get(self, key: tuple) -> CachedAnswer | None:
        with self._lock:
            answer = self._answers.get(key)
            if answer is None:
                return None
            if answer.expires_at <= self._clock():
                self._remove(key)
                expired = True
            else:
                self._answers.move_to_end(key)
                expired = False
        if expired:
            self._on_dropped(key[0], "expired", 1)
            return None
        return answer

    def put(self, key: tuple, text: str, finish_reason: str,
            facts: Iterable[KnowledgeEntry]) -> bool:
        """Keep an answer; False when it is larger than the whole cache may hold."""
        facts = tuple(facts)
        now = self._clock()
        expires = now + self.ttl_s
        for fact in facts:
            if fact.valid_until is not None:
                expires = min(expires, fact.valid_until.timestamp())
        size = OVERHEAD_BYTES + len(text.encode()) + len(repr(key).encode())
        if size > self.max_bytes or expires <= now:
            return False
        answer = CachedAnswer(text, finish_reason, tuple(f.id for f in facts), expires, size)
        evicted: dict[str, int] = {}
        with self._lock:
            if key in self._answers:
                self._remove(key)
            self._answers[key] = answer
            self._bytes += size
            for source in answer.source_ids:
                self._by_source.setdefault((key[0], source), set()).add(key)
            while len(self._answers) > self.max_entries or self._bytes > self.max_bytes:
                oldest = next(iter(self._answers))
                self._remove(oldest)
                evicted[oldest[0]] = evicted.get(oldest[0], 0) + 1
        for shop, count in evicted.items():
            self._on_dropped(shop, "evicted", count)
        return True

    def invalidate(self, shop: str, entry_ids: Iterable[str]) -> int:
        """Drop the shop's answers built from any of `entry_ids`; how many were dropped."""
        with self._lock:
            keys = set()
            for entry_id in entry_ids:
                keys |= self._by_source.get((shop, entry_id), set())
            for key in keys:
                self._remove(key)
        if keys:
            self._on_dropped(shop, "source_changed", len(keys))
        return len(keys)

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(len(self._answers), self._bytes)

    def _remove(self, key: tuple) -> None:
        answer = self._answers.pop(key)
        self._bytes -= answer.size
        for source in answer.source_ids:
            keys = self._by_source.get((key[0], source))
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_source[(key[0], source)]

