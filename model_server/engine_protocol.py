"""The contract between a model deployment and its engine, and between ingress and replica.

`ChatEngine` is what `ModelDeployment` drives; `VLLMChatEngine` implements it with vLLM, and tests
inject a fake engine class through the deployment's constructor. The types here are plain
dataclasses so they cross the Ray boundary cheaply and import nothing heavy: the ingress imports
this module without pulling in vLLM or torch.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SamplingOptions:
    """Sampling for one request, defaults already applied by the ingress."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0


@dataclass(frozen=True)
class OutputFormat:
    """The answer's shape beyond plain text, in OpenAI's terms (validated by the ingress): the
    replica renders the tools into the prompt, constrains decoding where the answer must parse,
    and splits the output with the model's vLLM parsers (model_server/vllm/output_format.py)."""

    tools: tuple[dict[str, Any], ...] = ()  # OpenAI tool objects
    # "none" | "auto" | "required" | {"type": "function", "function": {"name": ...}}
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # {"type": "json_object"} or {"type": "json_schema", "json_schema": {..., "schema": ...}}
    response_format: dict[str, Any] | None = None
    reasoning: bool = False  # split the model's thinking from its answer
    # The whole answer follows a grammar from its first token (a required or named call, a JSON
    # format: ChatCompletionRequest.answer_forced), so the model does not think first.
    constrained: bool = False


@dataclass(frozen=True)
class EngineRequest:
    """A validated chat request, as the ingress hands it to a model replica."""

    request_id: str
    # OpenAI-format messages (role + string or text/image_url parts), images as data URLs.
    messages: list[dict[str, Any]]
    sampling: SamplingOptions
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    output: OutputFormat | None = None  # None: plain text, as it comes
    # False: the caller wants the answer whole, so tool calls are parsed once from the whole
    # output (vLLM's non-streaming parse) rather than piece by piece.
    stream: bool = True


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of one tool call (OpenAI's streamed shape): the call's first piece carries its
    id and function name, later ones pieces of the arguments' JSON text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True)
class GenerationChunk:
    """New output since the previous chunk. Token counts are cumulative for the request."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None = None
    reasoning: str = ""  # the model's thinking, split from `text` (OutputFormat.reasoning)
    tool_calls: tuple[ToolCallDelta, ...] = ()

    @staticmethod
    def merged(chunks: Sequence[GenerationChunk]) -> GenerationChunk:
        """Consecutive chunks as one (common/coalesce.py): their text, the last counts and
        finish reason (counts are cumulative), the pieces of each tool call joined."""
        last = chunks[-1]
        return GenerationChunk("".join(c.text for c in chunks), last.prompt_tokens,
                               last.completion_tokens, last.finish_reason,
                               "".join(c.reasoning for c in chunks),
                               merge_tool_calls([d for c in chunks for d in c.tool_calls]))


def merge_tool_calls(deltas: Sequence[ToolCallDelta]) -> tuple[ToolCallDelta, ...]:
    """Pieces of tool calls as one piece per call, in the order the calls began."""
    calls: dict[int, ToolCallDelta] = {}
    for delta in deltas:
        known = calls.get(delta.index)
        calls[delta.index] = delta if known is None else ToolCallDelta(
            delta.index, known.id or delta.id, known.name or delta.name,
            known.arguments + delta.arguments)
    return tuple(calls.values())


@dataclass(frozen=True)
class ReplicaAccepted:
    """The first item of every replica stream: a replica has taken the request off Serve's queue.

    The ingress bounds the wait for it separately from generation time, so a request that no
    replica takes in time (the model is scaled to zero and starting, or its pool is saturated)
    gets a 503 with Retry-After instead of hanging until the request deadline.
    """


class EngineInputError(ValueError):
    """The engine refused the request's content (unprocessable image, bad message structure).

    Raised by engines, mapped to HTTP 400 by the ingress. `client_message` is written for the API
    caller and must hold no internals (paths, addresses, library error text). The kind of refusal
    is the exception class, so engines need no knowledge of the API's error codes.
    """

    def __init__(self, client_message: str, *, param: str | None = None):
        super().__init__(client_message)
        self.client_message = client_message
        self.param = param

    def __reduce__(self):
        # Keep the keyword-only field when Ray pickles the exception across processes.
        return (_rebuild, (type(self), self.client_message, self.param))


class ContextLengthError(EngineInputError):
    """The prompt plus the requested completion does not fit the model's context."""


def _rebuild(cls: type[EngineInputError], message: str, param: str | None) -> EngineInputError:
    return cls(message, param=param)


class EngineUnavailableError(RuntimeError):
    """This replica's engine can no longer serve (its process died). Retryable: the replica
    exits and Serve replaces it, and other replicas serve meanwhile (router/replica_client.py)."""


class ChatEngine(abc.ABC):
    """An inference engine serving chat requests for one model inside one replica."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model; return when requests can be served. Raise on any failure."""

    @abc.abstractmethod
    def chat(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        """Stream the answer. Cancelling the iteration must abort the request in the engine.
        Output the consumer has not taken yet is merged into the next chunk, never queued token
        by token (vLLM's DELTA outputs do this): a replica that falls behind at GPU token rates
        sends fewer, larger messages instead of slowing the engine's steps."""

    @abc.abstractmethod
    async def check_health(self) -> None:
        """Raise if the engine can no longer serve (e.g. its process died)."""

    def is_dead(self) -> bool:
        """True once the engine can never serve again (its process died). Must be cheap: the
        replica polls it to leave the pool at once (model_server/replica.py)."""
        return False

    @abc.abstractmethod
    async def shutdown(self) -> None:
        """Release the engine and its processes."""
