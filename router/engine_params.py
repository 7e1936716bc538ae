"""What the engine is asked to do for a validated request: sampling with the model's defaults
filled in, and the chat-template switches. Pure mapping; the bounds were checked by
router/validation.py."""

from __future__ import annotations

from typing import Any

from configs.schema import ModelConfig, RequestLimits
from deployments.engine_protocol import SamplingOptions
from router.protocol import ChatCompletionRequest


def sampling_for(
    request: ChatCompletionRequest, model: ModelConfig, limits: RequestLimits
) -> SamplingOptions:
    """The request's sampling, each unset field taken from the model's service defaults."""
    max_tokens = request.requested_max_tokens()
    if max_tokens is None:
        max_tokens = min(model.sampling.max_tokens, limits.max_completion_tokens)
    return SamplingOptions(
        max_tokens=max_tokens,
        temperature=model.sampling.temperature if request.temperature is None
        else request.temperature,
        top_p=model.sampling.top_p if request.top_p is None else request.top_p,
        stop=tuple(request.stop_list()),
        seed=request.seed,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
    )


def chat_template_kwargs_for(request: ChatCompletionRequest, model: ModelConfig) -> dict[str, Any]:
    """Template switches for the engine: thinking off unless the request turns it on."""
    kwargs = dict(request.chat_template_kwargs or {})
    kwargs.setdefault("enable_thinking", model.sampling.enable_thinking)
    return kwargs
