"""Where a request body is parsed: on the event loop when it is small, in a worker process when
it is large.

JSON decoding and pydantic validation are C and Rust code that hold the GIL from start to end, so a
thread does not help: a 16 MiB body of small JSON objects holds the ingress event loop for ~1.6 s
on these machines, stalling every other stream the replica serves. A chat message is small (the
text limit is 32,000 characters); a large body is images or abuse, and goes to one worker process
per ingress replica, started with `spawn` (forking a Ray worker with its threads could deadlock).
Bodies queue for that one worker, so a flood of large bodies costs one core, not the loop.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from configs.schema import RequestLimits
from router.api.errors import APIError
from router.api.protocol import ChatCompletionRequest
from router.api.validation import check_message_count, parse_chat_request


def _parse_in_worker(body: bytes, limits: RequestLimits) -> ChatCompletionRequest | APIError:
    """Runs in the worker. The message count is checked here too: unpickling half a million
    valid messages on the loop would stall it as long as parsing them. The error is returned,
    not raised, so the traceback of the worker does not travel with it."""
    try:
        request = parse_chat_request(body)
        check_message_count(request, limits)
        return request
    except APIError as error:
        return error


def _ready() -> bool:
    return True


# How often the worker checks that the replica that started it is still there.
PARENT_CHECK_S = 1.0


def _exit_with_parent(parent_pid: int) -> None:
    """The worker's initializer: leave when the ingress replica is gone. A replica killed with
    SIGKILL (`ray stop --force`, a chaos test, the OOM killer) cannot shut its pool down, and the
    worker, which holds its own end of the task queue, would wait for work forever (seen: an
    orphan per killed replica). A daemon thread polls the parent's pid."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class BodyParser:
    """Parses request bodies, large ones in a worker process (one per ingress replica)."""

    def __init__(self, limits: RequestLimits):
        self._limits = limits
        self._threshold = limits.parse_in_worker_bytes
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker now (spawning it takes about a second), not on the first image."""
        self._pool = ProcessPoolExecutor(max_workers=1,
                                         mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_exit_with_parent,
                                         initargs=(os.getpid(),))
        self._pool.submit(_ready)

    async def parse(self, body: bytes) -> ChatCompletionRequest:
        if len(body) < self._threshold:
            return parse_chat_request(body)
        if self._pool is None:
            self.start()
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._pool, _parse_in_worker, body,
                                                self._limits)
        except BrokenProcessPool:
            # The worker died (killed, out of memory): start another for the next body.
            self._pool = None
            raise
        if isinstance(result, APIError):
            raise result
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
