"""What the engine is asked to do for a validated request: sampling with the model's defaults
filled in, and the chat-template switches. Pure mapping; the bounds were checked by
router/api/validation.py."""

from __future__ import annotations

from typing import Any, Protocol

from configs.schema import ModelConfig, RequestLimits
from model_server.engine_protocol import OutputFormat, SamplingOptions
from router.api.protocol import ChatCompletionRequest


class SamplingDefaultsLike(Protocol):
    """A model's (configs/schema.py) or a shop's (shop/config.py) sampling defaults."""

    temperature: float
    top_p: float
    max_tokens: int


def sampling_for(
    request: ChatCompletionRequest, defaults: SamplingDefaultsLike, limits: RequestLimits
) -> SamplingOptions:
    """The request's sampling, each unset field taken from the defaults: the shop's service
    defaults when a shop answers, else the model's."""
    max_tokens = request.requested_max_tokens()
    if max_tokens is None:
        max_tokens = min(defaults.max_tokens, limits.max_completion_tokens)
    return SamplingOptions(
        max_tokens=max_tokens,
        temperature=defaults.temperature if request.temperature is None
        else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
        stop=tuple(request.stop_list()),
        seed=request.seed,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
    )


def output_format_for(request: ChatCompletionRequest, model: ModelConfig,
                      enable_thinking: bool) -> OutputFormat | None:
    """The answer's shape for the replica: the request's tools and response format, and whether
    the model's thinking is split from its answer (whenever it thinks and its config names a
    reasoning parser: thinking never reaches `content`). None: plain text, as it comes."""
    reasoning = enable_thinking and model.reasoning_parser is not None
    if not request.structured and not reasoning:
        return None
    fmt = request.json_format
    choice = request.tool_choice
    return OutputFormat(
        tools=tuple(tool.model_dump(exclude_none=True) for tool in request.tools or ()),
        tool_choice=choice if choice is None or isinstance(choice, str) else choice.model_dump(),
        parallel_tool_calls=request.parallel_tool_calls,
        response_format=None if fmt is None else fmt.model_dump(by_alias=True,
                                                                 exclude_none=True),
        # The grammar holds a forced answer from its first token: the model does not think.
        reasoning=reasoning and not request.answer_forced,
        constrained=request.answer_forced,
    )


def chat_template_kwargs_for(request: ChatCompletionRequest, enable_thinking: bool,
                             output: OutputFormat | None = None) -> dict[str, Any]:
    """Template switches for the engine: the request's, with thinking as decided by the shop or
    the model's default when the request does not say; off for an answer held to a grammar
    from its first token (`OutputFormat.constrained`)."""
    kwargs = dict(request.chat_template_kwargs or {})
    kwargs["enable_thinking"] = kwargs.get("enable_thinking", enable_thinking)
    if output is not None and output.constrained:
        kwargs["enable_thinking"] = False
    return kwargs
