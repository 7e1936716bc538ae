"""`ModelDeployment`: the Ray Serve replica that owns one engine for one model.

The same class is deployed once per model (text, vision) under the name in the config, with
`ModelDeployment.options(name=...)`. Replica count, autoscaling, resources and health-check
periods come from the Serve config's `deployments:` section, not from code.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable

from ray import serve

from configs.schema import ModelConfig
from common.coalesce import coalesced
from common.serve_logging import use_serve_logging
from model_server.engine_protocol import (
    ChatEngine,
    EngineRequest,
    EngineUnavailableError,
    GenerationChunk,
    ReplicaAccepted,
)
from common.model_source import resolve_model_path

logger = logging.getLogger("cs_assistant.model_deployment")

# How often a replica looks at its engine. Checking is a flag read; a dead engine is noticed
# within this time, against 3 failed health checks (15 s and more) through Serve.
ENGINE_WATCH_PERIOD_S = 0.5
ENGINE_DIED_EXIT_CODE = 70  # EX_SOFTWARE: the replica ends itself because its engine died


def exit_process() -> None:
    """End this replica's process now. Serve sees the actor die, drops it from every router and
    starts a replacement; there is nothing to drain (the engine is gone)."""
    logging.shutdown()
    os._exit(ENGINE_DIED_EXIT_CODE)


@serve.deployment
class ModelDeployment:
    """Serves chat requests for one model from one engine; Serve restarts it when unhealthy."""

    async def __init__(
        self,
        model: ModelConfig,
        engine_cls: type[ChatEngine] | None = None,
        on_engine_death: Callable[[], None] = exit_process,
    ):
        """`on_engine_death` runs once when the engine dies (tests pass a recorder)."""
        use_serve_logging()
        # Resolve before importing vLLM: a missing model fails the deploy with a clear message.
        model_path = resolve_model_path(model)
        if engine_cls is None:
            from model_server.vllm.engine import VLLMChatEngine

            engine_cls = VLLMChatEngine
        self._model = model
        self._engine = engine_cls(model, model_path)
        await self._engine.start()
        self._on_engine_death = on_engine_death
        self._leaving = False
        self._watch = asyncio.get_running_loop().create_task(self._leave_when_engine_dies())

    async def _leave_when_engine_dies(self) -> None:
        """A replica whose engine died must leave the pool at once: alive, it would answer
        every request with an error and, being the least loaded, attract more of them until
        Serve's health checks fail (and the ingress's one retry could land on it again). So it
        ends itself; its requests in flight are lost with the engine either way, and the
        ingress retries those that had no output yet. Ending the process is what removes it
        from the routers: a call that meets a dead actor marks it dead in the caller's router
        at once, while an error from a live replica does not."""
        while not self._engine.is_dead():
            await asyncio.sleep(ENGINE_WATCH_PERIOD_S)
        self._leave("the watchdog")

    def _leave(self, noticed_by: str) -> None:
        if self._leaving:
            return
        self._leaving = True
        logger.error("the engine of %s died (noticed by %s); this replica exits so that it "
                     "leaves the pool now (Serve starts a replacement)", self._model.name,
                     noticed_by)
        self._on_engine_death()

    async def chat(
        self, request: EngineRequest
    ) -> AsyncIterator[ReplicaAccepted | GenerationChunk]:
        """`ReplicaAccepted`, then the answer; Serve cancels this generator when the caller goes
        away. A request that meets a dead engine ends the replica then, without waiting for the
        watchdog's next look: requests arriving in between would each be sent back (and retried
        once) by a replica that routers still consider the least loaded."""
        if self._engine.is_dead():
            self._leave(f"request {request.request_id}")
        # One line per call, when this replica takes it: Serve writes it to this replica's
        # own log file at once, so a request can be tied to the replica that served it even
        # when the replica or its node is killed mid-answer. Serve's access-log line for the
        # call comes only when the call ends, which a killed replica's calls never do.
        logger.info("request %s accepted", request.request_id)
        yield ReplicaAccepted()
        try:
            async for chunk in self._batched(self._engine.chat(request)):
                yield chunk
        except EngineUnavailableError:
            self._leave(f"request {request.request_id}")
            raise

    def _batched(self, chunks: AsyncIterator[GenerationChunk]) -> AsyncIterator[GenerationChunk]:
        """The engine's chunks as the model's stream_batching sends them to the ingress: one
        message per batch of tokens. The engine already merges what this replica has not taken
        yet (ChatEngine.chat); holding a token for the next ones (max_delay_ms) is this
        replica's, and with 0 the engine's chunks go as they come, with no pump in between."""
        batching = self._model.stream_batching
        if batching.max_delay_ms <= 0:
            return chunks
        return coalesced(chunks, GenerationChunk.merged, batching.max_tokens,
                         batching.max_delay_ms / 1000)

    async def ping(self) -> str:
        """Cheap liveness probe used by the ingress readiness endpoint."""
        return self._model.name

    async def check_health(self) -> None:
        """Called by Serve every `health_check_period_s`; raising marks the replica unhealthy,
        and Serve replaces it (this is how a dead engine process gets its replica restarted)."""
        await self._engine.check_health()

    async def __del__(self):
        # Serve calls this on graceful shutdown (scale-down, redeploy) after draining requests.
        watch = getattr(self, "_watch", None)  # absent when __init__ failed
        if watch is not None:
            watch.cancel()
        engine = getattr(self, "_engine", None)
        if engine is not None:
            await engine.shutdown()
