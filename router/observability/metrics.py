"""Ingress metrics: what a client of the chat API sees, per model and route decision.

The metric set is declared once, in `INGRESS_METRICS`; the metric table of docs/operations.md
("Ingress metrics"), the unit tests and the dashboard tests all read it. Recording goes through an `InstrumentFactory`, so the same
code records into Ray Serve's metric API in production (router/observability/serve_instruments.py:
exported by each node's Ray metrics agent, with `deployment`/`replica`/`application` labels, so
several ingress replicas neither lose nor double-count) and into a prometheus_client registry in
unit tests. See docs/design/metrics.md for why not a prometheus_client HTTP server per replica.

Label values come from fixed sets only (configured model names, `text`/`vision`, HTTP status
codes, `ErrorCode` of router/api/errors.py), never from request content, so series stay bounded.

Outcome accounting, one request = exactly one `cs_requests` increment, when it ends:
- `status` is the HTTP status sent; for a stream that fails after its 200 header, the status of the
  in-band error event; 499 when the client disconnected before the end (nginx's convention).
- Every 4xx also counts in `cs_requests_rejected` (the server refused it), every 5xx and 499 in
  `cs_requests_failed` (accepted but not completed), with a `reason`.
- Latency histograms hold successful requests only; TTFT and ITL exist for streamed requests
  only (a non-streaming client sees no first token before the whole answer).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import prometheus_client
from prometheus_client import CollectorRegistry

from router.api.errors import ErrorCode

if TYPE_CHECKING:
    from configs.schema import AppConfig
    from shop.layer import Plan
    from shop.response_cache import CacheStats

MetricKind = Literal["counter", "gauge", "histogram"]

# Exported names: Ray's metrics agent adds this prefix to every application metric (and `_total`
# to counters), so `cs_requests` is scraped as `ray_cs_requests_total`.
RAY_EXPORT_PREFIX = "ray_"

NO_MODEL = "none"  # model/route label of a request refused before routing (bad JSON, 413, ...)
NO_KEY = "none"  # key_id label of a request refused before its API key was known

# Buckets span GPU (tens of ms TTFT, ~10 ms ITL) and CPU (seconds) in one layout, with the SLO
# alert thresholds of configs/prometheus/rules.yml (TTFT 2 s text, 5 s vision) on bucket
# boundaries.
TTFT_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
                  15.0, 20.0, 30.0, 60.0, 120.0)
ITL_BUCKETS_S = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
                 2.0, 5.0)
E2E_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
                 90.0, 120.0, 180.0)
ORDER_BUCKETS_S = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
RETRIEVAL_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)
IMAGE_FETCH_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0)
IMAGE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

# The `reason` label of refusals and failures: exactly the API's error codes (router/api/errors.py),
# so label values come from one fixed table and a new code is counted as soon as it exists.
REASONS = frozenset(code.value for code in ErrorCode)
CLIENT_CLOSED_STATUS = 499


@dataclass(frozen=True)
class MetricSpec:
    name: str  # as declared; see `exported_name`
    kind: MetricKind
    description: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()

    @property
    def exported_name(self) -> str:
        """The name Prometheus scrapes from Ray's metrics agent."""
        return RAY_EXPORT_PREFIX + self.name + ("_total" if self.kind == "counter" else "")


REQUESTS = MetricSpec(
    "cs_requests", "counter",
    "Chat requests by served model, route decision and outcome status code.",
    ("model", "route", "status"))
REJECTED = MetricSpec(
    "cs_requests_rejected", "counter",
    "Requests refused with a 4xx, by reason (validation, limits, admission control).",
    ("model", "route", "reason"))
FAILED = MetricSpec(
    "cs_requests_failed", "counter",
    "Accepted requests that did not complete (5xx, in-band stream errors, client disconnects), "
    "by reason.",
    ("model", "route", "reason"))
TTFT = MetricSpec(
    "cs_time_to_first_token_seconds", "histogram",
    "Streamed requests: arrival at the ingress to the first content chunk sent to the client.",
    ("model", "route"), TTFT_BUCKETS_S)
ITL = MetricSpec(
    "cs_inter_token_latency_seconds", "histogram",
    "Streamed requests: gap between consecutive content chunks sent to the client, divided by "
    "the tokens the later chunk carried (tokens travel in batches at GPU rates); one "
    "observation per chunk.",
    ("model", "route"), ITL_BUCKETS_S)
E2E = MetricSpec(
    "cs_e2e_latency_seconds", "histogram",
    "Successful requests: arrival at the ingress to the last byte of the answer.",
    ("model", "route", "stream"), E2E_BUCKETS_S)
PROMPT_TOKENS = MetricSpec(
    "cs_prompt_tokens", "counter",
    "Prompt tokens of routed requests the engine took (rate() = tokens/s).",
    ("model", "route"))
COMPLETION_TOKENS = MetricSpec(
    "cs_completion_tokens", "counter",
    "Completion tokens sent to clients, disconnected and failed streams included.",
    ("model", "route"))
IN_FLIGHT = MetricSpec(
    "cs_requests_in_flight", "gauge",
    "Routed requests this ingress replica is serving now (sum over replicas).",
    ("model", "route"))
IMAGE_PREPROCESS = MetricSpec(
    "cs_image_preprocess_seconds", "histogram",
    "Vision route: time to decode and check all images of one request at the ingress.",
    ("model",), IMAGE_BUCKETS_S)
IMAGES = MetricSpec(
    "cs_images", "counter", "Vision route: images received in routed requests.", ("model",))

SHOP_REQUESTS = MetricSpec(
    "cs_shop_requests", "counter",
    "Requests a shop's assistant planned, by shop and how they were answered: model (the model "
    "was asked), handoff (a fixed hand-off reply), faq (a curated FAQ answer), cache (a cached "
    "model answer); only `model` calls a model.",
    ("shop", "answer"))
SHOP_CACHE = MetricSpec(
    "cs_shop_cache_requests", "counter",
    "Requests by shop and what the answer caches did: faq (curated answer), hit (cached model "
    "answer), miss (the model answered; the answer may be cached), bypass (not cacheable: "
    "hand-offs, history, images, ungrounded).", ("shop", "result"))
CACHE_ENTRIES = MetricSpec(
    "cs_response_cache_entries", "gauge",
    "Model answers held by this ingress replica's response cache (sum over replicas).", ())
CACHE_BYTES = MetricSpec(
    "cs_response_cache_bytes", "gauge",
    "Approximate memory of this ingress replica's cached answers.", ())
CACHE_DROPPED = MetricSpec(
    "cs_response_cache_invalidations", "counter",
    "Cached answers dropped before reuse, by shop and reason: source_changed (an entry they were "
    "built from changed), expired (TTL or a promotion's end), evicted (the cache was full).",
    ("shop", "reason"))
SHOP_HANDOFFS = MetricSpec(
    "cs_shop_handoffs", "counter",
    "Conversations handed to a human, by shop and reason (requested, complaint, sensitive, "
    "no_answer, repeated_failure, order_system_unavailable).", ("shop", "handoff_reason"))
SHOP_GUARD = MetricSpec(
    "cs_shop_guard_verdicts", "counter",
    "Model answers read by the answer guard, by shop, verdict (pass, replaced, flagged) and "
    "guard_reason (none for a pass; empty, garbled, loop, wrong_language, cut_off, "
    "unsupported_number, promise, unsupported_offer).", ("shop", "verdict", "guard_reason"))
SHOP_NO_RELEVANT_ENTRY = MetricSpec(
    "cs_shop_no_relevant_entry", "counter",
    "Questions for which the knowledge base had no entry above the shop's relevance "
    "threshold (answered with the no-answer message).", ("shop",))
SHOP_UNDERSTOOD_BY_WORDS = MetricSpec(
    "cs_shop_understood_by_words", "counter",
    "Messages understood by words alone because the embedding worker was busy (its wait or "
    "queue budget, shops.meaning): ranked by words, no curated answer.", ("shop",))
SHOP_RETRIEVAL = MetricSpec(
    "cs_shop_retrieval_seconds", "histogram",
    "Time to search a shop's knowledge base for one request.", ("shop",), RETRIEVAL_BUCKETS_S)
SHOP_ORDER_LOOKUPS = MetricSpec(
    "cs_shop_order_lookups", "counter",
    "Order questions by shop and outcome (found, ambiguous: the assistant asked which order, "
    "listed, not_found, no_orders, signed_out: the shopper was asked to sign in, unavailable: "
    "the order system failed and the shopper was handed off).", ("shop", "outcome"))
SHOP_ORDER_FAILURES = MetricSpec(
    "cs_shop_order_system_failures", "counter",
    "Order look-ups the order system did not answer, by shop and failure (timeout, connection, "
    "bad_status, malformed, breaker_open).", ("shop", "failure"))
SHOP_ORDER_SECONDS = MetricSpec(
    "cs_shop_order_lookup_seconds", "histogram",
    "Time spent calling a shop's order system for one order question (all calls).", ("shop",),
    ORDER_BUCKETS_S)
SHOP_ORDER_BREAKER = MetricSpec(
    "cs_shop_order_breaker_open", "gauge",
    "1 while this ingress replica's circuit breaker for a shop's order system is open or "
    "half-open (calls fail at once), else 0.", ("shop",))

KEY_REQUESTS = MetricSpec(
    "cs_key_requests", "counter",
    "/v1 requests by API key id (`anonymous` without a key, `none` when refused before a key "
    "was known) and status code.", ("key_id", "status"))
KEY_TOKENS = MetricSpec(
    "cs_key_tokens", "counter",
    "Prompt + completion tokens used by each API key (what tokens_per_minute charges).",
    ("key_id",))
RATE_LIMITED = MetricSpec(
    "cs_rate_limited", "counter",
    "Requests refused with 429 by a per-key limit, by key id and limit (requests, tokens, "
    "concurrency).", ("key_id", "limit"))
RATE_LIMIT_STORE_ERRORS = MetricSpec(
    "cs_rate_limit_store_errors", "counter",
    "Calls to the rate-limit store (Redis) that failed; those requests were served unlimited.",
    ())
IMAGE_FETCH = MetricSpec(
    "cs_image_fetch_seconds", "histogram",
    "Remote image URLs: time to fetch one image (redirects included), successful or not.",
    ("outcome",), IMAGE_FETCH_BUCKETS_S)

SHAPED_ANSWERS = MetricSpec(
    "cs_shaped_answers", "counter",
    "Answers to requests with tools or a JSON response_format (a shop backend's), by model, "
    "shape (tools_auto, tools_required, tools_named, tools_none, json_object, json_schema) and "
    "finish (tool_calls: the model called; stop: it answered; length: cut at the token limit, "
    "so a call or JSON the backend cannot use).", ("model", "shape", "finish"))
# The finish label's values; any other engine reason counts as `other`.
SHAPED_FINISHES = frozenset({"tool_calls", "stop", "length"})

REPLICA_RETRIES = MetricSpec(
    "cs_replica_retries", "counter",
    "Replica calls sent once more because their replica was lost before any output "
    "(replica_died: its process or node is gone; engine_dead: its engine process died).",
    ("model", "reason"))

INGRESS_METRICS = (REQUESTS, REJECTED, FAILED, TTFT, ITL, E2E, PROMPT_TOKENS, COMPLETION_TOKENS,
                   IN_FLIGHT, IMAGE_PREPROCESS, IMAGES, SHOP_REQUESTS, SHOP_CACHE, CACHE_ENTRIES,
                   CACHE_BYTES, CACHE_DROPPED, SHOP_HANDOFFS, SHOP_GUARD,
                   SHOP_NO_RELEVANT_ENTRY, SHOP_UNDERSTOOD_BY_WORDS, SHOP_RETRIEVAL,
                   SHOP_ORDER_LOOKUPS, SHOP_ORDER_FAILURES, SHOP_ORDER_SECONDS, SHOP_ORDER_BREAKER,
                   KEY_REQUESTS, KEY_TOKENS,
                   RATE_LIMITED, RATE_LIMIT_STORE_ERRORS, IMAGE_FETCH, SHAPED_ANSWERS,
                   REPLICA_RETRIES)


class Instrument(Protocol):
    def record(self, value: float, labels: dict[str, str]) -> None:
        """Counter: add `value` (> 0). Gauge: set to `value`. Histogram: observe `value`."""


InstrumentFactory = Callable[[MetricSpec], Instrument]


class IngressMetrics:
    """The ingress's instruments, created once per replica, and the in-flight counts behind the
    gauge (each replica reports its own; dashboards sum over replicas)."""

    def __init__(self, factory: InstrumentFactory, models: dict[str, str],
                 shops: list[str] | tuple[str, ...] = ()):
        """`models` maps each served model name to its route (modality); `shops` are the
        configured shop ids, the only values of the `shop` label."""
        self._instruments = {spec.name: factory(spec) for spec in INGRESS_METRICS}
        self.shops = frozenset(shops)
        self._in_flight = {(name, route): 0 for name, route in models.items()}
        self._cache_stats: Callable[[], CacheStats | None] | None = None
        self._breakers: dict[str, int] = {}  # shop -> 1 open, 0 closed (shops with orders)
        self.refresh_gauges()

    @classmethod
    def for_app(cls, factory: InstrumentFactory, config: AppConfig) -> IngressMetrics:
        """The instruments for an app config: its models' routes and its shop ids."""
        shops = [shop.id for shop in config.shops.catalog] if config.shops else []
        return cls(factory, {m.name: m.modality for m in config.models}, shops)

    def rate_limited(self, key_id: str, limit: str) -> None:
        self.record(RATE_LIMITED, 1, key_id=key_id, limit=limit)

    def rate_limit_store_failed(self) -> None:
        self.record(RATE_LIMIT_STORE_ERRORS, 1)

    def image_fetched(self, seconds: float, outcome: str) -> None:
        """`outcome`: `ok`, or the error code that refused the URL."""
        self.record(IMAGE_FETCH, seconds, outcome=outcome)

    def replica_retried(self, model: str, reason: str) -> None:
        self.record(REPLICA_RETRIES, 1, model=model, reason=reason)

    def watch_cache(self, stats: Callable[[], CacheStats | None]) -> None:
        """Report the response cache's size with the other gauges (`stats()` is None when no
        cache is configured: nothing is reported)."""
        self._cache_stats = stats
        self.refresh_gauges()

    def watch_order_breakers(self, shops: list[str]) -> None:
        """Report the order-system breaker of each of `shops` (closed until it changes)."""
        self._breakers = {shop: 0 for shop in shops if shop in self.shops}
        self.refresh_gauges()

    def order_breaker_changed(self, shop: str, state: str) -> None:
        """A shop's breaker changed state (shop/orders/backend.py): opened, half-opened,
        closed."""
        if shop in self.shops:
            self._breakers[shop] = 0 if state == "closed" else 1
            self.record(SHOP_ORDER_BREAKER, self._breakers[shop], shop=shop)

    def cache_dropped(self, shop: str, reason: str, count: int) -> None:
        if shop in self.shops:
            self.record(CACHE_DROPPED, count, shop=shop, reason=reason)

    def start(self) -> RequestMetrics:
        """Begin measuring one request, at its arrival."""
        return RequestMetrics(self, time.monotonic())

    def refresh_gauges(self) -> None:
        """Re-report every in-flight gauge, zeros included. Ray's agent drops a gauge series that
        is not re-reported for two export intervals; this keeps idle series at 0 instead."""
        for (model, route), count in self._in_flight.items():
            self.record(IN_FLIGHT, count, model=model, route=route)
        for shop, is_open in self._breakers.items():
            self.record(SHOP_ORDER_BREAKER, is_open, shop=shop)
        stats = self._cache_stats() if self._cache_stats is not None else None
        if stats is not None:
            self.record(CACHE_ENTRIES, stats.entries)
            self.record(CACHE_BYTES, stats.bytes)

    def record(self, spec: MetricSpec, value: float, **labels: str) -> None:
        if spec.kind == "counter" and value <= 0:
            return  # Ray refuses inc(0); a zero increment changes nothing anyway
        self._instruments[spec.name].record(value, labels)

    def _in_flight_changed(self, model: str, route: str, delta: int) -> None:
        key = (model, route)
        self._in_flight[key] = self._in_flight.get(key, 0) + delta
        self.record(IN_FLIGHT, self._in_flight[key], model=model, route=route)


class RequestMetrics:
    """The measurements of one request, from arrival to its single recorded outcome."""

    def __init__(self, metrics: IngressMetrics, started: float):
        self._metrics = metrics
        self._started = started
        self._model = NO_MODEL
        self._route = NO_MODEL
        self._stream = False
        self._last_content: float | None = None
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._routed = False
        self.key_id = NO_KEY
        self.finished = False

    @property
    def completion_tokens(self) -> int:
        return self._completion_tokens

    @property
    def total_tokens(self) -> int:
        return self._prompt_tokens + self._completion_tokens

    def routed(self, model: str, route: str, stream: bool) -> None:
        self._model, self._route, self._stream = model, route, stream
        self._routed = True
        self._metrics._in_flight_changed(model, route, +1)

    def shop_planned(self, plan: Plan) -> None:
        """The shop layer's decision for this request (nothing for a plain pass-through)."""
        m, shop, decision = self._metrics, plan.shop_id, plan.decision
        if decision is None or shop not in m.shops:
            return  # label values come from the configured ids only
        handoff, cache = decision.service.handoff, decision.service.cache
        answer = ("handoff" if handoff is not None else "faq" if cache == "faq"
                  else "cache" if cache == "hit" else "model")
        m.record(SHOP_REQUESTS, 1, shop=shop, answer=answer)
        m.record(SHOP_CACHE, 1, shop=shop, result=cache)
        if handoff is not None:
            m.record(SHOP_HANDOFFS, 1, shop=shop, handoff_reason=handoff.reason)
        if decision.no_relevant_entry:
            m.record(SHOP_NO_RELEVANT_ENTRY, 1, shop=shop)
        if plan.understood_by_words:
            m.record(SHOP_UNDERSTOOD_BY_WORDS, 1, shop=shop)
        if decision.retrieval_s > 0:
            m.record(SHOP_RETRIEVAL, decision.retrieval_s, shop=shop)
        order = decision.order
        if order is not None:
            m.record(SHOP_ORDER_LOOKUPS, 1, shop=shop, outcome=order.lookup)
            if order.failure is not None:
                m.record(SHOP_ORDER_FAILURES, 1, shop=shop, failure=order.failure)
            if order.seconds > 0:
                m.record(SHOP_ORDER_SECONDS, order.seconds, shop=shop)

    def shop_handed_off(self, shop: str, reason: str) -> None:
        """The model's answer turned into a hand-off (it replied with the no-answer message)."""
        if shop in self._metrics.shops:
            self._metrics.record(SHOP_HANDOFFS, 1, shop=shop, handoff_reason=reason)

    def shop_guard_verdict(self, shop: str, verdict: str, reason: str) -> None:
        """The answer guard read a model answer of `shop` (shop/guard/)."""
        if shop in self._metrics.shops:
            self._metrics.record(SHOP_GUARD, 1, shop=shop, verdict=verdict, guard_reason=reason)

    def shaped_answer(self, shape: str, finish: str) -> None:
        """A request with its own answer shape (ChatCompletionRequest.output_shape) ended with
        OpenAI's `finish` reason."""
        self._metrics.record(SHAPED_ANSWERS, 1, model=self._model, shape=shape,
                             finish=finish if finish in SHAPED_FINISHES else "other")

    def images_checked(self, count: int, seconds: float) -> None:
        self._metrics.record(IMAGE_PREPROCESS, seconds, model=self._model)
        self._metrics.record(IMAGES, count, model=self._model)

    def image_fetched(self, seconds: float, outcome: str) -> None:
        self._metrics.image_fetched(seconds, outcome)

    def content_sent(self, tokens: int = 1) -> None:
        """A chunk carrying generated text (`tokens` of them; a fixed reply's piece counts as
        one) was handed to the client. Once per chunk, never per token (issue 22)."""
        now = time.monotonic()
        labels = {"model": self._model, "route": self._route}
        if self._last_content is None:
            self._metrics.record(TTFT, now - self._started, **labels)
        else:
            self._metrics.record(ITL, (now - self._last_content) / max(1, tokens), **labels)
        self._last_content = now

    def tokens(self, prompt_tokens: int, completion_tokens: int) -> None:
        """Cumulative usage so far (the engine reports running totals)."""
        self._prompt_tokens, self._completion_tokens = prompt_tokens, completion_tokens

    def succeeded(self) -> None:
        self._finish(200, None)

    def errored(self, status: int, code: ErrorCode) -> None:
        self._finish(status, code)

    def client_disconnected(self) -> None:
        self._finish(CLIENT_CLOSED_STATUS, ErrorCode.CLIENT_DISCONNECT)

    def _finish(self, status: int, code: ErrorCode | None) -> None:
        if self.finished:
            return  # the first outcome wins; later cleanup paths must not count twice
        self.finished = True
        m, labels = self._metrics, {"model": self._model, "route": self._route}
        m.record(REQUESTS, 1, status=str(status), **labels)
        m.record(KEY_REQUESTS, 1, key_id=self.key_id, status=str(status))
        m.record(KEY_TOKENS, self.total_tokens, key_id=self.key_id)
        if status == 200:
            m.record(E2E, time.monotonic() - self._started,
                     stream="true" if self._stream else "false", **labels)
        elif status >= 500 or status == CLIENT_CLOSED_STATUS:
            m.record(FAILED, 1, reason=ErrorCode(code).value, **labels)
        else:
            m.record(REJECTED, 1, reason=ErrorCode(code).value, **labels)
        if self._routed:
            m.record(PROMPT_TOKENS, self._prompt_tokens, **labels)
            m.record(COMPLETION_TOKENS, self._completion_tokens, **labels)
            m._in_flight_changed(self._model, self._route, -1)


def prometheus_client_instruments(registry: CollectorRegistry) -> InstrumentFactory:
    """Instruments in a prometheus_client registry, for the router outside Ray (unit tests,
    in-process tools). Exposition names match Ray's minus the `ray_` prefix."""

    def factory(spec: MetricSpec) -> Instrument:
        if spec.kind == "counter":
            metric = prometheus_client.Counter(spec.name, spec.description, spec.labels,
                                               registry=registry)
            return Recorder(lambda value, labels: series(metric, labels).inc(value))
        if spec.kind == "gauge":
            metric = prometheus_client.Gauge(spec.name, spec.description, spec.labels,
                                             registry=registry)
            return Recorder(lambda value, labels: series(metric, labels).set(value))
        metric = prometheus_client.Histogram(spec.name, spec.description, spec.labels,
                                             registry=registry, buckets=spec.buckets)
        return Recorder(lambda value, labels: series(metric, labels).observe(value))

    def series(metric, labels: dict[str, str]):
        # prometheus_client refuses .labels() on a metric declared without labels.
        return metric.labels(**labels) if labels else metric

    return factory


@dataclass(frozen=True)
class Recorder:
    """An Instrument from a recording function."""

    record: Callable[[float, dict[str, str]], None]
