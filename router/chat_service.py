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

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from common.coalesce import coalesced
from common.model_source import ModelNotAvailableError, resolve_model_path
from configs.schema import AppConfig, ModelConfig
from model_server.engine_protocol import EngineRequest, GenerationChunk
from router.access.api_keys import Caller
from router.api.error_table import ErrorKind
from router.api.errors import APIError
from router.api.protocol import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ModelCard,
    ModelList,
    ToolCall,
    ToolCallFunction,
)
from router.api.valid_request import RequestValidator, ValidRequest
from router.chat_stream import (
    ChatStream,
    close_stream,
    next_before,
    openai_finish_reason,
    replay,
    usage_of,
)
from router.engine_params import chat_template_kwargs_for, output_format_for, sampling_for
from router.images.inputs import ImageInputs
from router.observability.metrics import RequestMetrics
from router.routing import RouteDecision
from shop.assistant import ShopRequestError
from shop.guard.verdict import ReleaseGate
from shop.layer import Finish, NoShops, Plan, ShopLayer

logger = logging.getLogger("cs_assistant.chat_service")

ChatStreamer = Callable[[EngineRequest], AsyncIterator[GenerationChunk]]
# A cached or curated answer is streamed in pieces of this many characters, so a client sees
# the same shape of stream as from a model.
REPLAY_CHUNK_CHARS = 24
# A replaced answer's log line carries the failed claim, cut to this length.
CLAIM_LOG_CHARS = 120


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

    def gate(self) -> ReleaseGate | None:
        """The shop's release gate for a streamed answer (None: send text as it comes)."""
        return self.valid.shop.gate(self.plan)

    def openai_finish_reason(self, finish_reason: str | None, called_tools: bool) -> str | None:
        """The answer's finish reason as OpenAI gives it; a request that shaped its answer
        (tools, JSON) is counted by shape and finish."""
        reason = openai_finish_reason(finish_reason, called_tools)
        shape = self.request.output_shape
        if shape is not None and reason is not None:
            self.metrics.shaped_answer(shape, reason)
        return reason

    def finish(self, answer: str, finish_reason: str | None,
               gate: ReleaseGate | None = None) -> Finish:
        """The shop's second fixed point, once per request with the whole answer; a hand-off
        and a guard verdict it decides are counted here, and a replaced answer is logged with
        the claim that failed (nothing else of the shopper's conversation)."""
        finished = self.valid.shop.finish(self.plan, answer, finish_reason, gate)
        shop = self.plan.shop_id
        if finished.handoff is not None:
            self.metrics.shop_handed_off(shop, finished.handoff)
        guard = finished.guard
        if guard is not None:
            reason = guard.failure.reason if guard.failure is not None else "none"
            self.metrics.shop_guard_verdict(shop, guard.verdict, reason)
            if guard.failure is not None:
                # An answer about a shopper's order may quote it: its claim is not logged.
                personal = self.plan.decision is not None and self.plan.decision.order is not None
                claim = "(order data, not logged)" if personal else \
                    guard.failure.claim[:CLAIM_LOG_CHARS]
                logger.info("answer %s by the guard: request_id=%s shop=%s reason=%s claim=%r",
                            guard.verdict, self.request_id, shop, reason, claim)
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
        self._batch_tokens = {m.modality: m.stream_batching.max_tokens for m in config.models}
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

    def demo_shopper_token(self, caller: Caller, shop_header: str | None,
                           shopper_id: str) -> dict:
        """POST /v1/demo/shopper-token: a token for one of the shop's demo shoppers (the chat
        page's "Sign in as"); 404 for any other shopper, and in a shop that lists none."""
        shop = self.validator.shop_for(shop_header, caller)
        minted = shop.demo_token(shopper_id)
        if minted is None:
            raise APIError.of(ErrorKind.DEMO_SHOPPER_NOT_FOUND, shop_id=shop.id or "-",
                              shopper=shopper_id)
        token, ttl_s = minted
        return {"shop": shop.id, "shopper": shopper_id, "token": token, "expires_in": ttl_s,
                "header": "X-Shopper-Token"}

    def shop_listing(self, caller: Caller) -> list[dict]:
        """GET /v1/shops: the shops this key may use."""
        return [shop for shop in self.shops.listing() if caller.may_use(shop["id"])]

    async def prepare(
        self, body: bytes, request_id: str, metrics: RequestMetrics, caller: Caller,
        shop_id: str | None = None, shopper_token: str | None = None,
    ) -> PreparedChat:
        """Validate a request body, then let its shop plan the answer (the shop layer's first
        fixed point); raise APIError (4xx) on any problem."""
        started = time.monotonic()
        valid = await self.validator.validate(body, caller, shop_id, metrics, shopper_token)
        try:
            plan = await valid.shop.plan(valid.turn())
        except ShopRequestError as exc:
            raise APIError.invalid_request(exc.message, param=exc.param) from None
        metrics.shop_planned(plan)
        output = output_format_for(valid.request, valid.model, plan.enable_thinking)
        engine_request = EngineRequest(
            request_id=request_id,
            messages=plan.messages,
            sampling=sampling_for(valid.request, plan.sampling, self._limits),
            chat_template_kwargs=chat_template_kwargs_for(valid.request, plan.enable_thinking,
                                                          output),
            output=output,
            stream=valid.request.stream,
        )
        return PreparedChat(valid, plan, engine_request, int(time.time()),
                            started + self._limits.request_timeout_s, metrics)

    async def complete(self, chat: PreparedChat) -> ChatCompletionResponse:
        """Run a non-streaming request to the end."""
        chunks: list[GenerationChunk] = []
        stream = self._engine_stream(chat)
        try:
            while True:
                chunk = await next_before(stream, chat.deadline)
                if chunk is None:
                    break
                chunks.append(chunk)
                chat.metrics.tokens(chunk.prompt_tokens, chunk.completion_tokens)
        finally:
            await close_stream(stream)
        if not chunks:
            raise RuntimeError("engine stream ended without output")
        whole = GenerationChunk.merged(chunks)
        finished = chat.finish(whole.text, whole.finish_reason)
        content = finished.text or whole.text
        calls = [ToolCall(id=call.id or "", function=ToolCallFunction(
            name=call.name or "", arguments=call.arguments)) for call in whole.tool_calls]
        return ChatCompletionResponse(
            id=chat.request_id,
            created=chat.created,
            model=chat.route.model,
            choices=[
                Choice(
                    message=AssistantMessage(
                        content=None if calls and not content else content,
                        tool_calls=calls or None,
                        reasoning_content=(whole.reasoning or None)
                        if chat.request.return_reasoning else None),
                    finish_reason=chat.openai_finish_reason(whole.finish_reason, bool(calls)),
                )
            ],
            usage=usage_of(whole),
            service=finished.service,
        )

    def _engine_stream(self, chat: PreparedChat) -> AsyncIterator[GenerationChunk]:
        """The answer's chunks: from the model's replica, or the shop's fixed reply with no
        tokens (no model was asked): a hand-off as one chunk, a curated or cached answer in
        pieces as a model would stream it."""
        reply = chat.plan.reply
        if reply is not None:
            return replay(reply, REPLAY_CHUNK_CHARS if chat.plan.replayed else len(reply) or 1)
        # One SSE event (and one metrics update) per batch: what the replica sent together,
        # and what arrived while the previous event was being sent (never held for company
        # here: the replica's stream_batching.max_delay_ms is the only delay on the path).
        modality = chat.route.modality
        return coalesced(self._streamers[modality](chat.engine_request), GenerationChunk.merged,
                         self._batch_tokens[modality])

    async def open_stream(self, chat: PreparedChat) -> ChatStream:
        """Start a streaming request; raise (mapped to a status code) if its first chunk fails."""
        stream = self._engine_stream(chat)
        try:
            first = await next_before(stream, chat.deadline)
        except BaseException:
            await close_stream(stream)
            raise
        return ChatStream(chat, first, stream)


def served_weights(model: ModelConfig) -> str:
    """The weights a replica of `model` loads: resolved here as the replica resolves them
    (common/model_source.py), so /v1/models needs no call that would wake a replica
    scaled to zero. A model this node cannot resolve is reported by its configured source."""
    try:
        return resolve_model_path(model)
    except ModelNotAvailableError:
        return model.source
