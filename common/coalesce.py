"""Coalescing a token stream: forward the chunks that are ready as one chunk (issue 22).

At GPU token rates the request path pays per message, not per token: one gRPC message from the
model replica to the ingress, one SSE event from the ingress to the shopper. A pump task reads
the source stream into a queue as fast as it yields; the consumer takes the first chunk waiting
and everything else already waiting (up to `max_chunks`), merged into one.

- The stream's first chunk always goes at once (time to first token is never traded).
- With `max_delay_s` 0 nothing waits for company: chunks merge only while the consumer is busy
  sending the previous one, which is exactly when sending each one alone would fall behind.
- With `max_delay_s` > 0, a later chunk that finds the consumer idle waits up to that long for
  the next ones (until `max_chunks` are waiting or the source ends), so a steady stream of one
  token per decode step travels as one message per `max_delay_s` instead of one per token.
  A consumer that is already behind never waits: what is ready goes at once.

Closing the coalesced stream (the client went away) cancels the pump and closes the source, so
an engine request is aborted as it was without coalescing. An error of the source reaches the
consumer after the chunks that came before it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

_END = object()


async def coalesced(source: AsyncIterator[T], merge: Callable[[Sequence[T]], T],
                    max_chunks: int = 64, max_delay_s: float = 0.0) -> AsyncIterator[T]:
    """`source`'s items, each yielded item the merge of those that travel together."""
    queue: asyncio.Queue = asyncio.Queue()
    # Set by the pump when a waiting consumer should stop waiting: a batch is full or the
    # source ended. Only used with max_delay_s > 0.
    full = asyncio.Event()

    async def pump() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
                if queue.qsize() + 1 >= max_chunks:  # with the one the consumer holds
                    full.set()
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, in order
            queue.put_nowait(_Failure(exc))
        else:
            queue.put_nowait(_END)
        full.set()

    task = asyncio.get_running_loop().create_task(pump())
    first = True
    try:
        while True:
            items = [await queue.get()]
            if max_delay_s > 0 and not first and queue.empty() and not _is_mark(items[0]):
                # Idle consumer, steady stream: hold this chunk briefly for the next ones.
                full.clear()
                try:
                    async with asyncio.timeout(max_delay_s):
                        await full.wait()
                except TimeoutError:
                    pass
            first = False
            while len(items) < max_chunks and not queue.empty() and not _is_mark(items[-1]):
                items.append(queue.get_nowait())
            done = _is_mark(items[-1])
            mark = items.pop() if done else None
            if items:
                yield merge(items) if len(items) > 1 else items[0]
            if isinstance(mark, _Failure):
                raise mark.error
            if done:
                return
    finally:
        if not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        aclose = getattr(source, "aclose", None)
        if aclose is not None:
            await aclose()


class _Failure:
    def __init__(self, error: Exception):
        self.error = error


def _is_mark(item: object) -> bool:
    return item is _END or isinstance(item, _Failure)
