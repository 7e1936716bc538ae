"""One shop's assistant: from a conversation to a plan, either a fixed reply sent without a model
(a hand-off, or "I will check" when the knowledge base has nothing relevant), or the messages to
send to the model, grounded in the retrieved facts, with the `service` object that tells the
shop's chat system what happened.

Order of decisions, cheapest and most certain first:
1. hand-off rules on the latest message (shop/handoff.py): answered at once, no model call;
2. a curated answer (shop/curated.py): the latest message alone matches one FAQ entry
   confidently, and its approved answer is the reply, no model call (`service.cache = "faq"`);
3. retrieval on the latest message plus, with less weight, the shopper's previous one;
4. no entry relevant enough, and the message is neither small talk nor about an image: the
   no-answer message (a `no_answer` hand-off), no model call;
5. otherwise the model answers from the persona and the facts; when they do not answer the
   question it is told to reply with the no-answer message, and `review` turns such a reply
   into a `no_answer` hand-off (lexical relevance alone cannot tell an answerable colloquial
   question from an unanswerable one: scripts/tune_retrieval.py). A model answer with no text
   is replaced by the no-answer message (`blank_answer_reply`), and so handed off too.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from shop.config import ShopConfig, ShopSampling
from shop.conversation import Conversation, is_small_talk
from shop.curated import CuratedMatch, curated_match, exact_match, may_use_curated
from shop.guard.facts import FactSheet
from shop.guard.verdict import AnswerGuard, Failure
from shop.handoff import HandoffDecision, HandoffReason, HandoffRules
from shop.knowledge.base import KnowledgeBase
from shop.knowledge.entries import KnowledgeEntry
from shop.knowledge.index import ScoredEntry, WeightedQuery
from shop.no_answer import NoAnswerMessages
from shop.orders.desk import OrderAnswer
from shop.orders.intent import OrderQuestion, recognise
from shop.prompt import build_messages
from shop.response_cache import ResponseCache
from shop.text import Language

Clock = Callable[[], datetime]
# Entries after the first are given to the model when they reach this share of the shop's
# relevance threshold: near misses help the model with "and the other one?" at little risk.
SECONDARY_FACT_RATIO = 0.5


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class ShopRequestError(ValueError):
    """The request asks the shop for something its config does not allow (a 400)."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.message = message
        self.param = param


@dataclass(frozen=True)
class Source:
    id: str
    title: str


@dataclass(frozen=True)
class ServiceInfo:
    """The response's `service` object: what the shop's chat system acts on."""

    shop: str
    sources: tuple[Source, ...] = ()
    handoff: HandoffDecision | None = None
    cache: str = "bypass"
    # An order question's look-up (shop/orders/desk.py: found, ambiguous, listed, not_found,
    # no_orders, signed_out, unavailable); None for any other message.
    order: str | None = None

    def as_dict(self, guard: GuardResult | None = None) -> dict[str, Any]:
        return {
            "shop": self.shop,
            "sources": [{"id": s.id, "title": s.title} for s in self.sources],
            "handoff": None if self.handoff is None
            else {"reason": self.handoff.reason, "message": self.handoff.message},
            "cache": self.cache,
            "guard": None if guard is None else guard.as_dict(),
            "order": self.order,
        }


@dataclass(frozen=True)
class GuardResult:
    """The answer guard's verdict on a model answer (`service.guard`): pass, replaced (the
    shopper got the replacement) or flagged (sent as written: the shop's guard only flags)."""

    verdict: str
    failure: Failure | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict,
                "reasons": [] if self.failure is None else [self.failure.reason]}


@dataclass(frozen=True)
class ShopPlan:
    """What to do with one request."""

    service: ServiceInfo
    language: Language
    reply: str | None  # a fixed reply: no model is called
    messages: list[dict[str, Any]] | None  # otherwise, the model's input
    sampling: ShopSampling
    enable_thinking: bool
    retrieval_s: float  # time spent searching the knowledge base
    knowledge_version: str
    retrieved: tuple[ScoredEntry, ...] = field(default=())  # best candidates, for evaluation

    curated: CuratedMatch | None = None  # the FAQ entry whose approved answer is the reply
    facts: tuple[KnowledgeEntry, ...] = ()  # given to the model
    question: str = ""  # the shopper's latest message
    said: tuple[str, ...] = ()  # every text of the conversation (what an answer may repeat)
    cacheable: bool = False  # a model answer to it may be kept (shop/response_cache.py)
    # The order desk's answer to an order question: the plan then holds one shopper's order
    # data (never cached, never logged).
    order: OrderAnswer | None = None

    def from_cache(self, text: str) -> ShopPlan:
        """This plan answered with a cached answer: a fixed reply, `service.cache` "hit"."""
        return dataclasses.replace(self, reply=text, messages=None,
                                   service=dataclasses.replace(self.service, cache="hit"))

    def cache_missed(self) -> ShopPlan:
        return dataclasses.replace(
            self, service=dataclasses.replace(self.service, cache="miss"))

    @property
    def no_relevant_entry(self) -> bool:
        return self.service.handoff is not None and self.service.handoff.reason == "no_answer"


def fixed_texts(config: ShopConfig) -> tuple[str, ...]:
    """What the shop itself says in every conversation, which an answer may repeat: its name,
    the assistant's names, its fixed messages. Not the never-promise list: it names what must
    not be said."""
    persona, messages = config.persona, config.messages
    return (config.name, *persona.assistant_name.by_language().values(),
            *messages.no_answer.by_language().values(), *messages.handoff.by_language().values())


class ShopAssistant:
    """The assistant of one shop; stateless per request, shared by all of its requests."""

    def __init__(self, config: ShopConfig, knowledge: KnowledgeBase, clock: Clock = utc_now):
        self.config = config
        self.knowledge = knowledge
        self._clock = clock
        self.no_answer = NoAnswerMessages(
            (config.messages.no_answer.en, config.messages.no_answer.zh))
        self._rules = HandoffRules(config.handoff, self.no_answer)
        self._names = (config.persona.assistant_name.en, config.persona.assistant_name.zh)
        self.guard = AnswerGuard(config.guard, knowledge.tokenizer.words, fixed_texts(config))

    def order_question(self, conversation: Conversation) -> OrderQuestion | None:
        """The order question the latest message asks (shop/orders/intent.py), when the shop
        looks orders up and no hand-off rule takes the message first; else None."""
        if self.config.orders is None:
            return None
        if self._rules.reason_for(conversation.normalized_latest,
                                  list(conversation.assistant_turns)) is not None:
            return None
        return recognise(conversation.latest, conversation.last_reply)

    def plan(self, messages: list[dict[str, Any]], thinking: bool | None = None,
             order: OrderAnswer | None = None, own_tools: str | None = None,
             answer_forced: bool = False) -> ShopPlan:
        """Decide how to answer `messages` (OpenAI-shaped dicts). `thinking` is the request's
        `enable_thinking`, None when it did not say; `order` the order desk's answer when the
        latest message is an order question (`order_question`). The steps are the module
        doc's; an order question is answered after the hand-off rules, before anything else.
        `own_tools` ("tools", "response_format"): the client shapes the answer itself, so after
        the hand-off rules the model answers with the facts found, whatever they are (no
        curated answer, no no-answer message: the client's tools may cover the question). With
        `answer_forced` (a required or named call, JSON) a hand-off rule's decision goes in
        `service.handoff` beside the model's answer in the client's shape: its text instead
        would break the call or the schema the client's code parses."""
        shop = self.config
        if thinking and not shop.thinking.client_may_enable:
            raise ShopRequestError(
                f"The shop '{shop.id}' does not allow thinking mode; leave "
                "chat_template_kwargs.enable_thinking unset or false.",
                param="chat_template_kwargs")
        conversation = Conversation.from_messages(messages)
        language = conversation.reply_language(shop.languages, shop.default_language)
        enable_thinking = shop.thinking.default if thinking is None else thinking
        latest = conversation.normalized_latest  # every rule below reads this one form

        reason = self._rules.reason_for(latest, list(conversation.assistant_turns))
        if reason is not None:
            text = shop.messages.handoff.get(language)
            if not answer_forced:
                return self._fixed(reason, text, language, enable_thinking,
                                   version=self.knowledge.version)
            shaped = self._model_plan(conversation, language, enable_thinking, own_tools)
            return dataclasses.replace(shaped, service=dataclasses.replace(
                shaped.service, handoff=HandoffDecision(reason, text)))
        if order is not None:
            return self._order_plan(order, conversation, language, enable_thinking)
        if own_tools is not None:
            return self._model_plan(conversation, language, enable_thinking, own_tools)

        started = time.perf_counter()
        now = self._clock()
        match, version, found = self._curated(conversation, language, now)
        if match is not None:
            return ShopPlan(
                ServiceInfo(shop.id, (Source(match.entry_id, match.title),), cache="faq"),
                language, match.answer, None, shop.sampling, enable_thinking,
                time.perf_counter() - started, version, tuple(found), curated=match)
        if found is None:
            version, found = self._search(conversation, now)
        retrieval_s = time.perf_counter() - started

        small_talk = is_small_talk(latest, self._names)
        facts = self._facts(found, small_talk)
        if not facts and not conversation.has_images and not small_talk:
            return self._fixed("no_answer", shop.messages.no_answer.get(language), language,
                               enable_thinking, retrieval_s, version, found)
        sources = tuple(Source(e.id, e.title[language]) for e in facts)
        return ShopPlan(
            ServiceInfo(shop.id, sources), language, None,
            build_messages(shop, conversation, facts, language), shop.sampling,
            enable_thinking, retrieval_s, version, tuple(found), facts=tuple(facts),
            question=latest, said=conversation.texts,
            cacheable=ResponseCache.cacheable(conversation, facts))

    def _model_plan(self, conversation: Conversation, language: Language, enable_thinking: bool,
                    own_tools: str) -> ShopPlan:
        """The model with the shop's persona and the relevant facts found (maybe none), for a
        client that brings its own tools or answer format; `service.cache` says why nothing
        curated or cached answered ("bypass_tools", "bypass_response_format")."""
        started = time.perf_counter()
        version, found = self._search(conversation, self._clock())
        facts = self._facts(found, is_small_talk(conversation.normalized_latest, self._names))
        return ShopPlan(
            ServiceInfo(self.config.id, tuple(Source(e.id, e.title[language]) for e in facts),
                        cache=f"bypass_{own_tools}"),
            language, None, build_messages(self.config, conversation, facts, language),
            self.config.sampling, enable_thinking, time.perf_counter() - started, version,
            tuple(found), facts=tuple(facts), question=conversation.normalized_latest,
            said=conversation.texts)

    def _order_plan(self, order: OrderAnswer, conversation: Conversation, language: Language,
                    enable_thinking: bool) -> ShopPlan:
        """An order question: the order desk's fixed reply (a template, sign in, not found,
        which order), the hand-off when the order system failed, or the model with the order
        as its first fact beside the knowledge base's relevant entries. Never cacheable."""
        shop = self.config
        if order.lookup == "unavailable":
            plan = self._fixed("order_system_unavailable", shop.messages.handoff.get(language),
                               language, enable_thinking, version=self.knowledge.version)
            return dataclasses.replace(plan, order=order, service=dataclasses.replace(
                plan.service, order=order.lookup))
        sources = () if order.order is None else (
            Source(order.source_id, f"订单 {order.order.id}" if language == "zh"
                   else f"Order {order.order.id}"),)
        if order.reply is not None:
            return ShopPlan(ServiceInfo(shop.id, sources, order=order.lookup), language,
                            order.reply, None, shop.sampling, enable_thinking, 0.0,
                            self.knowledge.version, order=order)
        started = time.perf_counter()
        version, found = self._search(conversation, self._clock())
        facts = [order.entry, *(hit.entry for hit in found
                                if self._relevant(hit, SECONDARY_FACT_RATIO))]
        sources += tuple(Source(e.id, e.title[language]) for e in facts[1:])
        return ShopPlan(
            ServiceInfo(shop.id, sources, order=order.lookup), language, None,
            build_messages(shop, conversation, facts, language), shop.sampling,
            enable_thinking, time.perf_counter() - started, version, tuple(found),
            facts=tuple(facts), question=conversation.normalized_latest,
            said=conversation.texts, order=order)

    def _facts(self, found: list[ScoredEntry], small_talk: bool) -> list[KnowledgeEntry]:
        """The entries found that go to the model: none unless the best one is relevant (the
        message is grounded), then every one close enough to the threshold. Small talk needs no
        facts: a greeting that happens to share a character with an entry must not put that
        entry in front of the model."""
        if small_talk or not found or not self._relevant(found[0]):
            return []
        return [hit.entry for hit in found if self._relevant(hit, SECONDARY_FACT_RATIO)]

    def _relevant(self, hit: ScoredEntry, ratio: float = 1.0) -> bool:
        """Whether an entry found is relevant: it covers enough of the message's words, or (with
        meaning on) it is close enough in meaning."""
        retrieval = self.config.retrieval
        return hit.relevance >= retrieval.min_relevance * ratio or (
            hit.similarity is not None and hit.similarity >= retrieval.min_similarity)

    def meaning_queries(self, messages: list[dict[str, Any]], curated: bool = True) -> list[str]:
        """The texts `plan` compares by meaning (the latest message, the previous shopper turn):
        what to prefetch off the event loop. Empty when the shop compares words only, and when
        `plan` will not search: a hand-off, or a written FAQ question answered as written (the
        hot questions of a peak must not wait for an embedding they do not use)."""
        if self.knowledge.embedder is None:
            return []
        conversation = Conversation.from_messages(messages)
        latest = conversation.normalized_latest
        if self._rules.reason_for(latest, list(conversation.assistant_turns)) is not None:
            return []
        answers = self.config.curated_answers
        if curated and answers.enabled and may_use_curated(conversation):
            _, written = self.knowledge.exact_question(latest, self._clock())
            language = conversation.reply_language(self.config.languages,
                                                   self.config.default_language)
            if exact_match(written, answers, language) is not None:
                return []
        texts = [latest]
        if self._uses_history(conversation):
            texts.append(conversation.earlier_user_turns[-1])
        return [t for t in texts if t.strip()]

    def _fixed(self, reason: HandoffReason, text: str, language: Language,
               enable_thinking: bool, retrieval_s: float = 0.0, version: str = "",
               found: Iterable[ScoredEntry] = ()) -> ShopPlan:
        """A hand-off answered with `text`, no model call."""
        return ShopPlan(ServiceInfo(self.config.id, (), HandoffDecision(reason, text)),
                        language, text, None, self.config.sampling, enable_thinking,
                        retrieval_s, version, tuple(found))

    def _curated(self, conversation: Conversation, language: Language, now: datetime
                 ) -> tuple[CuratedMatch | None, str, list[ScoredEntry] | None]:
        """(the curated answer, the version searched, the search results the model may be
        given): results are None when they cannot serve as the model's facts (not searched, or
        searched without the previous turn a follow-up needs)."""
        shop = self.config
        if not (shop.curated_answers.enabled and may_use_curated(conversation)):
            return None, "", None
        latest = conversation.normalized_latest
        version, written = self.knowledge.exact_question(latest, now)
        match = exact_match(written, shop.curated_answers, language)
        found: list[ScoredEntry] = []
        if match is None:
            # At least 2 results, so the lead over the runner-up is known.
            version, found = self.knowledge.search(
                [WeightedQuery(latest)], now, max(2, shop.retrieval.top_k))
            match = curated_match(found, shop.curated_answers, language,
                                  self.knowledge.word_count(latest))
        if match is not None or self._uses_history(conversation):
            return match, version, found if match is not None else None
        return None, version, found[:shop.retrieval.top_k]

    def _uses_history(self, conversation: Conversation) -> bool:
        return bool(conversation.earlier_user_turns) and self.config.retrieval.history_weight > 0

    def _search(self, conversation: Conversation, now: datetime
                ) -> tuple[str, list[ScoredEntry]]:
        """The latest message, and with less weight the shopper's previous one."""
        retrieval = self.config.retrieval
        queries = [WeightedQuery(conversation.normalized_latest)]
        if self._uses_history(conversation):
            queries.append(WeightedQuery(conversation.earlier_user_turns[-1],
                                         retrieval.history_weight))
        return self.knowledge.search(queries, now, retrieval.top_k)

    def blank_answer_reply(self, plan: ShopPlan, answer: str) -> str | None:
        """What to send instead of a model answer with no text (a model can end on its first
        token, or spend its whole budget thinking): the no-answer message, which `review` then
        hands off as `no_answer`, so a shopper never gets an empty reply. None otherwise."""
        if plan.reply is not None or answer.strip():
            return None
        return self.config.messages.no_answer.get(plan.language)

    def fact_sheet(self, plan: ShopPlan) -> FactSheet:
        """What `plan`'s model answer may say (shop/guard/facts.py): the facts it was given, in
        both languages, the conversation, the shop's own texts."""
        return self.guard.facts((text for e in plan.facts for text in e.text.values()),
                                plan.said)

    def guard_replacement(self, plan: ShopPlan) -> tuple[str, ServiceInfo]:
        """What replaces a model answer the guard failed, and the `service` object that goes with
        it: the approved answer of the FAQ entry the message matches confidently (the curated
        answers' rule on the latest message's search results, whatever the conversation's shape,
        since the model's own answer is no longer an option), else the no-answer message, handed
        off as `no_answer`."""
        shop = self.config
        match = curated_match(
            list(plan.retrieved), shop.curated_answers, plan.language,
            self.knowledge.word_count(plan.question)) if plan.retrieved else None
        if match is not None:
            return match.answer, dataclasses.replace(
                plan.service, sources=(Source(match.entry_id, match.title),), handoff=None)
        text = shop.messages.no_answer.get(plan.language)
        return text, dataclasses.replace(plan.service, sources=(),
                                         handoff=HandoffDecision("no_answer", text))

    def review(self, plan: ShopPlan, answer: str) -> ServiceInfo:
        """The `service` object once the model has answered: a reply that is the shop's
        no-answer message (the facts did not answer the question) is a `no_answer` hand-off."""
        if plan.reply is not None or plan.service.handoff is not None:
            return plan.service
        if not self.no_answer.said_in(answer):
            return plan.service
        return dataclasses.replace(
            plan.service, sources=(),
            handoff=HandoffDecision("no_answer", self.config.messages.no_answer.get(plan.language)))
