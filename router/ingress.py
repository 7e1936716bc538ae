"""The HTTP ingress: a Serve deployment wrapping a FastAPI app with thin OpenAI-compatible routes.

Routes parse nothing themselves: they read the (size-capped) body, call `ChatService`, and turn
every exception into the OpenAI error envelope through `api_error_for`, in one place. The FastAPI
app is built per replica in `__serve_build_asgi_app__`, so no module-level app object holds state.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.serve import metrics as serve_metrics
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from configs.schema import AppConfig, ModelConfig
from deployments.engine_protocol import EngineRequest, GenerationChunk, ReplicaAccepted
from router.chat_service import ChatService, ChatStream, ChatStreamer, new_request_id
from router.errors import APIError, api_error_for
from router.metrics import IngressMetrics, Instrument, MetricSpec, Recorder
from router.validation import check_content_type

logger = logging.getLogger("cs_assistant.ingress")

READINESS_TIMEOUT_S = 5.0
# Retry-After of a 429 when the Serve config's backpressure_config sets none.
DEFAULT_OVERLOAD_RETRY_AFTER_S = 1
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def handle_streamer(handle: DeploymentHandle, model: ModelConfig) -> ChatStreamer:
    """Adapt a model deployment handle to the `ChatStreamer` the service expects.

    Admission happens here, at the Serve boundary:
    - the model's queue is full (`max_queued_requests`): Serve raises BackPressureError at once,
      answered with its configured status (429) and Retry-After;
    - no replica takes the request within `replica_wait.timeout_s` (scaled to zero and starting,
      or saturated): the queued call is cancelled and answered 503 with Retry-After.
    Closing the returned generator early cancels the call on the replica, which aborts the
    request inside the engine (client disconnects, timeouts).
    """
    stream_handle = handle.options(stream=True)
    wait = model.replica_wait

    async def stream(request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        response = None
        finished = False
        try:
            try:
                response = stream_handle.chat.remote(request)
                accepted = await asyncio.wait_for(anext(response), timeout=wait.timeout_s)
            except BackPressureError as exc:
                retry_after = math.ceil(exc.retry_after_s or DEFAULT_OVERLOAD_RETRY_AFTER_S)
                raise APIError.overloaded(model.name, exc.status_code, retry_after) from None
            except TimeoutError:
                raise APIError.no_replica(model.name, wait.timeout_s, wait.retry_after_s) from None
            if not isinstance(accepted, ReplicaAccepted):
                raise RuntimeError(f"replica stream began with {type(accepted).__name__}")
            async for chunk in response:
                yield chunk
            finished = True
        finally:
            if not finished and response is not None:
                cancel_call(response)

    return stream


def cancel_call(response) -> None:
    """Withdraw a replica call: from Serve's queue if no replica has taken it yet, otherwise
    cancel it on the replica (which aborts the engine request). Serve's `cancel()` re-raises
    the error of a call whose assignment already failed (e.g. BackPressureError); there is
    nothing left to cancel then, and the request already has its answer."""
    try:
        response.cancel()
    except Exception:  # noqa: BLE001 - see docstring
        logger.debug("replica call %s had nothing to cancel", response.request_id,
                     exc_info=True)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError.invalid_request("Invalid Content-Length header.")
        if int(declared) > limit:
            raise APIError.payload_too_large(f"The request body is larger than {limit} bytes.")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise APIError.payload_too_large(f"The request body is larger than {limit} bytes.")
        parts.append(part)
    return b"".join(parts)


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


def serve_instruments(spec: MetricSpec) -> Instrument:
    """Instruments exported by the node's Ray metrics agent (see router/metrics.py)."""
    if spec.kind == "counter":
        counter = serve_metrics.Counter(spec.name, spec.description, spec.labels)
        return Recorder(lambda value, labels: counter.inc(value, tags=labels))
    if spec.kind == "gauge":
        gauge = serve_metrics.Gauge(spec.name, spec.description, spec.labels)
        return Recorder(lambda value, labels: gauge.set(value, tags=labels))
    histogram = serve_metrics.Histogram(
        spec.name, spec.description, list(spec.buckets), spec.labels
    )
    return Recorder(lambda value, labels: histogram.observe(value, tags=labels))


def gauge_refresh_period_s() -> float:
    """How often to re-report gauges: once per Ray metrics export interval (floored at 1 s by
    Ray), so a gauge never ages out of the agent (its TTL is two intervals)."""
    import ray

    return max(ray._config.metrics_report_interval_ms(), 1000) / 1000


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
        self._metrics = IngressMetrics(
            serve_instruments, {m.name: m.modality for m in config.models}
        )
        self._service = ChatService(config, streamers)
        self._gauge_refresher = asyncio.get_running_loop().create_task(self._refresh_gauges())

    async def _refresh_gauges(self) -> None:
        period = gauge_refresh_period_s()
        while True:
            await asyncio.sleep(period)
            try:
                self._metrics.refresh_gauges()
            except Exception:  # noqa: BLE001 - metrics must never take the ingress down
                logger.warning("refreshing gauges failed", exc_info=True)

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
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = {404: "No such route.", 405: "Method not allowed on this route."}.get(
            exc.status_code, "HTTP error."
        )
        return error_response(APIError(exc.status_code, message, "invalid_request_error", code))

    @api.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(APIError.invalid_request("Invalid request parameters."))

    @api.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        request_id = new_request_id()
        measured = metrics.start()
        try:
            check_content_type(request.headers.get("content-type"))
            body = await read_body(request, config.limits.max_body_bytes)
            chat = await service.prepare(body, request_id, measured)
            # Serve sets x-request-id itself; x-route tells clients and logs which model answered.
            headers = {"x-route": chat.route.modality}
            if chat.request.stream:
                # From here the stream records its own outcome (success, in-band error, or
                # disconnect when the response closes it).
                return ChatStreamResponse(await service.open_stream(chat), headers)
            response = await service.complete(chat)
            measured.succeeded()
            return JSONResponse(response.model_dump(), headers=headers)
        except asyncio.CancelledError:
            measured.client_disconnected()
            raise
        except Exception as exc:  # noqa: BLE001 - the one place exceptions become statuses
            error = api_error_for(exc, request_id)
            measured.errored(error.status, error.code)
            return error_response(error)

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
