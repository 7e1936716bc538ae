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
    app_config_from_serve_config,
    load_serve_config,
)
from router.chat_service import ChatService
from router.ingress import build_api
from router.metrics import IngressMetrics, prometheus_client_instruments


async def _no_replica(_request):
    raise RuntimeError("the plain ingress has no model replicas")
    yield  # pragma: no cover - makes this an async generator


def create_app() -> FastAPI:
    path = os.environ.get("CS_SERVE_CONFIG", str(PROJECT_ROOT / "configs" / "local-cpu.yaml"))
    config = app_config_from_serve_config(load_serve_config(path), APP_NAME)
    streamers = {m.modality: _no_replica for m in config.models}
    metrics = IngressMetrics(prometheus_client_instruments(CollectorRegistry()),
                             {m.name: m.modality for m in config.models})
    return build_api(ChatService(config, streamers), metrics, config, text_model=None)
