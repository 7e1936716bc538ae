"""Admission at the Serve boundary: why a request got 429 or 503 before any generation.

`handle_streamer` adapts a model deployment's handle to the `ChatStreamer` the chat service
calls. A request is refused here when
- the model's queue is full (Serve's `max_queued_requests`): Serve raises BackPressureError at
  once, answered with the Serve config's status (429) and Retry-After;
- no replica takes it within the model's `replica_wait.timeout_s` (scaled to zero and starting,
  or saturated): the queued call is cancelled and answered 503 with Retry-After.
Closing the returned generator early cancels the call on the replica, which aborts the request
inside the engine (client disconnects, timeouts).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator

from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

from configs.schema import ModelConfig
from deployments.engine_protocol import EngineRequest, GenerationChunk, ReplicaAccepted
from router.chat_service import ChatStreamer
from router.errors import APIError

logger = logging.getLogger("cs_assistant.admission")

# Retry-After of a 429 when the Serve config's backpressure_config sets none.
DEFAULT_OVERLOAD_RETRY_AFTER_S = 1


def handle_streamer(handle: DeploymentHandle, model: ModelConfig) -> ChatStreamer:
    """Adapt a model deployment handle to the `ChatStreamer` the service expects."""
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
