"""The ingress's FastAPI app served by plain uvicorn, without Ray Serve, for the benchmark's
framework-tax comparison (`uvicorn --factory loadtests.plain_ingress:create_app`).

Only routes that need no model replica are meaningful here (`/health`, `/v1/models`): the same app
code as in the Serve deployment, so the difference is Serve's proxy and replica hop.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from configs.schema import (
    APP_NAME,
    PROJECT_ROOT,
    AppConfig,
    app_config_from_serve_config,
    load_serve_config,
)
from router.chat_service import ChatService, ChatStreamer
from router.ingress import build_api
from router.observability.metrics import IngressMetrics, prometheus_client_instruments


async def _no_replica(_request):
    raise RuntimeError("the plain ingress has no model replicas")
    yield  # pragma: no cover - makes this an async generator


def ingress_app(config: AppConfig, streamer: ChatStreamer = _no_replica
                ) -> tuple[FastAPI, ChatService]:
    """The ingress app of `config` in this process, every model answered by `streamer`, its
    metrics in a private registry (also used by body_stall.py and rate_limit_accuracy.py)."""
    metrics = IngressMetrics.for_app(prometheus_client_instruments(CollectorRegistry()), config)
    service = ChatService(config, {m.modality: streamer for m in config.models})
    return build_api(service, metrics, config, text_model=None), service


def create_app() -> FastAPI:
    path = os.environ.get("CS_SERVE_CONFIG", str(PROJECT_ROOT / "configs" / "local-cpu.yaml"))
    return ingress_app(app_config_from_serve_config(load_serve_config(path), APP_NAME))[0]
