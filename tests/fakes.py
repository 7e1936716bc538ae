"""Test doubles injected through constructors (never monkeypatched in).

`FakeChatEngine` implements the `ChatEngine` protocol: it streams a fixed reply word by word with
a configurable per-token delay, and can fail at start, at a given token, or in its health check.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from ray.exceptions import ActorDiedError, RayTaskError

from configs.schema import AppConfig, RateLimits
from model_server.engine_protocol import (
    ChatEngine,
    ContextLengthError,
    EngineRequest,
    EngineUnavailableError,
    GenerationChunk,
    ReplicaAccepted,
)
from router.access.api_keys import Caller
from router.observability.metrics import IngressMetrics, prometheus_client_instruments


@dataclass
class FakeBehaviour:
    reply: tuple[str, ...] = ("Your ", "order ", "ships ", "today.")
    token_delay_s: float = 0.0
    fail_at_token: int | None = None  # raise RuntimeError before yielding this token index
    reject_input: bool = False  # raise ContextLengthError before the first token
    healthy: bool = True
    fail_start: bool = False
    dead: bool = False  # the engine process is gone (`is_dead`)


class FakeChatEngine(ChatEngine):
    """A deterministic engine; `behaviour` may be changed by the test while it runs."""

    def __init__(self, model, model_path, behaviour: FakeBehaviour | None = None):
        self.model = model
        self.model_path = model_path
        self.behaviour = behaviour or FakeBehaviour()
        self.started = False
        self.shut_down = False
        self.requests: list[EngineRequest] = []
        self.cancelled: list[str] = []

    async def start(self) -> None:
        if self.behaviour.fail_start:
            raise RuntimeError("fake engine failed to start")
        self.started = True

    async def chat(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        self.requests.append(request)
        b = self.behaviour
        if b.reject_input:
            raise ContextLengthError("prompt is too long for the fake context")
        if b.dead:  # as vLLM's AsyncLLM once its engine core is gone
            raise EngineUnavailableError("fake engine is dead")
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in request.messages)
        reply = b.reply[: request.sampling.max_tokens]
        try:
            for i, piece in enumerate(reply):
                if b.fail_at_token == i:
                    raise RuntimeError("fake engine crashed at /internal/path 10.0.0.7")
                if b.token_delay_s:
                    await asyncio.sleep(b.token_delay_s)
                last = i == len(reply) - 1
                finish = ("length" if len(reply) < len(b.reply) else "stop") if last else None
                yield GenerationChunk(piece, prompt_tokens, i + 1, finish)
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled.append(request.request_id)
            raise

    async def check_health(self) -> None:
        if not self.behaviour.healthy:
            raise RuntimeError("fake engine is dead")

    def is_dead(self) -> bool:
        return self.behaviour.dead

    async def shutdown(self) -> None:
        self.shut_down = True


def fake_streamers(config: AppConfig, behaviour: FakeBehaviour | None = None):
    """ChatStreamers backed by one FakeChatEngine per model, as the ingress would see replicas."""
    engines = {m.modality: FakeChatEngine(m, "/fake", behaviour) for m in config.models}
    return {modality: engine.chat for modality, engine in engines.items()}, engines


def recording_metrics(config: AppConfig) -> tuple[IngressMetrics, CollectorRegistry]:
    """Real ingress metrics recorded into a private prometheus_client registry."""
    registry = CollectorRegistry()
    return IngressMetrics.for_app(prometheus_client_instruments(registry), config), registry


class FakeDeploymentHandle:
    """Stands in for a model's DeploymentHandle as `router.replica_client.ReplicaClient` uses it
    (`handle.options(stream=True).chat.remote(request)`), in one of three states:
    - "serving": a replica takes each request (`ReplicaAccepted`), then `engine` answers;
    - "queue_full": Serve refuses each call with the BackPressureError it raises when
      `max_queued_requests` is reached (`status_code`/`retry_after_s` from backpressure_config);
    - "no_replica": calls wait in Serve's queue and no replica ever takes them.
    """

    def __init__(self, engine: FakeChatEngine, state: str = "serving",
                 status_code: int = 429, retry_after_s: float | None = 2.5,
                 losses: tuple[str | None, ...] = ()):
        """`losses`: per call in order, how its replica is lost (None: it is not; later calls
        are served): "replica_died" before any output (Ray's ActorDiedError),
        "engine_dead" before any output (the replica's EngineUnavailableError, as Ray raises
        it), "mid_stream" (ActorDiedError after the first chunk)."""
        self.engine = engine
        self.losses = list(losses)
        self.state = state
        self.status_code = status_code
        self.retry_after_s = retry_after_s
        self.calls: list[_FakeResponse] = []

    def options(self, stream: bool = False) -> FakeDeploymentHandle:
        assert stream, "the ingress streams every replica call"
        return self

    @property
    def chat(self) -> FakeDeploymentHandle:
        return self

    def remote(self, request: EngineRequest) -> _FakeResponse:
        loss = self.losses.pop(0) if self.losses else None
        response = _FakeResponse(self, request, loss)
        self.calls.append(response)
        return response


class _FakeResponse:
    def __init__(self, handle: FakeDeploymentHandle, request: EngineRequest,
                 loss: str | None = None):
        self._handle = handle
        self._loss = loss
        self.request_id = request.request_id
        self._items = self._generate(request)
        self.cancelled = False

    async def _generate(self, request: EngineRequest):
        from ray.serve.exceptions import BackPressureError

        handle = self._handle
        if handle.state == "queue_full":
            raise BackPressureError(num_queued_requests=2, max_queued_requests=2,
                                    status_code=handle.status_code,
                                    retry_after_s=handle.retry_after_s)
        if handle.state == "no_replica":
            await asyncio.Event().wait()
        yield ReplicaAccepted()
        if self._loss == "replica_died":
            raise ActorDiedError()
        if self._loss == "engine_dead":
            raise RayTaskError("chat", "traceback", EngineUnavailableError("engine is dead")
                               ).as_instanceof_cause()
        async for chunk in handle.engine.chat(request):
            yield chunk
            if self._loss == "mid_stream":
                raise ActorDiedError()

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self._items.__anext__()

    def cancel(self) -> None:
        self.cancelled = True
        if self._handle.state == "queue_full":
            # Serve's cancel() re-raises the error of a call whose assignment failed.
            from ray.serve.exceptions import BackPressureError

            raise BackPressureError(num_queued_requests=2, max_queued_requests=2)


# The caller of unit tests that are not about access: a backend key for every shop, no limits.
BACKEND_CALLER = Caller("test-backend", "backend", None, RateLimits())
