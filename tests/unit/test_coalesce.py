"""common/coalesce.py: chunks that wait together travel together; nothing is lost, reordered
or left running."""

from __future__ import annotations

import asyncio

import pytest

from common.coalesce import coalesced


def join(items):
    return "".join(items)


async def source(items, gate: asyncio.Event | None = None, fail_after: int | None = None,
                 closed: list | None = None):
    try:
        for i, item in enumerate(items):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("engine broke")
            yield item
            if gate is not None and i == 0:
                await gate.wait()  # the rest arrives only when the test says so
    finally:
        if closed is not None:
            closed.append(True)


def test_the_first_chunk_goes_alone_and_the_waiting_ones_together():
    async def run():
        gate = asyncio.Event()
        out = []
        stream = coalesced(source(["a", "b", "c", "d"], gate), join)
        out.append(await anext(stream))  # the first at once, not held for company
        gate.set()
        await asyncio.sleep(0.01)  # the pump queues b, c, d while the consumer is away
        out.extend([item async for item in stream])
        return out

    assert asyncio.run(run()) == ["a", "bcd"]


def test_a_consumer_that_keeps_up_gets_every_chunk_on_its_own():
    async def run():
        return [item async for item in coalesced(slow_source(["a", "b", "c"]), join)]

    async def slow_source(items):
        for item in items:
            await asyncio.sleep(0.005)
            yield item

    assert asyncio.run(run()) == ["a", "b", "c"]


def test_batches_are_bounded_by_count():
    async def run():
        gate = asyncio.Event()
        stream = coalesced(source(list("abcdefg"), gate), join, max_chunks=2)
        first = await anext(stream)
        gate.set()
        await asyncio.sleep(0.01)
        return [first] + [item async for item in stream]

    assert asyncio.run(run()) == ["a", "bc", "de", "fg"]


def test_an_error_reaches_the_consumer_after_the_chunks_before_it():
    async def run():
        got = []
        with pytest.raises(RuntimeError, match="engine broke"):
            async for item in coalesced(source(["a", "b", "c"], fail_after=2), join):
                got.append(item)
        return "".join(got)

    assert asyncio.run(run()) == "ab"


def test_closing_early_stops_the_pump_and_closes_the_source():
    async def run():
        closed: list = []
        gate = asyncio.Event()  # never set: the source waits after its first item
        stream = coalesced(source(["a", "b"], gate, closed=closed), join)
        assert await anext(stream) == "a"
        await stream.aclose()  # the client went away
        pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        return closed, pending

    closed, pending = asyncio.run(run())
    assert closed == [True] and pending == []


async def steady_source(items, every_s: float):
    for item in items:
        await asyncio.sleep(every_s)
        yield item


def test_with_a_delay_a_steady_stream_travels_in_fewer_chunks_and_the_first_alone():
    async def run():
        stream = coalesced(steady_source(list("abcdefgh"), 0.005), join, max_delay_s=0.05)
        return [item async for item in stream]

    out = asyncio.run(run())
    assert out[0] == "a"  # never held for company
    assert "".join(out) == "abcdefgh"
    assert len(out) <= 4  # 7 later chunks 5 ms apart, held up to 50 ms: a few batches


def test_the_end_of_the_source_releases_a_held_chunk_at_once():
    async def run():
        loop = asyncio.get_running_loop()
        stream = coalesced(steady_source(["a", "b"], 0.001), join, max_delay_s=5.0)
        started = loop.time()
        out = [item async for item in stream]
        return out, loop.time() - started

    out, elapsed = asyncio.run(run())
    assert out == ["a", "b"] and elapsed < 2.0  # not the 5 s window


def test_a_full_batch_goes_without_waiting_out_the_delay():
    async def run():
        loop = asyncio.get_running_loop()
        stream = coalesced(steady_source(list("abcde"), 0.002), join, max_chunks=2,
                           max_delay_s=5.0)
        started = loop.time()
        out = [item async for item in stream]
        return out, loop.time() - started

    out, elapsed = asyncio.run(run())
    assert out == ["a", "bc", "de"] and elapsed < 2.0  # each batch left when it had two
