"""Client-side measurement of one streamed chat completion, from its SSE lines.

Shared by the metrics integration test and the Locust users, so what the load client reports and
what the server's metrics count are measured against one definition:
- TTFT: request sent -> first SSE event carrying content (the role-only opening event is not a
  token); ITL: gaps between later content events; e2e: request sent -> `data: [DONE]`.
- An in-band error event (`data: {"error": ...}`) after the 200 header makes the request failed,
  with the error's code, as the server counts it.
- Usage comes from the final usage event (send `stream_options: {"include_usage": true}`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass
class StreamResult:
    status: int
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    # Characters of the content chunk that ended each gap of itl_s (a chunk may carry several
    # tokens once the server batches them: loadtests/fast_engine.py turns gaps into per-token).
    itl_chars: list[int] = field(default_factory=list)
    e2e_s: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    content: str = ""
    error_code: str | None = None
    done: bool = False  # saw `data: [DONE]`

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error_code is None and self.done


def measure_sse(
    status: int, lines: Iterable[str], started: float,
    clock: Callable[[], float] = time.perf_counter,
) -> StreamResult:
    """Read a streamed response's lines to the end; `started` is when the request was sent."""
    result = StreamResult(status=status)
    last_content: float | None = None
    pieces: list[str] = []
    for line in lines:
        if not line.startswith("data: "):
            continue  # blank separators, comments, keep-alives
        data = line[len("data: "):]
        now = clock()
        if data == "[DONE]":
            result.done = True
            result.e2e_s = now - started
            break
        event = json.loads(data)
        if "error" in event:
            result.error_code = event["error"].get("code") or "error"
            continue
        if event.get("usage"):
            result.prompt_tokens = event["usage"]["prompt_tokens"]
            result.completion_tokens = event["usage"]["completion_tokens"]
        for choice in event.get("choices", []):
            text = choice.get("delta", {}).get("content")
            if text:
                pieces.append(text)
                if last_content is None:
                    result.ttft_s = now - started
                else:
                    result.itl_s.append(now - last_content)
                    result.itl_chars.append(len(text))
                last_content = now
    result.content = "".join(pieces)
    return result
