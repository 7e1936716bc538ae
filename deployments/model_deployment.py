"""`ModelDeployment`: the Ray Serve replica that owns one engine for one model.

The same class is deployed once per model (text, vision) under the name in the config, with
`ModelDeployment.options(name=...)`. Replica count, autoscaling, resources and health-check
periods come from the Serve config's `deployments:` section, not from code.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from ray import serve

from configs.schema import ModelConfig
from deployments.serve_logging import use_serve_logging
from deployments.engine_protocol import (
    ChatEngine,
    EngineRequest,
    GenerationChunk,
    ReplicaAccepted,
)
from deployments.model_source import resolve_model_path

logger = logging.getLogger("cs_assistant.model_deployment")


@serve.deployment
class ModelDeployment:
    """Serves chat requests for one model from one engine; Serve restarts it when unhealthy."""

    async def __init__(
        self,
        model: ModelConfig,
        engine_cls: type[ChatEngine] | None = None,
    ):
        use_serve_logging()
        # Resolve before importing vLLM: a missing model fails the deploy with a clear message.
        model_path = resolve_model_path(model)
        if engine_cls is None:
            from deployments.vllm_engine import VLLMChatEngine

            engine_cls = VLLMChatEngine
        self._model = model
        self._engine = engine_cls(model, model_path)
        await self._engine.start()

    async def chat(
        self, request: EngineRequest
    ) -> AsyncIterator[ReplicaAccepted | GenerationChunk]:
        """`ReplicaAccepted`, then the answer; Serve cancels this generator when the caller goes
        away."""
        yield ReplicaAccepted()
        async for chunk in self._engine.chat(request):
            yield chunk

    async def ping(self) -> str:
        """Cheap liveness probe used by the ingress readiness endpoint."""
        return self._model.name

    async def check_health(self) -> None:
        """Called by Serve every `health_check_period_s`; raising marks the replica unhealthy,
        and Serve replaces it (this is how a dead engine process gets its replica restarted)."""
        await self._engine.check_health()

    async def __del__(self):
        # Serve calls this on graceful shutdown (scale-down, redeploy) after draining requests.
        engine = getattr(self, "_engine", None)  # absent when __init__ failed
        if engine is not None:
            await engine.shutdown()
