"""The shop layer as the chat service sees it: one object per application, two fixed points per
request.

- `Shop.plan(turn)`, before any model: the shop decides the answer: a fixed reply (a hand-off,
  "I need to check that"), a curated answer, an answer from the response cache, or the model's
  input (persona, retrieved facts, the shop's sampling), with the key under which the model's
  answer may be cached.
- `Shop.finish(plan, answer, finish_reason)`, once the answer is complete: the blank-answer rule
  (never an empty reply), the review (a reply that is the no-answer message is a hand-off), the
  cache store, and the hand-off it decided (for the metrics).

The response cache lives here, built from the shops' config, and a knowledge-base reload
invalidates exactly the answers built from entries that changed (`ShopLayer.refresh`).

An application without shops gets `NoShops`, the same interface: its only shop is a plain
pass-through whose plan is the request as sent, with the model's defaults, and whose finish adds
nothing. So the chat service never asks whether shops are configured.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from shop.assistant import Clock, ShopAssistant, ShopPlan, utc_now
from shop.config import ShopsConfig
from shop.directory import ShopDirectory, UnknownShopError
from shop.response_cache import CacheStats, ResponseCache

__all__ = ["Finish", "NoShops", "Plan", "Shop", "ShopLayer", "Turn", "UnknownShopError",
           "shop_layer_for"]


class SamplingDefaults(Protocol):
    """A model's (configs/schema.py) or a shop's (shop/config.py) sampling defaults."""

    temperature: float
    top_p: float
    max_tokens: int


class ShopChooser(Protocol):
    """Who may use which shop: the caller's API key (router/access/api_keys.py)."""

    def shop_for(self, requested: str | None, default: str | None) -> str | None: ...


@dataclass(frozen=True)
class Turn:
    """What the shop layer reads of a validated request."""

    messages: list[dict[str, Any]]  # OpenAI-shaped dicts, images already inlined
    thinking: bool | None  # the request's enable_thinking; None when it did not say
    model: str  # the model that would answer (part of the cache key)
    model_sampling: SamplingDefaults  # the model's defaults, for a plain pass-through
    model_thinking: bool
    # The client's own answer-shaping options (sampling fields, template switches): two requests
    # with the same options get the same answer from the same shop (part of the cache key).
    options: Hashable = ()


@dataclass(frozen=True)
class Plan:
    """How one request is answered."""

    reply: str | None  # a fixed reply: no model is called
    replayed: bool  # the reply is a curated or cached answer, streamed as a model would
    messages: list[dict[str, Any]]  # the model's input (empty with a fixed reply)
    sampling: SamplingDefaults
    enable_thinking: bool
    decision: ShopPlan | None = None  # the shop's decision; None for a plain pass-through
    cache_key: tuple | None = None  # set when the model's answer may be cached
    # Retrieval by meaning was on but the embedder's budget left this message to words alone.
    understood_by_words: bool = False

    @property
    def shop_id(self) -> str | None:
        return self.decision.service.shop if self.decision is not None else None


@dataclass(frozen=True)
class Finish:
    """What the shop adds to a complete answer."""

    substitute: str | None = None  # sent instead of an answer with no text
    service: dict[str, Any] | None = None  # the response's `service` object
    handoff: str | None = None  # a hand-off decided after the model answered (its reason)


class Shop:
    """One shop's two fixed points; shared by all of its requests."""

    def __init__(self, assistant: ShopAssistant, cache: ResponseCache | None):
        self.assistant = assistant
        self.id: str | None = assistant.config.id
        self.image_domains: tuple[str, ...] = tuple(assistant.config.image_domains)
        self._cache = cache

    async def plan(self, turn: Turn) -> Plan:
        """The shop's decision for `turn`; ShopRequestError when the request asks the shop for
        something its config does not allow. The message's vectors (retrieval by meaning) are
        computed off the event loop first; the decision itself is synchronous and quick."""
        meant = await self.assistant.knowledge.prefetch_meaning(
            self.assistant.meaning_queries(turn.messages))
        decided = self.assistant.plan(turn.messages, turn.thinking)
        key = None
        if decided.reply is None and decided.cacheable and self._cache is not None:
            key = ResponseCache.key(self.id, turn.model, decided.question, decided.language,
                                    decided.facts, (turn.options, decided.enable_thinking))
            cached = self._cache.get(key)
            if cached is not None:
                decided, key = decided.from_cache(cached.text), None
            else:
                decided = decided.cache_missed()
        return Plan(decided.reply, decided.service.cache in ("faq", "hit"),
                    decided.messages or [], decided.sampling, decided.enable_thinking,
                    decided, key, understood_by_words=not meant)

    def finish(self, plan: Plan, answer: str, finish_reason: str | None) -> Finish:
        """Once per request, with the whole answer as the model gave it."""
        decided = plan.decision
        substitute = self.assistant.blank_answer_reply(decided, answer)
        shown = answer if substitute is None else answer + substitute
        service = self.assistant.review(decided, shown)
        handed_off = service.handoff is not None
        late_handoff = service.handoff.reason if (
            handed_off and service is not decided.service) else None
        if plan.cache_key is not None and ResponseCache.storable(answer, finish_reason,
                                                                 handed_off):
            self._cache.put(plan.cache_key, answer, finish_reason, decided.facts)
        return Finish(substitute, service.as_dict(), late_handoff)


class PlainPassThrough:
    """The "shop" of an application without shops: the request goes to the model as sent."""

    id: str | None = None
    image_domains: tuple[str, ...] = ()

    async def plan(self, turn: Turn) -> Plan:
        return Plan(None, False, turn.messages, turn.model_sampling, turn.model_thinking)

    def finish(self, plan: Plan, answer: str, finish_reason: str | None) -> Finish:
        return Finish()  # a plain proxy returns what the model said


class ShopLayer:
    """All shops of an application, built once per ingress replica (indexing the knowledge
    bases takes about a second per shop on 2 cores)."""

    def __init__(self, config: ShopsConfig, base_dir: Path,
                 on_cache_dropped: Callable[[str, str, int], None] | None = None,
                 clock: Clock = utc_now, directory: ShopDirectory | None = None):
        """`on_cache_dropped(shop, reason, count)`: cached answers dropped before use.
        `directory`: shops already indexed (tests and tools build them once), else built here."""
        self.config = config
        self.directory = directory or ShopDirectory(config, base_dir, clock)
        settings = config.response_cache
        self.cache = ResponseCache(settings.max_entries, settings.max_bytes, settings.ttl_s,
                                   on_dropped=on_cache_dropped) if settings.enabled else None
        self._shops = {shop_id: Shop(self.directory.get(shop_id), self.cache)
                       for shop_id in self.directory.ids}
        self.reload_check_s: float | None = config.reload_check_s

    def select(self, requested: str | None, chooser: ShopChooser) -> Shop:
        """The shop of a request: the X-Shop-Id header's (`requested`) if the caller may use
        it, else the caller's own or the default one. UnknownShopError for an unknown id; the
        chooser raises its own errors (a shop the key may not use)."""
        if requested is not None and requested not in self._shops:
            raise UnknownShopError(requested)
        chosen = chooser.shop_for(requested, self.config.default)
        shop = self._shops.get(self.config.default if chosen is None else chosen)
        if shop is None:
            raise UnknownShopError(chosen or "")
        return shop

    def listing(self) -> list[dict]:
        """GET /v1/shops: ids, names and languages, nothing else."""
        return self.directory.listing()

    def refresh(self) -> list[str]:
        """Reload changed knowledge bases (blocking I/O and indexing: run off the loop) and drop
        the cached answers built from entries that changed; the shops reloaded."""
        changed = self.directory.refresh()
        if self.cache is not None:
            for shop_id, entry_ids in changed.items():
                self.cache.invalidate(shop_id, entry_ids)
        return list(changed)

    def cache_stats(self) -> CacheStats | None:
        return self.cache.stats() if self.cache is not None else None


class NoShops:
    """The shop layer of an application without shops: every request is a plain pass-through."""

    config = None
    cache = None
    reload_check_s: float | None = None  # nothing to reload

    def __init__(self) -> None:
        self._plain = PlainPassThrough()

    def select(self, requested: str | None, chooser: ShopChooser) -> PlainPassThrough:
        if requested is not None:
            raise UnknownShopError(requested)
        return self._plain

    def listing(self) -> list[dict]:
        return []

    def refresh(self) -> list[str]:
        return []

    def cache_stats(self) -> CacheStats | None:
        return None


def shop_layer_for(config: ShopsConfig | None, base_dir: Path,
                   on_cache_dropped: Callable[[str, str, int], None] | None = None,
                   clock: Clock = utc_now) -> ShopLayer | NoShops:
    """The shop layer of an application: its shops, or the plain pass-through without any."""
    if config is None:
        return NoShops()
    return ShopLayer(config, base_dir, on_cache_dropped, clock)
