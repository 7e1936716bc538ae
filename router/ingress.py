"""The HTTP ingress: a Serve deployment wrapping a FastAPI app with thin OpenAI-compatible routes.

Routes parse nothing themselves: they read the (size-capped) body, call `ChatService`, and turn
every exception into the OpenAI error envelope through `api_error_for`, in one place. The FastAPI
app is built per replica in `__serve_build_asgi_app__`, so no module-level app object holds state.
Admission (429/503 before generation) is router/replica_client.py; metric instruments are
router/observability/serve_instruments.py; API keys and per-key limits are router/access/.

Every /v1 route authenticates first (401/403) and counts against the key's limits (429) before
the body is even read, so a refused client costs almost nothing. /health and /ready are
internal (load balancers, Serve): key-free, and not exposed to the internet (README "Ports").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi_offline import FastAPIOffline
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from configs.schema import PROJECT_ROOT, AppConfig
from router.access.api_keys import Caller, KeyStore
from router.access.rate_limits import Admission, RateLimiter
from router.replica_client import handle_streamer, serve_running_replicas
from router.web.chat_page import install_chat_page
from router.chat_service import ChatService, ChatStream
from router.api.errors import APIError, api_error_for
from router.observability.metrics import IngressMetrics
from router.api.openapi import CHAT_COMPLETIONS_OPENAPI, install_openapi
from router.api.request_body import (
    RequestIdMiddleware,
    check_content_type,
    new_request_id,
    read_body,
    request_id_of,
)
from router.observability.serve_instruments import gauge_refresh_period_s, serve_instruments
from common.serve_logging import use_serve_logging
from shop.directory import ShopDirectory

logger = logging.getLogger("cs_assistant.ingress")

READINESS_TIMEOUT_S = 5.0
SHOP_HEADER = "x-shop-id"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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


@serve.deployment
@serve.ingress()
class Ingress:
    """OpenAI-compatible front door: routes each chat request to the text or vision model."""

    async def __init__(
        self,
        config: AppConfig,
        text_model: DeploymentHandle,
        vision_model: DeploymentHandle | None = None,
    ):
        use_serve_logging()
        handles = {"text": text_model, "vision": vision_model}
        self._config = config
        self._text_model = text_model
        self._metrics = IngressMetrics.for_app(serve_instruments, config)
        streamers = {
            model.modality: handle_streamer(
                handles[model.modality], model, self._metrics.replica_retried,
                serve_running_replicas(model.deployment_name))
            for model in config.models
        }
        # Indexing the knowledge bases takes about a second per shop; it happens once here.
        shops = ShopDirectory(config.shops, PROJECT_ROOT) if config.shops else None
        self._service = ChatService(config, streamers, shops,
                                    on_cache_dropped=self._metrics.cache_dropped)
        if self._service.cache is not None:
            self._metrics.watch_cache(self._service.cache.stats)
        self._service.parser.start()
        self._keys = KeyStore(config.access, PROJECT_ROOT, self._metrics.shops)
        self._limiter = limiter_for(config, self._metrics)
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._refresh_gauges())]
        if config.access.keys_file:
            self._background.append(loop.create_task(self._reload_every(
                config.access.reload_check_s, self._keys.refresh_if_changed, "API keys")))
        if config.shops:
            self._background.append(loop.create_task(self._reload_every(
                config.shops.reload_check_s, self._service.refresh_knowledge,
                "knowledge bases")))

    async def _refresh_gauges(self) -> None:
        period = gauge_refresh_period_s()
        while True:
            await asyncio.sleep(period)
            try:
                self._metrics.refresh_gauges()
            except Exception:  # noqa: BLE001 - metrics must never take the ingress down
                logger.warning("refreshing gauges failed", exc_info=True)

    async def _reload_every(self, period_s: float, reload: Callable[[], object],
                            what: str) -> None:
        """Pick up edited files (knowledge bases, API keys) without a restart; reloading runs in
        a worker thread, and requests use the previous version until the new one is in."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await asyncio.to_thread(reload)
            except Exception:  # noqa: BLE001 - a reload problem must never take the ingress down
                logger.warning("refreshing the %s failed", what, exc_info=True)

    async def __del__(self):
        # Serve calls this on graceful shutdown after draining requests: stop the body-parsing
        # worker process (absent when __init__ failed early).
        service = getattr(self, "_service", None)
        if service is not None:
            service.parser.close()

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self._service, self._metrics, self._config, self._text_model,
                         self._keys, self._limiter)


def limiter_for(config: AppConfig, metrics: IngressMetrics) -> RateLimiter:
    # A lease outlives any request (request_timeout_s); one left by a dead replica then expires.
    return RateLimiter(config.access, lease_ttl_s=config.limits.request_timeout_s + 30,
                       on_limited=metrics.rate_limited,
                       on_store_error=metrics.rate_limit_store_failed)


def build_api(
    service: ChatService, metrics: IngressMetrics, config: AppConfig,
    text_model: DeploymentHandle, keys: KeyStore | None = None,
    limiter: RateLimiter | None = None,
) -> FastAPI:
    """The FastAPI app: routes, and error handlers that keep every error in the OpenAI shape.
    Without `keys`/`limiter` they are built from `config.access` (tests, tools)."""
    keys = keys or KeyStore(config.access, PROJECT_ROOT, metrics.shops)
    limiter = limiter or limiter_for(config, metrics)
    docs = config.api_docs
    about = {"title": "Customer-service assistant",
             "description": "OpenAI-compatible chat completions for shops' customer service, "
             "routed by content to text or vision models. Authorization: Bearer <API key>."}
    # /docs with Swagger UI's files served from the package: the stock page loads them from a
    # CDN, which an offline laptop or a locked-down cluster cannot reach (a blank page).
    api = (FastAPIOffline(docs_url="/docs", redoc_url=None, static_url="/docs/static", **about)
           if docs else FastAPI(docs_url=None, redoc_url=None, openapi_url=None, **about))
    api.add_middleware(RequestIdMiddleware)
    install_openapi(api, config)
    install_chat_page(api, config)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths and wrong methods never reach a route; count them like any refusal.
        error = APIError.http_error(exc.status_code)
        metrics.start().errored(error.status, error.code)
        return error_response(error)

    @api.post("/v1/chat/completions", openapi_extra=CHAT_COMPLETIONS_OPENAPI)
    async def chat_completions(request: Request) -> Response:
        """An OpenAI chat completion (streamed with `stream: true`) from the shop's assistant;
        X-Shop-Id chooses the shop when the key serves several."""
        request_id = new_request_id()  # replaced by the request's own id below
        measured = metrics.start()
        admission: Admission | None = None
        try:
            request_id = request_id_of(request)
            caller = keys.authenticate(request.headers.get("authorization"))
            measured.key_id = caller.key_id
            admission = await limiter.admit(caller, chat=True)
            check_content_type(request.headers.get("content-type"))
            body = await read_body(request, config.limits)
            chat = await service.prepare(body, request_id, measured, caller,
                                         request.headers.get(SHOP_HEADER))
            # One line ties the request id (what a shopper's complaint quotes) to the key and
            # the shop; Serve's access log adds status and latency under the same id.
            logger.info("request %s key=%s shop=%s route=%s", request_id, caller.key_id,
                        chat.shop.config.id if chat.shop else "-", chat.route.modality)
            # x-route tells clients and logs which model answered; x-request-id (= the
            # completion's id) is added by Serve's proxy.
            headers = {"x-route": chat.route.modality, **admission.headers}
            if chat.request.stream:
                # From here the stream records its own outcome (success, in-band error, or
                # disconnect when the response closes it) and settles the key's usage.
                stream = await service.open_stream(chat)  # a refusal here settles below
                settled, admission = admission, None
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
            if admission is not None:
                error.headers = {**admission.headers, **error.headers}
            return error_response(error)
        finally:
            if admission is not None:
                await asyncio.shield(limiter.settle(admission, measured.total_tokens))

    async def listing(request: Request, data: Callable[[Caller], list[dict]]) -> JSONResponse:
        try:
            caller = keys.authenticate(request.headers.get("authorization"))
            admission = await limiter.admit(caller, chat=False)
        except APIError as error:
            return error_response(error)
        return JSONResponse({"object": "list", "data": data(caller)}, headers=admission.headers)

    @api.get("/v1/shops")
    async def list_shops(request: Request) -> JSONResponse:
        """The shops this API key may name in X-Shop-Id: ids, names and languages."""
        return await listing(request, service.shop_listing)

    @api.get("/v1/models")
    async def list_models(request: Request) -> JSONResponse:
        """The models behind the endpoint (OpenAI's list shape)."""
        return await listing(request, lambda caller: service.model_list().model_dump()["data"])

    @api.get("/health", include_in_schema=False)
    async def health() -> JSONResponse:
        """Liveness: the ingress process answers."""
        return JSONResponse({"status": "ok"})

    @api.get("/ready", include_in_schema=False)
    async def ready() -> JSONResponse:
        """Readiness: a text-model replica answers. The vision model may be scaled to zero and
        is not probed, since a probe would wake it."""
        try:
            await asyncio.wait_for(text_model.ping.remote(), timeout=READINESS_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return JSONResponse({"status": "not_ready"}, status_code=503)
        return JSONResponse({"status": "ready"})

    return api
