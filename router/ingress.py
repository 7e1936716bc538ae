"""The HTTP ingress: a Serve deployment wrapping a FastAPI app with thin OpenAI-compatible routes.

Routes parse nothing themselves: they read the (size-capped) body, call `ChatService`, and turn
every exception into the OpenAI error envelope through `api_error_for`, in one place. The FastAPI
app is built per replica in `__serve_build_asgi_app__`, so no module-level app object holds state.
Admission (429/503 before generation) is router/admission.py; metric instruments are
router/serve_instruments.py.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from configs.schema import PROJECT_ROOT, AppConfig
from router.admission import handle_streamer
from router.chat_service import ChatService, ChatStream, new_request_id
from router.errors import APIError, api_error_for
from router.metrics import IngressMetrics
from router.request_body import check_content_type, read_body
from router.serve_instruments import gauge_refresh_period_s, serve_instruments
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

    def __init__(self, stream: ChatStream, headers: dict[str, str]):
        super().__init__(stream.events(), media_type="text/event-stream",
                         headers={**SSE_HEADERS, **headers})
        self._chat_stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._chat_stream.close()


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
        handles = {"text": text_model, "vision": vision_model}
        streamers = {
            model.modality: handle_streamer(handles[model.modality], model)
            for model in config.models
        }
        self._config = config
        self._text_model = text_model
        shop_ids = [shop.id for shop in config.shops.catalog] if config.shops else []
        self._metrics = IngressMetrics(
            serve_instruments, {m.name: m.modality for m in config.models}, shop_ids
        )
        # Indexing the knowledge bases takes about a second per shop; it happens once here.
        shops = ShopDirectory(config.shops, PROJECT_ROOT) if config.shops else None
        self._service = ChatService(config, streamers, shops)
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._refresh_gauges())]
        if config.shops:
            self._background.append(loop.create_task(
                self._refresh_knowledge(config.shops.reload_check_s)))

    async def _refresh_gauges(self) -> None:
        period = gauge_refresh_period_s()
        while True:
            await asyncio.sleep(period)
            try:
                self._metrics.refresh_gauges()
            except Exception:  # noqa: BLE001 - metrics must never take the ingress down
                logger.warning("refreshing gauges failed", exc_info=True)

    async def _refresh_knowledge(self, period_s: float) -> None:
        """Pick up edited knowledge-base files without a restart; rebuilding runs in a worker
        thread, requests keep using the previous version until the new one is swapped in."""
        while True:
            await asyncio.sleep(period_s)
            try:
                await asyncio.to_thread(self._service.refresh_knowledge)
            except Exception:  # noqa: BLE001 - a reload problem must never take the ingress down
                logger.warning("refreshing the knowledge bases failed", exc_info=True)

    def __serve_build_asgi_app__(self) -> FastAPI:
        return build_api(self._service, self._metrics, self._config, self._text_model)


def build_api(
    service: ChatService, metrics: IngressMetrics, config: AppConfig,
    text_model: DeploymentHandle,
) -> FastAPI:
    """The FastAPI app: routes, and error handlers that keep every error in the OpenAI shape."""
    api = FastAPI(
        title="Customer-service assistant",
        description="OpenAI-compatible chat completions, routed by content to text or vision "
        "models.",
        docs_url=None,
        redoc_url=None,
    )

    @api.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Unknown paths and wrong methods never reach a route; count them like any refusal.
        error = APIError.http_error(exc.status_code)
        metrics.start().errored(error.status, error.code)
        return error_response(error)

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        request_id = new_request_id()
        measured = metrics.start()
        try:
            check_content_type(request.headers.get("content-type"))
            body = await read_body(request, config.limits.max_body_bytes)
            chat = await service.prepare(body, request_id, measured,
                                         request.headers.get(SHOP_HEADER))
            # Serve sets x-request-id itself; x-route tells clients and logs which model answered.
            headers = {"x-route": chat.route.modality}
            if chat.request.stream:
                # From here the stream records its own outcome (success, in-band error, or
                # disconnect when the response closes it).
                return ChatStreamResponse(await service.open_stream(chat), headers)
            response = await service.complete(chat)
            measured.succeeded()
            return JSONResponse(response.body(), headers=headers)
        except asyncio.CancelledError:
            measured.client_disconnected()
            raise
        except Exception as exc:  # noqa: BLE001 - the one place exceptions become statuses
            error = api_error_for(exc, request_id)
            measured.errored(error.status, error.code)
            return error_response(error)

    @api.get("/v1/shops")
    async def list_shops() -> JSONResponse:
        """The shops a client may name in X-Shop-Id: ids, names and languages."""
        shops = service.shops.listing() if service.shops is not None else []
        return JSONResponse({"object": "list", "data": shops})

    @api.get("/v1/models")
    async def list_models() -> JSONResponse:
        return JSONResponse(service.model_list().model_dump())

    @api.get("/health")
    async def health() -> JSONResponse:
        """Liveness: the ingress process answers."""
        return JSONResponse({"status": "ok"})

    @api.get("/ready")
    async def ready() -> JSONResponse:
        """Readiness: a text-model replica answers. The vision model may be scaled to zero and
        is not probed, since a probe would wake it."""
        try:
            await asyncio.wait_for(text_model.ping.remote(), timeout=READINESS_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - any failure means "not ready"
            return JSONResponse({"status": "not_ready"}, status_code=503)
        return JSONResponse({"status": "ready"})

    return api
