"""The chat-completions logic behind the HTTP routes: validate, plan, forward, format.

One request, top to bottom (`prepare`, then `complete` or `open_stream`):
1. the one validation step (router/api/valid_request.py) gives a `ValidRequest`: schema, key,
   shop, route, limits, images;
2. the shop layer's first fixed point, `shop.plan` (shop/layer.py): a fixed reply, a curated or
   cached answer, or the model's input;
3. the answer's chunks: the plan's reply, or the model replica's stream (a `ChatStreamer`);
4. the shop layer's second fixed point, `shop.finish`, with the whole answer: the response's
   `service` object, a text instead of a blank answer;
5. OpenAI's response shapes: one JSON body, or SSE chunks.

Transport-free: model replicas are reached through `ChatStreamer` callables (in production the
replica client, router/replica_client.py; in unit tests plain async generators), so this module
never imports Ray.

Streaming contract: the first engine chunk is awaited before the HTTP status is sent, so errors
found by the engine up front (prompt longer than the context, unprocessable image) are real 4xx
responses. After that a failure is sent in-band as an SSE error event followed by `data: [DONE]`,
and the stream always ends with `data: [DONE]`.

Metrics: each request carries a `RequestMetrics` (router/observability/metrics.py). This module
records what happens inside an answer (route, image checks, content chunks, tokens, the in-band
outcome of a stream); the ingress records the HTTP outcome of everything else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from common.model_source import ModelNotAvailableError, resolve_model_path
from configs.schema import AppConfig, ModelConfig
from model_server.engine_protocol import EngineRequest, GenerationChunk
from router.access.api_keys import Caller
from router.api.errors import APIError, api_error_for, sse_error_event
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
from router.api.valid_request import RequestValidator, ValidRequest
from router.engine_params import chat_template_kwargs_for, sampling_for
from router.images.inputs import ImageInputs
from router.observability.metrics import RequestMetrics
from router.routing import RouteDecision
from shop.assistant import ShopRequestError
from shop.layer import Finish, NoShops, Plan, ShopLayer

logger = logging.getLogger("cs_assistant.chat_service")

ChatStreamer = Callable[[EngineRequest], AsyncIterator[GenerationChunk]]
SSE_DONE = "data: [DONE]\n\n"
# A cached or curated answer is streamed in pieces of this many characters, so a client sees
# the same shape of stream as from a model.
REPLAY_CHUNK_CHARS = 24


@dataclass(frozen=True)
class PreparedChat:
    """A validated request and its shop's plan, ready to forward."""

    valid: ValidRequest
    plan: Plan
    engine_request: EngineRequest
    created: int
    deadline: float  # time.monotonic() by which the request must finish
    metrics: RequestMetrics

    @property
    def request(self) -> ChatCompletionRequest:
        return self.valid.request

    @property
    def route(self) -> RouteDecision:
        return self.valid.route

    @property
    def request_id(self) -> str:
        return self.engine_request.request_id

    def finish(self, answer: str, finish_reason: str | None) -> Finish:
        """The shop's second fixed point, once per request with the whole answer; a hand-off
        it decides is counted here."""
        finished = self.valid.shop.finish(self.plan, answer, finish_reason)
        if finished.handoff is not None:
            self.metrics.shop_handed_off(self.plan.shop_id, finished.handoff)
        return finished


class ChatService:
    """Serves /v1/chat/completions and /v1/models for the configured models."""

    def __init__(self, config: AppConfig, streamers: dict[str, ChatStreamer],
                 shops: ShopLayer | NoShops | None = None, images: ImageInputs | None = None):
        missing = {m.modality for m in config.models} - set(streamers)
        if missing:
            raise ValueError(f"no replica handle for modalities {sorted(missing)}")
        self._config = config
        self._limits = config.limits
        self._streamers = streamers
        self._started = int(time.time())
        self._weights = {m.name: served_weights(m) for m in config.models}
        self.shops = shops if shops is not None else NoShops()
        self.validator = RequestValidator(config, self.shops, images)

    def start(self) -> None:
        """Start the worker process that parses large bodies (about a second), now rather than
        on the first large request."""
        self.validator.parser.start()

    def close(self) -> None:
        self.validator.parser.close()

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

    def shop_listing(self, caller: Caller) -> list[dict]:
        """GET /v1/shops: the shops this key may use."""
        return [shop for shop in self.shops.listing() if caller.may_use(shop["id"])]

    async def prepare(
        self, body: bytes, request_id: str, metrics: RequestMetrics, caller: Caller,
        shop_id: str | None = None,
    ) -> PreparedChat:
        """Validate a request body, then let its shop plan the answer (the shop layer's first
        fixed point); raise APIError (4xx) on any problem."""
        started = time.monotonic()
        valid = await self.validator.validate(body, caller, shop_id, metrics)
        try:
            plan = valid.shop.plan(valid.turn())
        except ShopRequestError as exc:
            raise APIError.invalid_request(exc.message, param=exc.param) from None
        metrics.shop_planned(plan)
        engine_request = EngineRequest(
            request_id=request_id,
            messages=plan.messages,
            sampling=sampling_for(valid.request, plan.sampling, self._limits),
            chat_template_kwargs=chat_template_kwargs_for(valid.request, plan.enable_thinking),
        )
        return PreparedChat(valid, plan, engine_request, int(time.time()),
                            started + self._limits.request_timeout_s, metrics)

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
        answer = "".join(pieces)
        finished = chat.finish(answer, last.finish_reason)
        return ChatCompletionResponse(
            id=chat.request_id,
            created=chat.created,
            model=chat.route.model,
            choices=[
                Choice(
                    message=AssistantMessage(content=finished.substitute or answer),
                    finish_reason=last.finish_reason,
                )
            ],
            usage=_usage(last),
            service=finished.service,
        )

    def _engine_stream(self, chat: PreparedChat) -> AsyncIterator[GenerationChunk]:
        """The answer's chunks: from the model's replica, or the shop's fixed reply with no
        tokens (no model was asked): a hand-off as one chunk, a curated or cached answer in
        pieces as a model would stream it."""
        reply = chat.plan.reply
        if reply is not None:
            return _replay(reply, REPLAY_CHUNK_CHARS if chat.plan.replayed else len(reply) or 1)
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

        def event(delta: dict, finish_reason: str | None = None, usage: Usage | None = None,
                  choices: bool = True, service: dict | None = None) -> str:
            """`delta` holds only the fields that are set, as OpenAI sends them; `service` goes
            on the last chunk before [DONE] (sources, hand-off)."""
            payload = {**head, "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason}] if choices else []}
            if usage is not None:
                payload["usage"] = usage.model_dump()
            if service is not None:
                payload["service"] = service
            return sse_data(payload)

        last: GenerationChunk | None = None
        finished: Finish | None = None
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
                    finished = chat.finish("".join(pieces), chunk.finish_reason)
                    if finished.substitute is not None:
                        measured.content_sent()
                        yield event({"content": finished.substitute})
                    yield event({}, finish_reason=chunk.finish_reason,
                                service=None if include_usage else finished.service)
                chunk = await _next_before(self._stream, chat.deadline)
            if include_usage and last is not None:
                finished = finished or chat.finish("".join(pieces), last.finish_reason)
                yield event({}, usage=_usage(last), choices=False, service=finished.service)
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
