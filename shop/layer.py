"""The shop layer as the chat service sees it: one object per application, two fixed points per
request.

- `Shop.plan(turn)`, before any model: the shop decides the answer: a fixed reply (a hand-off,
  "I need to check that"), a curated answer, an answer from the response cache, or the model's
  input (persona, retrieved facts, the shop's sampling), with the key under which the model's
  answer may be cached.
- `Shop.finish(plan, answer, finish_reason, gate)`, once the answer is complete: the answer
  guard's verdict (shop/guard/: a model answer with an invented number, a promise or a loop is
  replaced), the blank-answer rule (never an empty reply), the review (a reply that is the
  no-answer message is a hand-off), the cache store (never a failed answer), and what it
  decided (for the metrics and the log).
- `Shop.gate(plan)`, for a streamed model answer the guard checks: the release gate that lets
  the stream show each sentence once it has passed, so a shopper never sees a failed one.

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

from shop.assistant import Clock, GuardResult, ShopAssistant, ShopPlan, utc_now
from shop.config import ShopsConfig
from shop.conversation import Conversation
from shop.directory import ShopDirectory, UnknownShopError
from shop.guard.broken import whole_sentences
from shop.guard.verdict import ReleaseGate
from shop.orders.backend import BreakerListener, OrderBackend
from shop.orders.desk import OrderAnswer, OrderDesk
from shop.orders.identity import Shopper, ShopperTokenError, ShopperVerifier
from shop.response_cache import CacheStats, ResponseCache

__all__ = ["Finish", "NoShops", "Plan", "Shop", "ShopLayer", "ShopperTokenError", "Turn",
           "UnknownShopError", "shop_layer_for"]


# A demo sign-in's token lives this long (the chat page signs in again after it).
DEMO_TOKEN_TTL_S = 3600


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
    shopper: Shopper | None = None  # verified by the request's X-Shopper-Token; None: anonymous
    # "tools" or "response_format": the client (a backend key) shapes the answer itself, so
    # only the model answers (persona, facts and hand-off rules still apply). None: plain chat.
    own_tools: str | None = None
    # The answer must be a call or JSON whatever the message (a required or named tool_choice,
    # a JSON response_format): a hand-off is then reported in `service`, not said instead.
    answer_forced: bool = False


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
    own_tools: str | None = None  # Turn.own_tools: the answer is the client's to use

    @property
    def shop_id(self) -> str | None:
        return self.decision.service.shop if self.decision is not None else None


@dataclass(frozen=True)
class Finish:
    """What the shop adds to a complete answer."""

    # The answer to show instead of the model's (a JSON body's content); None: the model's.
    text: str | None = None
    # What a stream sends after the text it released; None: nothing more.
    tail: str | None = None
    service: dict[str, Any] | None = None  # the response's `service` object
    handoff: str | None = None  # a hand-off decided after the model answered (its reason)
    guard: GuardResult | None = None  # the answer guard's verdict (None: not checked)


class Shop:
    """One shop's two fixed points; shared by all of its requests."""

    def __init__(self, assistant: ShopAssistant, cache: ResponseCache | None,
                 verifier: ShopperVerifier | None = None, desk: OrderDesk | None = None):
        self.assistant = assistant
        self.id: str | None = assistant.config.id
        self.image_domains: tuple[str, ...] = tuple(assistant.config.image_domains)
        self._cache = cache
        self.verifier = verifier
        self.desk = desk

    def shopper(self, token: str | None) -> Shopper | None:
        """The verified shopper of a request's X-Shopper-Token; None without a token.
        ShopperTokenError (a 401) for a token that does not verify, and for any token sent to
        a shop that verifies none (the integration is wrong: say so, not answer anonymously)."""
        if token is None:
            return None
        if self.verifier is None:
            raise ShopperTokenError(
                "shopper_token_invalid",
                f"The shop '{self.id}' does not verify shoppers (no identity in its config); "
                "send no X-Shopper-Token.")
        return self.verifier.verify(token)

    def demo_token(self, shopper_id: str) -> tuple[str, int] | None:
        """(a token, its lifetime in s) for one of the shop's demo shoppers (the demo sign-in);
        None when `shopper_id` is not one of them (or the shop has none)."""
        identity = self.assistant.config.identity
        if self.verifier is None or shopper_id not in identity.demo_shoppers:
            return None
        ttl_s = min(DEMO_TOKEN_TTL_S, identity.max_ttl_s)
        return self.verifier.mint(shopper_id, ttl_s), ttl_s

    async def plan(self, turn: Turn) -> Plan:
        """The shop's decision for `turn`; ShopRequestError when the request asks the shop for
        something its config does not allow. An order question is looked up in the shop's
        order system first; the message's vectors (retrieval by meaning) are computed off the
        event loop; the decision itself is synchronous and quick."""
        if turn.own_tools is not None:
            # The backend's own tools (its agent, its order look-ups) or its own answer format:
            # the model answers, with the shop's persona and facts, unless a hand-off rule
            # takes the message first; nothing curated, cached or looked up here.
            meant = await self.assistant.knowledge.prefetch_meaning(
                self.assistant.meaning_queries(turn.messages, curated=False))
            decided = self.assistant.plan(turn.messages, turn.thinking, own_tools=turn.own_tools,
                                          answer_forced=turn.answer_forced)
            return Plan(decided.reply, False, decided.messages or [], decided.sampling,
                        decided.enable_thinking, decided, None, understood_by_words=not meant,
                        own_tools=turn.own_tools)
        order = await self._order_answer(turn)
        queries = [] if order is not None and order.reply is not None else \
            self.assistant.meaning_queries(turn.messages)
        meant = await self.assistant.knowledge.prefetch_meaning(queries)
        decided = self.assistant.plan(turn.messages, turn.thinking, order)
        if decided.order is not None:
            # One shopper's order data: never cached, streamed as a model would be.
            return Plan(decided.reply, decided.reply is not None and decided.order.reply is not
                        None, decided.messages or [], decided.sampling,
                        decided.enable_thinking, decided, None,
                        understood_by_words=bool(queries) and not meant)
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

    async def _order_answer(self, turn: Turn) -> OrderAnswer | None:
        """The order desk's answer when the latest message is an order question (sign in first
        when the shopper is anonymous); None otherwise."""
        if self.desk is None:
            return None
        conversation = Conversation.from_messages(turn.messages)
        question = self.assistant.order_question(conversation)
        if question is None:
            return None
        shop = self.assistant.config
        language = conversation.reply_language(shop.languages, shop.default_language)
        if turn.shopper is None:
            return self.desk.signed_out(language)
        return await self.desk.answer(question, turn.shopper, language, conversation.latest,
                                      conversation.last_reply)

    def gate(self, plan: Plan) -> ReleaseGate | None:
        """The release gate of a streamed answer: a model answer of a shop whose guard replaces
        failed answers. None when the stream may show text as it comes (a fixed reply, a
        curated or cached answer, a guard that only flags or is off)."""
        decided = plan.decision
        if decided.reply is not None or self.assistant.guard.mode != "replace" or \
                plan.own_tools is not None:
            return None
        return self.assistant.guard.gate(decided.language, self.assistant.fact_sheet(decided),
                                         decided.question)

    def finish(self, plan: Plan, answer: str, finish_reason: str | None,
               gate: ReleaseGate | None = None) -> Finish:
        """Once per request, with the whole answer as the model gave it; `gate` is the stream's
        (`Shop.gate`), which has released part of it already."""
        decided = plan.decision
        if plan.own_tools is not None:
            # Tool calls or JSON for the backend to use: not checked as text for a shopper
            # (a replacement would break the call or the schema), never replaced.
            return Finish(service=self.assistant.review(decided, answer).as_dict())
        checked = self._checked(decided, answer, finish_reason, gate)
        if checked is not None and checked.replaced:
            return self._replaced(plan, checked)
        substitute = self.assistant.blank_answer_reply(decided, answer)
        # A passed answer is shown as the gate released it: without the sentences it said
        # twice or the shopper's question said back (a stream never showed them either).
        passed = checked.gate.released if checked is not None and \
            checked.verdict == "pass" and checked.gate.released.strip() != answer.strip() \
            else None
        shown = passed or (answer if substitute is None else answer + substitute)
        service = self.assistant.review(decided, shown)
        handed_off = service.handoff is not None
        late_handoff = service.handoff.reason if (
            handed_off and service is not decided.service) else None
        if plan.cache_key is not None and (checked is None or checked.verdict == "pass") and \
                ResponseCache.storable(answer, finish_reason, handed_off):
            self._cache.put(plan.cache_key, shown, finish_reason, decided.facts)
        result = None if checked is None else checked.result
        return Finish(substitute or passed, substitute, service.as_dict(result), late_handoff,
                      result)

    def _checked(self, decided: ShopPlan, answer: str, finish_reason: str | None,
                 gate: ReleaseGate | None) -> Checked | None:
        """The guard's verdict on a model answer; None when it was not checked (a fixed reply,
        the guard off, an answer with no text, which the blank-answer rule replaces)."""
        guard = self.assistant.guard
        if decided.reply is not None or not guard.enabled or not answer.strip():
            return None
        if gate is None:
            gate = guard.check(answer, finish_reason, decided.language,
                               self.assistant.fact_sheet(decided), decided.question)
        return Checked(gate, guard.mode)

    def _replaced(self, plan: Plan, checked: Checked) -> Finish:
        """A failed answer, replaced: by the best FAQ entry's approved answer when the match is
        confident, else by the no-answer message (a `no_answer` hand-off). What the stream
        already released stays (it passed); a JSON body keeps it before the no-answer message
        only, since a FAQ answer stands on its own. An answer cut at the token limit after
        sentences that passed just ends at the last of them."""
        decided = plan.decision
        released = checked.gate.released
        # What a JSON body keeps of it: its whole sentences (a stream may have shown a clause
        # of the next one; a body has no reason to end on "，").
        kept = whole_sentences(released)
        if checked.gate.failure.reason == "cut_off" and kept:
            # Cut at the token limit after sentences that passed: the answer ends at the last
            # of them, as written, with its sources (nothing needs replacing).
            return Finish(kept, None, decided.service.as_dict(checked.result), None,
                          checked.result)
        replacement, service = self.assistant.guard_replacement(decided)
        tail = f"\n\n{replacement}" if released.strip() else replacement
        text = replacement if service.handoff is None or not kept \
            else f"{kept}\n\n{replacement}"
        late_handoff = service.handoff.reason if service.handoff is not None else None
        return Finish(text, tail, service.as_dict(checked.result), late_handoff, checked.result)


@dataclass(frozen=True)
class Checked:
    """A model answer the guard read: the gate after it, and the shop's guard mode."""

    gate: ReleaseGate
    mode: str

    @property
    def verdict(self) -> str:
        if self.gate.failure is None:
            return "pass"
        return "replaced" if self.mode == "replace" else "flagged"

    @property
    def replaced(self) -> bool:
        return self.verdict == "replaced"

    @property
    def result(self) -> GuardResult:
        return GuardResult(self.verdict, self.gate.failure)


class PlainPassThrough:
    """The "shop" of an application without shops: the request goes to the model as sent."""

    id: str | None = None
    image_domains: tuple[str, ...] = ()

    def shopper(self, token: str | None) -> None:
        return None  # no shop, no shoppers: a plain proxy ignores the header

    def demo_token(self, shopper_id: str) -> None:
        return None

    async def plan(self, turn: Turn) -> Plan:
        return Plan(None, False, turn.messages, turn.model_sampling, turn.model_thinking)

    def gate(self, plan: Plan) -> None:
        return None  # a plain proxy streams what the model says

    def finish(self, plan: Plan, answer: str, finish_reason: str | None,
               gate: ReleaseGate | None = None) -> Finish:
        return Finish()  # a plain proxy returns what the model said


class ShopLayer:
    """All shops of an application, built once per ingress replica (indexing the knowledge
    bases takes about a second per shop on 2 cores)."""

    def __init__(self, config: ShopsConfig, base_dir: Path,
                 on_cache_dropped: Callable[[str, str, int], None] | None = None,
                 clock: Clock = utc_now, directory: ShopDirectory | None = None,
                 on_order_breaker: BreakerListener | None = None):
        """`on_cache_dropped(shop, reason, count)`: cached answers dropped before use.
        `on_order_breaker(shop, state)`: a shop's order-system breaker changed state.
        `directory`: shops already indexed (tests and tools build them once), else built here."""
        self.config = config
        self.directory = directory or ShopDirectory(config, base_dir, clock)
        settings = config.response_cache
        self.cache = ResponseCache(settings.max_entries, settings.max_bytes, settings.ttl_s,
                                   on_dropped=on_cache_dropped) if settings.enabled else None
        self._shops = {}
        for shop_id in self.directory.ids:
            assistant = self.directory.get(shop_id)
            shop = assistant.config
            verifier = None if shop.identity is None else \
                ShopperVerifier(shop_id, shop.identity, base_dir)
            desk = None if shop.orders is None else OrderDesk(
                shop.orders, OrderBackend(shop_id, shop.orders.backend, on_order_breaker))
            self._shops[shop_id] = Shop(assistant, self.cache, verifier, desk)
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
                   clock: Clock = utc_now,
                   on_order_breaker: BreakerListener | None = None) -> ShopLayer | NoShops:
    """The shop layer of an application: its shops, or the plain pass-through without any."""
    if config is None:
        return NoShops()
    return ShopLayer(config, base_dir, on_cache_dropped, clock,
                     on_order_breaker=on_order_breaker)
