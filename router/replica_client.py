"""The replica client: how the ingress calls a model's replicas through Serve, and why a request
got 429 or 503 before any generation.

`ReplicaClient.stream` is the `ChatStreamer` the chat service calls for one model. A request is
refused here when
- the model's queue is full (Serve's `max_queued_requests`): Serve raises BackPressureError at
  once, answered with the Serve config's status (429) and Retry-After;
- no replica takes it within the model's `replica_wait.timeout_s` (scaled to zero and starting,
  or saturated): the queued call is cancelled and answered 503 with Retry-After.
Closing the returned generator early cancels the call on the replica, which aborts the request
inside the engine (client disconnects, timeouts).

A replica that is lost (its process or node died, or its engine died) costs the requests it was
generating and nothing else:
- before the first chunk of the answer the call has produced nothing, so it is sent once more,
  after a pause in which Serve's router drops the dead replica (a replica whose engine died ends
  its process for that: model_server/replica.py), so the retry goes to another one (or
  waits for a replacement within `replica_wait`);
- a second loss, or a loss after output began, is a 503 `model_unavailable` whose Retry-After is
  the model's measured replacement time (`replica_wait.replacement_s`); for a stream that already
  sent its status it is the in-band error event;
- a 503 for "no replica within the wait" carries the time left until the replacement is ready,
  instead of the cold-start Retry-After, when a replacement is what the request waited for: this
  ingress saw the loss, or Serve reports no running replica of the model (Serve may drop a dead
  replica before any request reaches it; a model at zero replicas by design gets the same answer,
  as its cold start is no shorter than a replacement).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from ray.exceptions import RayActorError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from configs.schema import ModelConfig
from model_server.engine_protocol import (
    EngineRequest,
    EngineUnavailableError,
    GenerationChunk,
    ReplicaAccepted,
)
from router.api.errors import APIError, ErrorKind

logger = logging.getLogger("cs_assistant.replica_client")

# Retry-After of a 429 when the Serve config's backpressure_config sets none.
DEFAULT_OVERLOAD_RETRY_AFTER_S = 1
# Longest wait for Serve's status on the way to a 503.
STATUS_TIMEOUT_S = 5
# Pause before sending a call again after a replica loss. Serve's router drops a dead replica
# in a done-callback it schedules on its own event loop; sent at once, the retry could be routed
# before that ran, to the same dead replica (seen under load in the chaos tests).
RETRY_PAUSE_S = 0.1


# Why a replica call was lost: the `reason` label of cs_replica_retries_total.
REPLICA_DIED = "replica_died"  # the actor, its process or its node is gone (or unreachable)
ENGINE_DEAD = "engine_dead"  # the replica answered that its engine process died


def loss_reason(exc: BaseException) -> str | None:
    """Why `exc` means the replica was lost, or None when it is the request's own failure.
    gRPC transport errors arrive as ActorUnavailableError (a RayActorError), and the engine's
    error crosses Ray as a RayTaskError that is also an EngineUnavailableError."""
    if isinstance(exc, EngineUnavailableError):
        return ENGINE_DEAD
    if isinstance(exc, RayActorError):
        return REPLICA_DIED
    return None


class ReplicaClient:
    """Calls one model's replicas through its deployment handle; one per model per ingress
    replica. Its only state is when it last saw a replica of the model lost, which shapes the
    Retry-After of the 503s that follow (see the module doc)."""

    def __init__(self, handle: DeploymentHandle, model: ModelConfig,
                 on_retry: Callable[[str, str], None] | None = None,
                 running_replicas: Callable[[], Awaitable[int]] | None = None):
        """`on_retry(model, reason)` is called for each call sent again after a replica loss;
        `running_replicas()` asks Serve how many replicas of the model run (only on the way to
        a 503, never per request)."""
        self._handle = handle.options(stream=True)
        self._model = model
        self._wait = model.replica_wait
        self._on_retry = on_retry
        self._running_replicas = running_replicas
        self.last_loss = -math.inf  # time.monotonic() of the last replica loss seen here

    async def stream(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        """The answer's chunks. Closing this generator early cancels the call on the replica,
        which aborts the request inside the engine."""
        response, chunk = await self._first_chunk(request)
        finished = False
        try:
            if chunk is not None:
                yield chunk
                async for chunk in response:
                    yield chunk
            finished = True
        except BaseException as exc:
            if loss_reason(exc) is None:
                raise
            # Output was already sent: nothing can be retried without repeating it.
            self.last_loss = time.monotonic()
            raise self._unavailable(request.request_id) from None
        finally:
            if not finished:
                cancel_call(response)

    async def _first_chunk(self, request: EngineRequest):
        """(call, its first chunk): a call whose replica is lost before any output is sent once
        more; the second loss is a 503."""
        model, wait = self._model, self._wait
        for attempt in (1, 2):
            response = None
            try:
                try:
                    response = self._handle.chat.remote(request)
                    accepted = await asyncio.wait_for(anext(response), timeout=wait.timeout_s)
                except BackPressureError as exc:
                    retry_after = math.ceil(exc.retry_after_s or DEFAULT_OVERLOAD_RETRY_AFTER_S)
                    raise APIError.overloaded(model.name, exc.status_code, retry_after) from None
                except TimeoutError:
                    raise APIError.no_replica(model.name, wait.timeout_s,
                                              await self._no_replica_retry_after()) from None
                if not isinstance(accepted, ReplicaAccepted):
                    raise RuntimeError(f"replica stream began with {type(accepted).__name__}")
                return response, await anext(response, None)
            except BaseException as exc:
                if response is not None:
                    cancel_call(response)
                reason = loss_reason(exc)
                if reason is None:
                    raise
                self.last_loss = time.monotonic()
                if attempt == 2:
                    logger.warning("request %s: replica of %s lost again (%s); answering 503",
                                   request.request_id, model.name, reason)
                    raise self._unavailable(request.request_id) from None
                logger.warning("request %s: replica of %s lost before any output (%s); "
                               "sending it once more", request.request_id, model.name, reason)
                if self._on_retry is not None:
                    self._on_retry(model.name, reason)
                await asyncio.sleep(RETRY_PAUSE_S)
        raise AssertionError("unreachable")

    def _replacement_retry_after(self) -> int:
        """Seconds until a replacement for the last lost replica should be serving."""
        left = self._wait.replacement_s - (time.monotonic() - self.last_loss)
        return max(1, math.ceil(left))

    async def _no_replica_retry_after(self) -> int:
        """Retry-After when no replica took the request within the wait."""
        wait = self._wait
        if time.monotonic() - self.last_loss < wait.replacement_s:
            return max(wait.retry_after_s, self._replacement_retry_after())
        if self._running_replicas is not None:
            try:
                running = await asyncio.wait_for(self._running_replicas(), STATUS_TIMEOUT_S)
            except Exception:  # noqa: BLE001 - the 503 goes out either way
                logger.warning("could not read the replica count of %s", self._model.name,
                               exc_info=True)
                running = None
            if running == 0:  # the request waited for a replica that is starting
                return max(wait.retry_after_s, math.ceil(wait.replacement_s - wait.timeout_s))
        return wait.retry_after_s  # replicas run and are all busy

    def _unavailable(self, request_id: str) -> APIError:
        return APIError.of(ErrorKind.REPLICA_LOST, model=self._model.name, request_id=request_id,
                           retry_after_s=self._replacement_retry_after())


def serve_running_replicas(deployment: str) -> Callable[[], Awaitable[int]]:
    """How many replicas of `deployment` (in this replica's application) Serve reports RUNNING:
    one call to the Serve controller, run off the event loop."""
    from ray import serve

    def read() -> int:
        app = serve.get_replica_context().app_name
        overview = serve.status().applications[app].deployments[deployment]
        return int(overview.replica_states.get("RUNNING", 0))

    async def running() -> int:
        return await asyncio.to_thread(read)

    return running


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
