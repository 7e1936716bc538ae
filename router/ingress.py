"""The HTTP ingress: the Serve deployment that answers the public port, and the FastAPI app it
serves.

A replica builds its parts once (`Ingress.__init__`): a replica client per model
(router/replica_client.py), the shop layer (shop/layer.py: knowledge bases, response cache), the
chat service, API keys and per-key limits (router/access/), metrics. `build_api` puts them on
the app's state and attaches the routes, which are module-level functions in router/routes.py.
The FastAPI app is built per replica in `__serve_build_asgi_app__`, so no module-level app object
holds state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.exceptions import HTTPException as StarletteHTTPException

from common.serve_logging import use_serve_logging
from configs.schema import PROJECT_ROOT, AppConfig
from router.access.api_keys import KeyStore
from router.access.rate_limits import RateLimiter
from router.api.errors import APIError
from router.api.openapi import install_openapi
from router.api.request_body import RequestIdMiddleware
from router.chat_service import ChatService
from router.observability.metrics import IngressMetrics
from router.observability.serve_instruments import gauge_refresh_period_s, serve_instruments
from router.replica_client import ReplicaClient, serve_running_replicas
from router.routes import IngressParts, error_response, router
from router.web.chat_page import install_chat_page
from shop.layer import shop_layer_for

logger = logging.getLogger("cs_assistant.ingress")


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
        clients = {
            model.modality: ReplicaClient(
                handles[model.modality], model, self._metrics.replica_retried,
                serve_running_replicas(model.deployment_name))
            for model in config.models
        }
        # Indexing the knowledge bases takes about a second per shop; it happens once here.
        shops = shop_layer_for(config.shops, PROJECT_ROOT, self._metrics.cache_dropped,
                               on_order_breaker=self._metrics.order_breaker_changed)
        self._metrics.watch_cache(shops.cache_stats)
        self._metrics.watch_order_breakers(
            [s.id for s in config.shops.catalog if s.orders is not None] if config.shops else [])
        self._service = ChatService(config, {m: c.stream for m, c in clients.items()}, shops)
        self._service.start()
        self._keys = KeyStore(config.access, PROJECT_ROOT, self._metrics.shops)
        self._limiter = limiter_for(config, self._metrics)
        loop = asyncio.get_running_loop()
        self._background = [loop.create_task(self._refresh_gauges())]
        if config.access.keys_file:
            self._background.append(loop.create_task(self._reload_every(
                config.access.reload_check_s, self._keys.refresh_if_changed, "API keys")))
        if shops.reload_check_s is not None:
            self._background.append(loop.create_task(self._reload_every(
                shops.reload_check_s, shops.refresh, "knowledge bases")))

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
            service.close()

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
    """The FastAPI app of one replica: its parts on `app.state`, the routes of router/routes.py,
    and error handlers that keep every error in the OpenAI shape. Without `keys`/`limiter` they
    are built from `config.access` (tests, tools)."""
    keys = keys or KeyStore(config.access, PROJECT_ROOT, metrics.shops)
    limiter = limiter or limiter_for(config, metrics)
    about = {"title": "Customer-service assistant",
             "description": "OpenAI-compatible chat completions for shops' customer service, "
             "routed by content to text or vision models. Authorization: Bearer <API key>."}
    # /docs with Swagger UI's files served from the package: the stock page loads them from a
    # CDN, which an offline laptop or a locked-down cluster cannot reach (a blank page).
    api = (FastAPIOffline(docs_url="/docs", redoc_url=None, static_url="/docs/static", **about)
           if config.api_docs else FastAPI(docs_url=None, redoc_url=None, openapi_url=None,
                                            **about))
    api.state.parts = IngressParts(service, metrics, config, text_model, keys, limiter)
    api.add_middleware(RequestIdMiddleware)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.include_router(router)
    install_openapi(api, config)
    install_chat_page(api, config)
    return api


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Unknown paths and wrong methods never reach a route; counted like any refusal."""
    error = APIError.http_error(exc.status_code)
    request.app.state.parts.metrics.start().errored(error.status, error.code)
    return error_response(error)
