"""The SSE body of a streamed answer, and the engine-stream helpers both answer shapes use.

Chunks are OpenAI's `chat.completion.chunk` events: a role event first, one event per content
chunk, the finish reason, the usage when the client asked for it, `data: [DONE]` last. Tool
calls come as `delta.tool_calls` pieces (the first of a call with its id and name, then pieces
of its arguments) and end with `finish_reason: "tool_calls"`; the model's reasoning comes as
`delta.reasoning_content`, only when the request asked for it (`return_reasoning`). The
`service` object (sources, hand-off) goes on the last chunk before [DONE]. A failure after the
status was sent is an in-band error event followed by [DONE] (vLLM's convention).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from model_server.engine_protocol import GenerationChunk, ToolCallDelta
from router.api.errors import api_error_for, sse_error_event
from router.api.protocol import Usage, sse_data
from shop.layer import Finish

if TYPE_CHECKING:
    from router.chat_service import PreparedChat

logger = logging.getLogger("cs_assistant.chat_service")

SSE_DONE = "data: [DONE]\n\n"


class ChatStream:
    """The SSE body of one streamed answer.

    `close()` must run when the response ends, however it ends: it aborts the engine request if
    the answer is unfinished and records a client disconnect unless `events()` recorded an
    outcome. It is separate from `events()` because a generator that was never iterated (client
    gone before the first byte) never runs its own cleanup.
    """

    def __init__(
        self, chat: PreparedChat, first: GenerationChunk | None,
        stream: AsyncIterator[GenerationChunk],
    ):
        self._chat = chat
        self._first = first
        self._stream = stream

    async def events(self) -> AsyncIterator[str]:
        chat, measured = self._chat, self._chat.metrics
        options = chat.request.stream_options
        include_usage = bool(options and options.include_usage)
        send_reasoning = bool(chat.request.return_reasoning)
        called_tools = False

        # Chunks are built as plain dicts in ChatCompletionChunk's field order: a pydantic model
        # and its dump per token cost more than the rest of the event (curated answers over SSE
        # ran at half their JSON rate with them).
        head = {"id": chat.request_id, "object": "chat.completion.chunk",
                "created": chat.created, "model": chat.route.model}

        def event(delta: dict, finish_reason: str | None = None, usage: Usage | None = None,
                  choices: bool = True, service: dict | None = None) -> str:
            """`delta` holds only the fields that are set, as OpenAI sends them; `service` goes
            on the last chunk before [DONE] (sources, hand-off)."""
            payload = {**head, "choices": [
                {"index": 0, "delta": delta, "finish_reason": finish_reason}] if choices else []}
            if usage is not None:
                payload["usage"] = usage.model_dump()
            if service is not None:
                payload["service"] = service
            return sse_data(payload)

        last: GenerationChunk | None = None
        finished: Finish | None = None
        pieces: list[str] = []
        # A shop's guard releases the answer a sentence at a time, once it has passed (shop/
        # guard/); without one, text goes out as it comes.
        gate = chat.gate()
        held_tokens = 0  # tokens received and not yet sent (held by the gate)
        try:
            yield event({"role": "assistant", "content": ""})
            chunk = self._first
            while chunk is not None:
                last = chunk
                before = measured.completion_tokens
                measured.tokens(chunk.prompt_tokens, chunk.completion_tokens)
                held_tokens += measured.completion_tokens - before
                finish_reason = chunk.finish_reason
                if chunk.reasoning and send_reasoning:
                    yield event({"reasoning_content": chunk.reasoning})
                if chunk.tool_calls:
                    # A call is the backend's to run, not text for a shopper: no gate
                    # (Shop.gate gives none to a request with its own tools).
                    called_tools = True
                    measured.content_sent(held_tokens)
                    held_tokens = 0
                    yield event({"tool_calls": [tool_call_delta(d) for d in chunk.tool_calls]})
                if chunk.text:
                    pieces.append(chunk.text)
                    shown = chunk.text if gate is None else gate.feed(chunk.text)
                    if shown:
                        measured.content_sent(held_tokens)
                        held_tokens = 0
                        yield event({"content": shown})
                    if gate is not None and gate.failure is not None and finish_reason is None:
                        # Failed: nothing more of it will be shown, so the model stops here.
                        await close_stream(self._stream)
                        finish_reason = "stop"
                if finish_reason is not None:
                    if gate is not None and (rest := gate.end(finish_reason)):
                        measured.content_sent(held_tokens)
                        yield event({"content": rest})
                    finished = chat.finish("".join(pieces), finish_reason, gate)
                    if finished.tail is not None:
                        measured.content_sent()
                        yield event({"content": finished.tail})
                    yield event({}, finish_reason=chat.openai_finish_reason(finish_reason,
                                                                            called_tools),
                                service=None if include_usage else finished.service)
                    if chunk.finish_reason is None:
                        break  # stopped by the gate: the engine stream is closed
                chunk = await next_before(self._stream, chat.deadline)
            if include_usage and last is not None:
                finished = finished or chat.finish("".join(pieces), last.finish_reason, gate)
                yield event({}, usage=usage_of(last), choices=False, service=finished.service)
            measured.succeeded()
        except asyncio.CancelledError:
            raise  # client went away: nothing more can be sent; close() records it
        except Exception as exc:  # noqa: BLE001 - every failure becomes an in-band error
            error = api_error_for(exc, chat.request_id)
            measured.errored(error.status, error.code)
            yield sse_error_event(error)
        finally:
            await close_stream(self._stream)
        yield SSE_DONE

    async def close(self) -> None:
        await close_stream(self._stream)
        self._chat.metrics.client_disconnected()  # no-op when events() recorded the outcome


def tool_call_delta(delta: ToolCallDelta) -> dict:
    """One streamed piece of a tool call, OpenAI's shape (router/api/protocol.py DeltaToolCall):
    the call's first piece names it, later ones carry only arguments."""
    piece: dict = {"index": delta.index}
    if delta.id is not None:
        piece["id"] = delta.id
        piece["type"] = "function"
    function: dict = {}
    if delta.name is not None:
        function["name"] = delta.name
    if delta.arguments or delta.name is not None:
        function["arguments"] = delta.arguments
    piece["function"] = function
    return piece


def openai_finish_reason(finish_reason: str | None, called_tools: bool) -> str | None:
    """OpenAI's finish reason: "tool_calls" when the model stopped after calling tools."""
    return "tool_calls" if called_tools and finish_reason == "stop" else finish_reason


def usage_of(chunk: GenerationChunk) -> Usage:
    return Usage(
        prompt_tokens=chunk.prompt_tokens,
        completion_tokens=chunk.completion_tokens,
        total_tokens=chunk.prompt_tokens + chunk.completion_tokens,
    )


async def replay(text: str, size: int) -> AsyncIterator[GenerationChunk]:
    """A fixed text as engine chunks of `size` characters, the last one finished."""
    pieces = [text[i:i + size] for i in range(0, len(text), size)] or [""]
    for piece in pieces[:-1]:
        yield GenerationChunk(piece, 0, 0, None)
    yield GenerationChunk(pieces[-1], 0, 0, "stop")


async def next_before(
    stream: AsyncIterator[GenerationChunk], deadline: float
) -> GenerationChunk | None:
    """The next chunk, None at the end; TimeoutError once `deadline` has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for wraps every call in a new task,
    # which per streamed chunk cost ~4% of the ingress's CPU at GPU token rates (issue 22).
    try:
        async with asyncio.timeout(remaining):
            return await anext(stream)
    except StopAsyncIteration:
        return None


async def close_stream(stream: AsyncIterator[GenerationChunk]) -> None:
    """Close a replica stream; for an unfinished stream this cancels the engine request."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - closing must never mask the request's own outcome
            logger.debug("closing a replica stream failed", exc_info=True)
