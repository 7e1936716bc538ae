"""Typed configuration of the shops an application serves (`shops:` in the app config).

Pydantic with `extra="forbid"` and a description on every field, like configs/schema.py, which
embeds `ShopsConfig` as `AppConfig.shops`. This module is part of the shop layer, so it imports
neither Ray nor vLLM nor the router.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shop.text import LANGUAGES, Language

# Image hosts as configured: compared with URL host names, which are lower case. Shared with the
# app-wide list in configs/schema.py (RemoteImages.allowed_domains).
HostNames = Annotated[tuple[str, ...],
                      AfterValidator(lambda hosts: tuple(h.strip().lower() for h in hosts))]


class StrictModel(BaseModel):
    """The shop layer's schemas (config and knowledge-base files): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalizedText(StrictModel):
    """A text in each language the assistant speaks."""

    en: str = Field(..., min_length=1, description="English.")
    zh: str = Field(..., min_length=1, description="Simplified Chinese.")

    def get(self, language: Language) -> str:
        return getattr(self, language)

    def by_language(self) -> dict[Language, str]:
        return {"en": self.en, "zh": self.zh}


class LocalizedList(StrictModel):
    en: tuple[str, ...] = Field((), description="English items.")
    zh: tuple[str, ...] = Field((), description="Simplified Chinese items.")

    def get(self, language: Language) -> tuple[str, ...]:
        return getattr(self, language)


class Persona(StrictModel):
    """Who the assistant is. Rendered into the first system message of every prompt
    (shop/prompt.py); clients cannot remove or replace it."""

    assistant_name: LocalizedText = Field(..., description="The name the assistant uses.")
    tone: LocalizedText = Field(..., description="How it speaks, e.g. 'warm, brief, practical'.")
    never_promise: LocalizedList = Field(
        default_factory=LocalizedList,
        description="What it must never promise or do, e.g. discounts not in the facts, refunds "
        "outside the policy, delivery dates the facts do not give.",
    )
    extra_instructions: LocalizedList = Field(
        default_factory=LocalizedList, description="Further rules, one sentence each.")


class ShopSampling(StrictModel):
    """Sampling for this shop's service replies when the request does not set it."""

    temperature: float = Field(0.2, ge=0.0, le=2.0, description="Low: replies follow the facts.")
    top_p: float = Field(0.8, gt=0.0, le=1.0, description="Nucleus-sampling mass.")
    max_tokens: int = Field(256, gt=0, description="Completion length when the request sets "
                            "none (service replies are short).")


class ThinkingPolicy(StrictModel):
    """Qwen3 'thinking' for this shop's replies."""

    default: bool = Field(False, description="Thinking on when the request does not say. Off: "
                          "it adds hundreds of tokens of latency to every reply.")
    client_may_enable: bool = Field(
        False, description="Whether a request may turn it on (chat_template_kwargs."
        "enable_thinking); if not, asking is a 400.")


class RetrievalConfig(StrictModel):
    """How the knowledge base grounds an answer."""

    top_k: int = Field(3, ge=1, le=10, description="Entries given to the model at most.")
    min_relevance: float = Field(
        0.08, gt=0.0, description="Relevance (share of the question's information an entry "
        "covers, shop/knowledge/index.py) below which an entry is not relevant. When no entry "
        "reaches it, the model is not asked: the shop's no-answer message is sent instead.")
    max_fact_chars: int = Field(
        600, ge=50, description="Longest text of one fact in the prompt; longer ones (policy "
        "sections) are cut at a sentence end, so the facts block fits small context windows.")
    history_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="Weight of the previous shopper turn in the search, so "
        "'and in grey?' or '那这个呢' resolve against what was asked before.")
    min_similarity: float = Field(
        0.86, ge=-1.0, le=1.0, description="With retrieval by meaning on (shops.meaning): an "
        "entry this close in meaning to the latest message (cosine similarity of the bundled "
        "embedding, shop/knowledge/meaning.py) is relevant even when it shares too few words "
        "to reach min_relevance.")


class CuratedAnswersConfig(StrictModel):
    """FAQ answers sent as written, without a model call, when a message matches one FAQ entry
    confidently (shop/curated.py has the whole rule)."""

    enabled: bool = Field(True, description="Send approved FAQ answers without asking a model.")
    min_relevance: float = Field(
        0.5, gt=0.0, description="Relevance (as retrieval.min_relevance) the FAQ entry must reach "
        "on the latest message alone. Much higher than retrieval.min_relevance: a canned answer "
        "must be about this question, not merely related to it.")
    min_margin: float = Field(
        0.15, ge=0.0, description="How far the FAQ entry's relevance must lead the next entry's "
        "(of any kind), so a question two entries answer goes to the model.")
    min_similarity: float = Field(
        0.93, ge=-1.0, le=1.0, description="With retrieval by meaning on (shops.meaning): the "
        "FAQ entry must also be the closest entry in meaning to the latest message, at least "
        "this close; min_relevance and min_margin then apply to words as a floor (words and "
        "meaning must agree before a fixed answer is sent).")
    min_words: int = Field(
        2, ge=1, description="Words (after stop words) a message needs before it is matched by "
        "relevance: one word cannot say what is asked ('still there?' shares 'still' with the "
        "late-parcel entry). The shop's written questions match exactly whatever their length.")


class HandoffConfig(StrictModel):
    """When a conversation goes to a human. The built-in rules (shop/handoff.py) apply to every
    shop; these settings add to them."""

    extra_patterns: dict[str, LocalizedList] = Field(
        default_factory=dict, description="More regular expressions per reason (requested, "
        "complaint, sensitive), per language, matched on the normalised latest message.")
    repeated_failure_turns: int = Field(
        2, ge=1, description="Hand off when the assistant's last this-many replies were the "
        "no-answer message.")

    @model_validator(mode="after")
    def _known_reasons(self) -> HandoffConfig:
        unknown = set(self.extra_patterns) - {"requested", "complaint", "sensitive"}
        if unknown:
            raise ValueError(f"extra_patterns has unknown reasons {sorted(unknown)}")
        return self


class GuardConfig(StrictModel):
    """The answer guard (shop/guard/): every model answer is checked against the facts it was
    given before a shopper sees it (docs/design/answer-guard.md)."""

    mode: Literal["replace", "flag", "off"] = Field(
        "replace", description="replace: a failed answer is replaced (the best FAQ entry's "
        "approved answer when the match is confident, else the no-answer message, handed off); "
        "flag: sent as the model wrote it, marked in service.guard; off: not checked.")
    promise_patterns: LocalizedList = Field(
        default_factory=LocalizedList, description="More regular expressions per language, "
        "matched on the normalised answer, for promises this shop never makes (added to the "
        "built-in ones: guarantees, exceptions, compensation, codes). A match fails the "
        "answer unless the facts given say the same words.")

    @model_validator(mode="after")
    def _patterns_compile(self) -> GuardConfig:
        for pattern in (*self.promise_patterns.en, *self.promise_patterns.zh):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"promise pattern {pattern!r} does not compile: {exc}") from None
        return self


class ShopperIdentityConfig(StrictModel):
    """Verified shoppers (shop/orders/identity.py): the shop's own servers sign a short-lived
    token for the shopper they have signed in, and the chat page or the shop's chat system sends
    it in the X-Shopper-Token header. The secret is never in this file: it is read from an
    environment variable or a file (a mounted secret)."""

    secret_env: str | None = Field(
        None, pattern=r"^[A-Z_][A-Z0-9_]*$",
        description="Environment variable holding the shop's HS256 signing secret.")
    secret_file: str | None = Field(
        None, min_length=1, description="File holding the secret (e.g. a mounted Kubernetes "
        "secret); relative paths are resolved against the project root. Read again when it "
        "changes, so a secret can be rotated without a restart.")
    max_ttl_s: int = Field(
        86_400, gt=0, description="Longest lifetime a token may claim (exp - iat); a longer one "
        "is refused, so a leaked token cannot live for a year.")
    leeway_s: int = Field(30, ge=0, le=300, description="Clock skew allowed between the shop's "
                          "servers and the ingress when checking expiry.")
    demo_shoppers: tuple[str, ...] = Field(
        (), description="Shopper ids the demo sign-in (POST /v1/demo/shopper-token, the chat "
        "page's \"Sign in as\") may mint tokens for. Leave empty in production: the endpoint "
        "is then 404 for this shop.")

    @model_validator(mode="after")
    def _one_secret_source(self) -> ShopperIdentityConfig:
        if (self.secret_env is None) == (self.secret_file is None):
            raise ValueError("identity needs exactly one of secret_env and secret_file")
        return self


class OrderBackendConfig(StrictModel):
    """The shop's order system (docs/order-api.md): a small JSON HTTP API."""

    base_url: str = Field(
        ..., pattern=r"^https?://[^\s]+$", description="Where the contract's paths start, e.g. "
        "https://orders.shop.example/api/cs. Only this URL is ever called: nothing in a "
        "shopper's message changes the host.")
    token_env: str | None = Field(
        None, pattern=r"^[A-Z_][A-Z0-9_]*$", description="Environment variable holding the "
        "bearer token sent to the order system (none: no Authorization header).")
    timeout_s: float = Field(3.0, gt=0, le=30, description="Longest one call may take; past it "
                             "the shopper gets the hand-off reply (order_system_unavailable).")
    max_concurrent: int = Field(8, ge=1, le=256, description="Calls in flight at most per "
                                "ingress replica; more wait (within timeout_s) rather than pile "
                                "onto a struggling order system.")
    breaker_failures: int = Field(5, ge=1, description="Consecutive failed calls that open the "
                                  "circuit breaker: calls then fail at once, without waiting.")
    breaker_open_s: float = Field(30.0, gt=0, description="How long the breaker stays open "
                                  "before one call is tried again.")


class OrdersConfig(StrictModel):
    """Order look-up for verified shoppers (shop/orders/): order questions answered from the
    shop's order system."""

    backend: OrderBackendConfig
    recent_orders: int = Field(5, ge=1, le=20, description="Orders fetched when the shopper "
                               "names none; more than one that could be meant: the assistant "
                               "asks which.")
    sign_in: LocalizedText = Field(
        LocalizedText(
            en="To check an order I need to know it's you: please sign in to your account on "
               "our site or app, then ask me again here.",
            zh="查询订单需要先确认您的身份：请先登录您的账号（网站或App），再在这里问我就可以啦。"),
        description="Sent to a shopper who is not signed in and asks about an order.")


class ShopMessages(StrictModel):
    """Fixed replies, sent without asking a model."""

    handoff: LocalizedText = Field(..., description="Sent when the conversation is handed to a "
                                   "human (requested, complaint, sensitive, repeated failure).")
    no_answer: LocalizedText = Field(..., description="Sent when the knowledge base has nothing "
                                     "relevant: the assistant will check, or offers a person.")


class ShopConfig(StrictModel):
    """One shop: its persona, facts, sampling and hand-off rules."""

    id: str = Field(..., pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
                    description="Sent by clients as the X-Shop-Id header.")
    name: str = Field(..., min_length=1, description="Display name (GET /v1/shops).")
    languages: tuple[Language, ...] = Field(
        LANGUAGES, min_length=1, description="Languages the shop answers in.")
    default_language: Language = Field(
        "zh", description="Reply language when the shopper's message shows none (only digits, "
        "emoji, an image) or is in a language the shop does not list.")
    persona: Persona
    sampling: ShopSampling = Field(default_factory=ShopSampling)
    thinking: ThinkingPolicy = Field(default_factory=ThinkingPolicy)
    knowledge_base: str = Field(
        ..., min_length=1, description="Folder of faq.yaml, policies.md, products.json and "
        "promotions.yaml (docs/design/shop-knowledge-base.md). Relative paths are resolved "
        "against the project root. Changes are picked up without a restart.")
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    curated_answers: CuratedAnswersConfig = Field(default_factory=CuratedAnswersConfig)
    handoff: HandoffConfig = Field(default_factory=HandoffConfig)
    messages: ShopMessages
    guard: GuardConfig = Field(default_factory=GuardConfig)
    identity: ShopperIdentityConfig | None = Field(
        None, description="Verified shoppers (X-Shopper-Token). None: every shopper is "
        "anonymous.")
    orders: OrdersConfig | None = Field(
        None, description="Order look-up from the shop's order system. None: order questions "
        "are answered from the knowledge base like any other.")
    image_domains: HostNames = Field(
        (), description="Hosts (the shop's CDN) whose image URLs the ingress fetches for this "
        "shop, besides the app-wide remote_images.allowed_domains. `cdn.shop.com` matches that "
        "host; `.shop.com` its subdomains.")

    @model_validator(mode="after")
    def _default_language_is_spoken(self) -> ShopConfig:
        if self.default_language not in self.languages:
            raise ValueError(f"default_language {self.default_language!r} is not in languages")
        return self

    @model_validator(mode="after")
    def _orders_need_identity(self) -> ShopConfig:
        if self.orders is not None and self.identity is None:
            raise ValueError("orders needs identity: order data is only shown to verified "
                             "shoppers")
        return self


class ResponseCacheConfig(StrictModel):
    """Generated answers kept per ingress replica and sent again to the same question
    (shop/response_cache.py: what is cached, the key, invalidation)."""

    enabled: bool = Field(True, description="Cache grounded single-turn answers.")
    max_entries: int = Field(10_000, ge=1, description="Answers held at most per replica.")
    max_bytes: int = Field(32 * 1024 * 1024, ge=4096,
                           description="Memory the answers may take per replica (approximate).")
    ttl_s: float = Field(600.0, gt=0, description="Longest time an answer is reused; answers "
                         "using a promotion also expire when it ends, and an edited entry "
                         "drops its answers at once.")


class MeaningConfig(StrictModel):
    """Retrieval by meaning (shop/knowledge/meaning.py): one bundled multilingual embedding per
    ingress replica, for every shop."""

    enabled: bool = Field(True, description="Compare messages with entries by meaning as well as "
                          "by words. Off: words only (the curated and relevance rules then use "
                          "words alone).")
    threads: int = Field(1, ge=1, le=16, description="CPU threads of the embedding model (~23 ms "
                         "per message on one thread of this project's 2-core test machine).")
    query_cache_entries: int = Field(
        4096, ge=0, description="Messages whose vectors are kept (LRU): a repeated question "
        "costs no embedding.")
    max_wait_ms: float = Field(
        150.0, gt=0, description="Longest a message waits for its vector; past it, it is "
        "understood by words alone (no curated answer) rather than delayed.")
    max_queued: int = Field(
        32, ge=1, description="Messages' texts waiting for the embedding worker at most; a "
        "burst beyond it is understood by words alone (counted in "
        "cs_shop_understood_by_words_total).")


class ShopsConfig(StrictModel):
    """The shops of the application; requests choose one with the X-Shop-Id header."""

    default: str = Field(..., description="Shop id used when a request sends no X-Shop-Id.")
    catalog: tuple[ShopConfig, ...] = Field(..., min_length=1)
    reload_check_s: float = Field(
        2.0, gt=0, description="How often each ingress replica checks the knowledge-base "
        "folders for changes.")
    response_cache: ResponseCacheConfig = Field(default_factory=ResponseCacheConfig)
    meaning: MeaningConfig = Field(default_factory=MeaningConfig)

    @model_validator(mode="after")
    def _ids(self) -> ShopsConfig:
        ids = [shop.id for shop in self.catalog]
        if len(set(ids)) != len(ids):
            raise ValueError(f"shop ids must be unique, got {ids}")
        if self.default not in ids:
            raise ValueError(f"default shop {self.default!r} is not in the catalog {ids}")
        return self
