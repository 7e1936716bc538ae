"""The HTTP routes, one module-level function each (as vLLM's `api_router.py` has them):

| route | function |
|---|---|
| POST /v1/chat/completions | `chat_completions` |
| GET /v1/models | `list_models` |
| GET /v1/shops | `list_shops` |
| GET /health | `health` (liveness, key-free) |
| GET /ready | `ready` (readiness, key-free) |

Routes parse nothing themselves: they authenticate, count the request against the key's limits,
read the (size-capped) body, call `ChatService`, and turn every exception into the OpenAI error
envelope through `api_error_for`, in one place. Every /v1 route authenticates first (401/403) and
counts against the key's limits (429) before the body is even read, so a refused client costs
almost nothing. /health and /ready are internal (load balancers, Serve): key-free, and not exposed
to the internet (docs/deploy.md, "Ports (VM cluster)" and "Ports (Kubernetes)").

A replica's parts (`IngressParts`) are on `app.state.parts`, set by `build_api`
(router/ingress.py); routes read them from the request.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from configs.schema import AppConfig
from router.access.api_keys import Caller, KeyStore
from router.access.rate_limits import LimitGrant, RateLimiter
from router.api.errors import APIError, api_error_for
from router.api.openapi import CHAT_COMPLETIONS_OPENAPI
from router.api.request_body import check_content_type, new_request_id, read_body, request_id_of
from router.chat_service import ChatService
from router.chat_stream import ChatStream
from router.observability.metrics import IngressMetrics

logger = logging.getLogger("cs_assistant.ingress")

READINESS_TIMEOUT_S = 5.0
SHOP_HEADER = "x-shop-id"
SHOPPER_TOKEN_HEADER = "x-shopper-token"  # shop/orders/identity.py
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

router = APIRouter()


@dataclass(frozen=True)
class IngressParts:
    """What the routes of one ingress replica use."""

    service: ChatService
    metrics: IngressMetrics
    config: AppConfig
    text_model: Any  # the text model's DeploymentHandle: /ready pings it
    keys: KeyStore
    limiter: RateLimiter


def parts_of(request: Request) -> IngressParts:
    return request.app.state.parts


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=dict(error.headers))


class ChatStreamResponse(StreamingResponse):
    """An SSE response that always closes its `ChatStream`, even when the client disconnects
    before the body starts (the engine request is aborted and the disconnect counted)."""

    def __init__(self, stream: ChatStream, headers: dict[str, str],
                 on_closed: Callable[[], Awaitable[None]]):
        super().__init__(stream.events(), media_type="text/event-stream",
                         headers={**SSE_HEADERS, **headers})
        self._chat_stream = stream
        self._on_closed = on_closed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._chat_stream.close()
            await asyncio.shield(self._on_closed())


@router.post("/v1/chat/completions", openapi_extra=CHAT_COMPLETIONS_OPENAPI)
async def chat_completions(request: Request) -> Response:
    """An OpenAI chat completion (streamed with `stream: true`) from the shop's assistant;
    X-Shop-Id chooses the shop when the key serves several."""
    parts = parts_of(request)
    service, limiter = parts.service, parts.limiter
    request_id = new_request_id()  # replaced by the request's own id below
    measured = parts.metrics.start()
    grant: LimitGrant | None = None
    try:
        request_id = request_id_of(request)
        caller = parts.keys.authenticate(request.headers.get("authorization"))
        measured.key_id = caller.key_id
        grant = await limiter.admit(caller, chat=True)
        check_content_type(request.headers.get("content-type"))
        body = await read_body(request, parts.config.limits)
        chat = await service.prepare(body, request_id, measured, caller,
                                     request.headers.get(SHOP_HEADER),
                                     request.headers.get(SHOPPER_TOKEN_HEADER))
        # One line ties the request id (what a shopper's complaint quotes) to the key and the
        # shop; Serve's access log adds status and latency under the same id.
        logger.info("request %s key=%s shop=%s route=%s", request_id, caller.key_id,
                    chat.plan.shop_id or "-", chat.route.modality)
        # x-route tells clients and logs which model answered; x-request-id (= the completion's
        # id) is added by Serve's proxy.
        headers = {"x-route": chat.route.modality, **grant.headers}
        if chat.request.stream:
            # From here the stream records its own outcome (success, in-band error, or
            # disconnect when the response closes it) and settles the key's usage.
            stream = await service.open_stream(chat)  # a refusal here settles below
            settled, grant = grant, None
            return ChatStreamResponse(
                stream, headers, lambda: limiter.settle(settled, measured.total_tokens))
        response = await service.complete(chat)
        measured.succeeded()
        return JSONResponse(response.body(), headers=headers)
    except asyncio.CancelledError:
        measured.client_disconnected()
        raise
    except Exception as exc:  # noqa: BLE001 - the one place exceptions become statuses
        error = api_error_for(exc, request_id)
        measured.errored(error.status, error.code)
        logger.info("request %s key=%s refused: %s %s", request_id, measured.key_id,
                    error.status, error.code.value)
        if grant is not None:
            error.headers = {**grant.headers, **error.headers}
        return error_response(error)
    finally:
        if grant is not None:
            await asyncio.shield(limiter.settle(grant, measured.total_tokens))


@router.get("/v1/shops")
async def list_shops(request: Request) -> JSONResponse:
    """The shops this API key may name in X-Shop-Id: ids, names and languages."""
    return await _listing(request, parts_of(request).service.shop_listing)


@router.post("/v1/demo/shopper-token")
async def demo_shopper_token(request: Request) -> JSONResponse:
    """Demo sign-in: a short-lived X-Shopper-Token for one of the shop's demo shoppers
    (`{"shopper": "u1001"}`; GET /v1/shops lists them). Shops in production list none, and
    their shoppers' tokens come from the shop's own servers (docs/orders.md)."""
    parts = parts_of(request)
    try:
        caller = parts.keys.authenticate(request.headers.get("authorization"))
        grant = await parts.limiter.admit(caller, chat=False)
        check_content_type(request.headers.get("content-type"))
        body = await read_body(request, parts.config.limits)
        try:
            shopper = json.loads(body)["shopper"]
        except (ValueError, TypeError, KeyError):
            shopper = None
        if not isinstance(shopper, str) or not shopper:
            raise APIError.invalid_request('Send {"shopper": "<demo shopper id>"}.',
                                           param="shopper")
        minted = parts.service.demo_shopper_token(caller, request.headers.get(SHOP_HEADER),
                                                  shopper)
    except APIError as error:
        return error_response(error)
    return JSONResponse(minted, headers={**grant.headers, "Cache-Control": "no-store"})


@router.get("/v1/models")
async def list_models(request: Request) -> JSONResponse:
    """The models behind the endpoint (OpenAI's list shape)."""
    service = parts_of(request).service
    return await _listing(request, lambda caller: service.model_list().model_dump()["data"])


@router.get("/health", include_in_schema=False)
async def health() -> JSONResponse:
    """Liveness: the ingress process answers."""
    return JSONResponse({"status": "ok"})


@router.get("/ready", include_in_schema=False)
async def ready(request: Request) -> JSONResponse:
    """Readiness: a text-model replica answers. The vision model may be scaled to zero and is
    not probed, since a probe would wake it."""
    try:
        await asyncio.wait_for(parts_of(request).text_model.ping.remote(),
                               timeout=READINESS_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - any failure means "not ready"
        return JSONResponse({"status": "not_ready"}, status_code=503)
    return JSONResponse({"status": "ready"})


async def _listing(request: Request, data: Callable[[Caller], list[dict]]) -> JSONResponse:
    """A /v1 list: authenticated and counted like any request, but with no body to read."""
    parts = parts_of(request)
    try:
        caller = parts.keys.authenticate(request.headers.get("authorization"))
        grant = await parts.limiter.admit(caller, chat=False)
    except APIError as error:
        return error_response(error)
    return JSONResponse({"object": "list", "data": data(caller)}, headers=grant.headers)
