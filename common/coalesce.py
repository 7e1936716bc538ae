"""Coalescing a token stream: forward whatever chunks are ready as one chunk (issue 22).

At GPU token rates the request path pays per message, not per token: one gRPC message from the
model replica to the ingress, one SSE event from the ingress to the shopper. A pump task reads
the source stream as fast as it yields into a queue; the consumer takes the first chunk waiting
and everything else already waiting (up to `max_chunks`), merged into one. There is no time
window: the first chunk goes at once, and a stream whose consumer keeps up is forwarded chunk by
chunk as before; chunks merge only while the consumer is busy sending the previous one, which is
exactly when sending each one separately would fall behind.

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
                    max_chunks: int = 64) -> AsyncIterator[T]:
    """`source`'s items, each yielded item the merge of those that were waiting together."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, in order
            queue.put_nowait(_Failure(exc))
            return
        queue.put_nowait(_END)

    task = asyncio.get_running_loop().create_task(pump())
    try:
        while True:
            items = [await queue.get()]
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
