"""The chat-completions logic behind the HTTP routes: validate, route, forward, format.

Transport-free: model replicas are reached through `ChatStreamer` callables (in production a Serve
handle adapter, in unit tests plain async generators), so this module never imports Ray.

Streaming contract: the first engine chunk is awaited before the HTTP status is sent, so errors
found by the engine up front (prompt longer than the context, unprocessable image) are real 4xx
responses. After that a failure is sent in-band as an SSE error event followed by `data: [DONE]`,
and the stream always ends with `data: [DONE]`.

Metrics: each request carries a `RequestMetrics` (router/observability/metrics.py). This module records what
happens inside an answer (route, image checks, content chunks, tokens, the in-band outcome of a
stream); the ingress records the HTTP outcome of everything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from configs.schema import AppConfig, ModelConfig
from model_server.engine_protocol import EngineRequest, GenerationChunk
from common.model_source import ModelNotAvailableError, resolve_model_path
from router.api.errors import APIError, api_error_for, sse_error_event
from router.observability.metrics import RequestMetrics
from router.api.protocol import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ModelCard,
    ModelList,
    Usage,
    sse_data,
)
from router.engine_params import chat_template_kwargs_for, sampling_for
from router.images.remote import RemoteImageFetcher
from router.routing import CatalogEntry, RouteDecision, route_for_request
from router.access.api_keys import Caller
from router.images.inputs import ImageInputs, replace_image_urls
from router.api.parse_offload import BodyParser
from router.api.validation import check_request
from shop.assistant import ShopAssistant, ShopPlan, ShopRequestError
from shop.directory import ShopDirectory, UnknownShopError
from shop.response_cache import ResponseCache

logger = logging.getLogger("cs_assistant.chat_service")

ChatStreamer = Callable[[EngineRequest], AsyncIterator[GenerationChunk]]
SSE_DONE = "data: [DONE]\n\n"
# A cached or curated answer is streamed in pieces of this many characters, so a client sees
# the same shape of stream as from a model.
REPLAY_CHUNK_CHARS = 24


@dataclass(frozen=True)
class PreparedChat:
    """A request that passed validation and routing, ready to forward."""

    request: ChatCompletionRequest
    route: RouteDecision
    engine_request: EngineRequest
    created: int
    deadline: float  # time.monotonic() by which the request must finish
    metrics: RequestMetrics
    shop_plan: ShopPlan | None = None  # None when the app serves no shops
    shop: ShopAssistant | None = None
    cache: ResponseCache | None = None
    cache_key: tuple | None = None  # set when the model's answer may be cached

    @property
    def request_id(self) -> str:
        return self.engine_request.request_id

    @property
    def fixed_reply(self) -> str | None:
        """The shop's answer when no model is asked (a hand-off, "I will check")."""
        return self.shop_plan.reply if self.shop_plan else None

    @property
    def replayed(self) -> bool:
        """The answer is a curated or cached text, not a model's."""
        return self.shop_plan is not None and self.shop_plan.service.cache in ("faq", "hit")

    def blank_answer_reply(self, answer: str) -> str | None:
        """The shop's text to send when the model's whole `answer` is blank; None otherwise
        (and always without shops: a plain proxy returns what the model said)."""
        if self.shop is None or self.shop_plan is None:
            return None
        return self.shop.blank_answer_reply(self.shop_plan, answer)

    def finished(self, answer: str, finish_reason: str | None) -> dict | None:
        """The response's `service` object once `answer` is complete; None without shops.
        Called once per request: a model reply that declines is counted as a hand-off here,
        and a cacheable one is cached."""
        if self.shop is None or self.shop_plan is None:
            return None
        service = self.shop.review(self.shop_plan, answer)
        if service is not self.shop_plan.service and service.handoff is not None:
            self.metrics.shop_handed_off(self.shop.config.id, service.handoff.reason)
        if (self.cache is not None and self.cache_key is not None
                and ResponseCache.storable(answer, finish_reason, service.handoff is not None)):
            self.cache.put(self.cache_key, answer, finish_reason, self.shop_plan.facts)
        return service.as_dict()


class ChatService:
    """Serves /v1/chat/completions and /v1/models for the configured models."""

    def __init__(self, config: AppConfig, streamers: dict[str, ChatStreamer],
                 shops: ShopDirectory | None = None, images: ImageInputs | None = None,
                 on_cache_dropped: Callable[[str, str, int], None] | None = None):
        """`on_cache_dropped(shop, reason, count)`: cached answers dropped before use."""
        missing = {m.modality for m in config.models} - set(streamers)
        if missing:
            raise ValueError(f"no replica handle for modalities {sorted(missing)}")
        self._config = config
        self._limits = config.limits
        self._streamers = streamers
        self._models: dict[str, ModelConfig] = {m.name: m for m in config.models}
        self._catalog = tuple(CatalogEntry(m.name, m.modality) for m in config.models)
        self._started = int(time.time())
        self._weights = {m.name: served_weights(m) for m in config.models}
        self.shops = shops
        cache = config.shops.response_cache if config.shops else None
        self.cache = ResponseCache(cache.max_entries, cache.max_bytes, cache.ttl_s,
                                   on_dropped=on_cache_dropped) \
            if shops is not None and cache is not None and cache.enabled else None
        self.parser = BodyParser(config.limits)
        self._images = images or ImageInputs(
            config.limits, RemoteImageFetcher(config.remote_images, config.limits.max_image_bytes))

    def model_list(self) -> ModelList:
        return ModelList(
            data=[
                ModelCard(
                    id=m.name, created=self._started, modality=m.modality,
                    max_model_len=m.engine.max_model_len, root=self._weights[m.name],
                )
                for m in self._config.models
            ]
        )

    async def prepare(
        self, body: bytes, request_id: str, metrics: RequestMetrics, caller: Caller,
        shop_id: str | None = None,
    ) -> PreparedChat:
        """Parse, route and validate a request body, then let its shop plan the answer; raise
        APIError (4xx) on any problem.

        Each step runs once: the schema (large bodies in a worker process), what the caller's
        key allows (message roles, shop), the route (which limits apply depends on the model),
        every limit, the images (their list is computed once, on the request; remote ones are
        fetched here), then the shop layer (persona, facts, hand-off).
        """
        started = time.monotonic()
        request = await self.parser.parse(body)
        caller.check_roles([m.role for m in request.messages])
        assistant = self._shop_for(caller, shop_id)
        route = route_for_request(request, self._catalog)
        metrics.routed(route.model, route.modality, stream=request.stream)
        model = self._models[route.model]
        check_request(request, model, self._limits)
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        if request.images:
            domains = self._config.remote_images.allowed_domains + (
                assistant.config.image_domains if assistant is not None else ())
            inline, checked_s = await self._images.inline(request.images, domains,
                                                          metrics.image_fetched)
            metrics.images_checked(len(request.images), checked_s)
            replace_image_urls(messages, inline)
        plan = None
        defaults, thinking = model.sampling, model.sampling.enable_thinking
        if assistant is not None:
            try:
                plan = assistant.plan(
                    messages, (request.chat_template_kwargs or {}).get("enable_thinking"))
            except ShopRequestError as exc:
                raise APIError.invalid_request(exc.message, param=exc.param) from None
            messages = plan.messages or []
            defaults, thinking = plan.sampling, plan.enable_thinking
        engine_request = EngineRequest(
            request_id=request_id,
            messages=messages,
            sampling=sampling_for(request, defaults, self._limits),
            chat_template_kwargs=chat_template_kwargs_for(request, thinking),
        )
        cache_key = None
        if plan is not None:
            plan, cache_key = self._consult_cache(assistant, plan, engine_request, route.model)
            metrics.shop_planned(assistant.config.id, plan)
        return PreparedChat(
            request=request,
            route=route,
            engine_request=engine_request,
            created=int(time.time()),
            deadline=started + self._limits.request_timeout_s,
            metrics=metrics,
            shop_plan=plan,
            shop=assistant,
            cache=self.cache,
            cache_key=cache_key,
        )

    def _consult_cache(self, assistant: ShopAssistant, plan: ShopPlan,
                       engine_request: EngineRequest, model: str) -> tuple[ShopPlan, tuple | None]:
        """The plan after a response-cache lookup (a hit becomes a fixed reply), and the key
        under which the model's answer is to be stored (None: nothing to store)."""
        if plan.reply is not None or not plan.cacheable or self.cache is None:
            return plan, None
        options = repr((engine_request.sampling,
                        sorted(engine_request.chat_template_kwargs.items())))
        key = ResponseCache.key(assistant.config.id, model, plan.question, plan.language,
                                plan.facts, options)
        cached = self.cache.get(key)
        if cached is not None:
            return plan.from_cache(cached.text), None
        return plan.cache_missed(), key

    def _shop_for(self, caller: Caller, shop_id: str | None) -> ShopAssistant | None:
        """The shop of the request (404 unknown, 403 not the key's); None without shops."""
        if self.shops is None:
            if shop_id is not None:
                raise APIError.shop_not_found(shop_id)
            return None
        if shop_id is not None and shop_id not in self.shops.ids:
            raise APIError.shop_not_found(shop_id)
        chosen = caller.shop_for(shop_id, self.shops.config.default)
        try:
            return self.shops.get(chosen)
        except UnknownShopError:
            raise APIError.shop_not_found(chosen or "") from None

    def shop_listing(self, caller: Caller) -> list[dict]:
        """GET /v1/shops: the shops this key may use."""
        if self.shops is None:
            return []
        return [shop for shop in self.shops.listing() if caller.may_use(shop["id"])]

    def refresh_knowledge(self) -> list[str]:
        """Reload changed knowledge bases (blocking I/O and indexing: run off the loop) and
        drop the cached answers built from entries that changed; the shops reloaded."""
        if self.shops is None:
            return []
        changed = self.shops.refresh()
        if self.cache is not None:
            for shop_id, entry_ids in changed.items():
                self.cache.invalidate(shop_id, entry_ids)
        return list(changed)

    async def complete(self, chat: PreparedChat) -> ChatCompletionResponse:
        """Run a non-streaming request to the end."""
        pieces: list[str] = []
        last: GenerationChunk | None = None
        stream = self._engine_stream(chat)
        try:
            while True:
                chunk = await _next_before(stream, chat.deadline)
                if chunk is None:
                    break
                pieces.append(chunk.text)
                chat.metrics.tokens(chunk.prompt_tokens, chunk.completion_tokens)
                last = chunk
        finally:
            await _close(stream)
        if last is None:
            raise RuntimeError("engine stream ended without output")
        if (substitute := chat.blank_answer_reply("".join(pieces))) is not None:
            pieces = [substitute]
        return ChatCompletionResponse(
            id=chat.request_id,
            created=chat.created,
            model=chat.route.model,
            choices=[
                Choice(
                    message=AssistantMessage(content="".join(pieces)),
                    finish_reason=last.finish_reason,
                )
            ],
            usage=_usage(last),
            service=chat.finished("".join(pieces), last.finish_reason),
        )

    def _engine_stream(self, chat: PreparedChat) -> AsyncIterator[GenerationChunk]:
        """The answer's chunks: from the model's replica, or the shop's fixed reply with no
        tokens (no model was asked): a hand-off as one chunk, a curated or cached answer in
        pieces as a model would stream it."""
        if chat.fixed_reply is not None:
            size = REPLAY_CHUNK_CHARS if chat.replayed else len(chat.fixed_reply) or 1
            return _replay(chat.fixed_reply, size)
        return self._streamers[chat.route.modality](chat.engine_request)

    async def open_stream(self, chat: PreparedChat) -> ChatStream:
        """Start a streaming request; raise (mapped to a status code) if its first chunk fails."""
        stream = self._engine_stream(chat)
        try:
            first = await _next_before(stream, chat.deadline)
        except BaseException:
            await _close(stream)
            raise
        return ChatStream(chat, first, stream)


class ChatStream:
    """The SSE body of one streamed answer.

    `close()` must run when the response ends, however it ends: it aborts the engine request if
    the answer is unfinished and records a client disconnect unless `events()` recorded an
    outcome. It is separate from `events()` because a generator that was never iterated (client
    gone before the first byte) never runs its own cleanup.
    """

    def __init__(
        self, chat: PreparedChat, first: GenerationChunk | None,
        stream: AsyncIterator[GenerationChunk],
    ):
        self._chat = chat
        self._first = first
        self._stream = stream

    async def events(self) -> AsyncIterator[str]:
        chat, measured = self._chat, self._chat.metrics
        options = chat.request.stream_options
        include_usage = bool(options and options.include_usage)

        # Chunks are built as plain dicts in ChatCompletionChunk's field order: a pydantic model
        # and its dump per token cost more than the rest of the event (curated answers over SSE
        # ran at half their JSON rate with them).
        head = {"id": chat.request_id, "object": "chat.completion.chunk",
                "created": chat.created, "model": chat.route.model}

        def event(delta: dict, finish_reason: str | None = None,
                  usage: Usage | None = None, choices: bool = True,
                  final: str | None = None) -> str:
            """`delta` holds only the fields that are set, as OpenAI sends them; `final`: the
            answer's finish reason, on the last chunk before [DONE]."""
            payload = {**head, "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason}] if choices else []}
            if usage is not None:
                payload["usage"] = usage.model_dump()
            if final is not None:
                # The last chunk before [DONE] says what happened (sources, hand-off).
                service = chat.finished("".join(pieces), final)
                if service is not None:
                    payload["service"] = service
            return sse_data(payload)

        last: GenerationChunk | None = None
        pieces: list[str] = []
        try:
            yield event({"role": "assistant", "content": ""})
            chunk = self._first
            while chunk is not None:
                last = chunk
                measured.tokens(chunk.prompt_tokens, chunk.completion_tokens)
                if chunk.text:
                    measured.content_sent()
                    pieces.append(chunk.text)
                    yield event({"content": chunk.text})
                if chunk.finish_reason is not None:
                    if (substitute := chat.blank_answer_reply("".join(pieces))) is not None:
                        measured.content_sent()
                        pieces.append(substitute)
                        yield event({"content": substitute})
                    yield event({}, finish_reason=chunk.finish_reason,
                                final=None if include_usage else chunk.finish_reason)
                chunk = await _next_before(self._stream, chat.deadline)
            if include_usage and last is not None:
                yield event({}, usage=_usage(last), choices=False,
                            final=last.finish_reason or "")
            measured.succeeded()
        except asyncio.CancelledError:
            raise  # client went away: nothing more can be sent; close() records it
        except Exception as exc:  # noqa: BLE001 - every failure becomes an in-band error
            error = api_error_for(exc, chat.request_id)
            measured.errored(error.status, error.code)
            yield sse_error_event(error)
        finally:
            await _close(self._stream)
        yield SSE_DONE

    async def close(self) -> None:
        await _close(self._stream)
        self._chat.metrics.client_disconnected()  # no-op when events() recorded the outcome


def served_weights(model: ModelConfig) -> str:
    """The weights a replica of `model` loads: resolved here as the replica resolves them
    (common/model_source.py), so /v1/models needs no call that would wake a replica
    scaled to zero. A model this node cannot resolve is reported by its configured source."""
    try:
        return resolve_model_path(model)
    except ModelNotAvailableError:
        return model.source


def _usage(chunk: GenerationChunk) -> Usage:
    return Usage(
        prompt_tokens=chunk.prompt_tokens,
        completion_tokens=chunk.completion_tokens,
        total_tokens=chunk.prompt_tokens + chunk.completion_tokens,
    )


async def _replay(text: str, size: int) -> AsyncIterator[GenerationChunk]:
    """A fixed text as engine chunks of `size` characters, the last one finished."""
    pieces = [text[i:i + size] for i in range(0, len(text), size)] or [""]
    for piece in pieces[:-1]:
        yield GenerationChunk(piece, 0, 0, None)
    yield GenerationChunk(pieces[-1], 0, 0, "stop")


async def _next_before(
    stream: AsyncIterator[GenerationChunk], deadline: float
) -> GenerationChunk | None:
    """The next chunk, None at the end; TimeoutError once `deadline` has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    try:
        return await asyncio.wait_for(anext(stream), timeout=remaining)
    except StopAsyncIteration:
        return None


async def _close(stream: AsyncIterator[GenerationChunk]) -> None:
    """Close a replica stream; for an unfinished stream this cancels the engine request."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing must never mask the request's own outcome
            logger.debug("closing a replica stream failed", exc_info=True)
