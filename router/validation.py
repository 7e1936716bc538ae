"""Parsing and validation of a chat request against the limits in config, before routing.

Order matters: cheap checks first (size, encoding, JSON shape), then the schema, then the limits;
images (CPU-bound decoding) last and off the event loop. Every failure is an `APIError` with a
4xx status and a message that names the offending field.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from configs.schema import ModelConfig, RequestLimits
from deployments.engine_protocol import SamplingOptions
from router.errors import APIError
from router.images import check_image_url
from router.protocol import ChatCompletionRequest, ChatMessage

_INT64_MAX = 2**63 - 1


def check_content_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise APIError.unsupported_media_type(
            "Send the request body as JSON with the header 'Content-Type: application/json'."
        )


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    """Decode and schema-check a request body (already size-capped by the caller)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError.invalid_request("The request body is not valid UTF-8.") from None
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise APIError.invalid_request(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno} column "
            f"{exc.colno}."
        ) from None
    except RecursionError:
        raise APIError.invalid_request("The request body is nested too deeply.") from None
    if not isinstance(payload, dict):
        raise APIError.invalid_request(
            f"The request body must be a JSON object, not a JSON {type(payload).__name__}."
        )
    try:
        return ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        raise APIError.invalid_request(
            _describe_validation_error(exc), param=_first_param(exc)
        ) from None
    except RecursionError:
        raise APIError.invalid_request("The request body is nested too deeply.") from None


def _loc(parts: tuple[Any, ...]) -> str:
    """A pydantic error location as the client wrote it: messages[0].content[1].text."""
    text = ""
    after_index = False
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
            after_index = True
            continue
        # Pydantic inserts union members ('str', 'list[...]') and, right after a list index,
        # the discriminator tag of a content part ('text', 'image_url'); clients never wrote those.
        union_member = part == "str" or part.startswith(("list[", "function-"))
        discriminator_tag = after_index and part in ("text", "image_url")
        after_index = False
        if not (union_member or discriminator_tag):
            text += f".{part}" if text else part
    return text or "body"


def _relevant_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors minus the 'not a string' alternative of `content` when the client sent
    a list of parts that failed deeper down (that deeper error is the one to report)."""
    errors = exc.errors()

    def failed_deeper(error: dict[str, Any]) -> bool:
        prefix = error["loc"][:-1]
        return any(
            len(other["loc"]) > len(prefix) + 1 and other["loc"][: len(prefix)] == prefix
            for other in errors
        )

    return [e for e in errors if not (e["loc"] and e["loc"][-1] == "str" and failed_deeper(e))]


def _first_param(exc: ValidationError) -> str | None:
    errors = _relevant_errors(exc)
    return _loc(errors[0]["loc"]) if errors else None


def _describe_validation_error(exc: ValidationError) -> str:
    described = []
    seen: set[str] = set()
    for error in _relevant_errors(exc):
        where = _loc(error["loc"])
        if error["type"] == "extra_forbidden":
            message = f"{where}: unsupported field"
        elif error["type"] == "union_tag_invalid":
            message = (
                f"{where}: unsupported content part type; supported types are 'text' and "
                "'image_url'"
            )
        else:
            message = f"{where}: {error['msg']}"
        if message not in seen:
            seen.add(message)
            described.append(message)
    shown = "; ".join(described[:3])
    more = f" (and {len(described) - 3} more problems)" if len(described) > 3 else ""
    return f"Invalid request: {shown}{more}."


def check_request_limits(request: ChatCompletionRequest, limits: RequestLimits) -> None:
    """Structure and size checks that do not depend on the chosen model."""
    messages = request.messages
    if not messages:
        raise APIError.invalid_request("messages must contain at least one message.",
                                       param="messages")
    if len(messages) > limits.max_messages:
        raise APIError.invalid_request(
            f"Too many messages: {len(messages)}; at most {limits.max_messages} are accepted. "
            "Trim older turns of the conversation.", param="messages",
        )
    total_chars = 0
    image_count = 0
    for i, message in enumerate(messages):
        _check_message(message, i)
        for text in message.text_parts():
            total_chars += len(text)
            _check_unicode(text, f"messages[{i}].content")
        image_count += len(message.image_parts())
    if total_chars > limits.max_text_chars:
        raise APIError.invalid_request(
            f"The messages hold {total_chars} characters of text; at most "
            f"{limits.max_text_chars} are accepted.", param="messages",
        )
    if image_count > limits.max_images:
        raise APIError.invalid_request(
            f"The request carries {image_count} images; at most {limits.max_images} are "
            "accepted.", param="messages", code="too_many_images",
        )
    if request.n != 1:
        raise APIError.invalid_request("Only n=1 is supported.", param="n")
    stops = request.stop_list()
    if len(stops) > limits.max_stop_sequences:
        raise APIError.invalid_request(
            f"At most {limits.max_stop_sequences} stop sequences are accepted.", param="stop"
        )
    for stop in stops:
        if not stop or len(stop) > limits.max_stop_chars:
            raise APIError.invalid_request(
                f"Each stop sequence must have 1 to {limits.max_stop_chars} characters.",
                param="stop",
            )
        _check_unicode(stop, "stop")
    if request.temperature is not None and not 0.0 <= request.temperature <= 2.0:
        raise APIError.invalid_request("temperature must be between 0 and 2.",
                                       param="temperature")
    if request.top_p is not None and not 0.0 < request.top_p <= 1.0:
        raise APIError.invalid_request("top_p must be greater than 0 and at most 1.",
                                       param="top_p")
    if request.seed is not None and not -_INT64_MAX - 1 <= request.seed <= _INT64_MAX:
        raise APIError.invalid_request("seed must fit in a signed 64-bit integer.", param="seed")
    kwargs = request.chat_template_kwargs or {}
    not_allowed = sorted(set(kwargs) - set(limits.chat_template_kwargs_allowed))
    if not_allowed:
        raise APIError.invalid_request(
            f"chat_template_kwargs may only set {list(limits.chat_template_kwargs_allowed)}; "
            f"got {len(not_allowed)} other key(s).", param="chat_template_kwargs",
        )
    if "enable_thinking" in kwargs and not isinstance(kwargs["enable_thinking"], bool):
        raise APIError.invalid_request("chat_template_kwargs.enable_thinking must be a boolean.",
                                       param="chat_template_kwargs")


def _check_message(message: ChatMessage, index: int) -> None:
    where = f"messages[{index}]"
    if isinstance(message.content, str):
        if not message.content:
            raise APIError.invalid_request(f"{where}.content is empty.", param=f"{where}.content")
        return
    if not message.content:
        raise APIError.invalid_request(
            f"{where}.content is an empty list; send at least one text or image part.",
            param=f"{where}.content",
        )
    if message.image_parts() and message.role != "user":
        raise APIError.invalid_request(
            f"{where}: image parts are only accepted in 'user' messages, not "
            f"'{message.role}'.", param=f"{where}.content",
        )


def _check_unicode(text: str, param: str) -> None:
    # JSON escapes can produce lone surrogates, which no tokenizer can encode.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError.invalid_request(
            f"{param} contains invalid Unicode (a lone surrogate escape such as \\ud800).",
            param=param,
        ) from None


def image_params(request: ChatCompletionRequest) -> list[tuple[str, str]]:
    """(url, param path) of every image part, in order."""
    found = []
    for i, message in enumerate(request.messages):
        if isinstance(message.content, list):
            for j, part in enumerate(message.content):
                if part.type == "image_url":
                    found.append((part.image_url.url, f"messages[{i}].content[{j}].image_url"))
    return found


def check_images(request: ChatCompletionRequest, limits: RequestLimits) -> None:
    """Decode-check every image (CPU-bound: run in a worker thread)."""
    for url, param in image_params(request):
        check_image_url(url, limits, param)


def sampling_for(
    request: ChatCompletionRequest, model: ModelConfig, limits: RequestLimits
) -> SamplingOptions:
    """The request's sampling with the model's defaults filled in and output bounds checked."""
    max_tokens = request.requested_max_tokens()
    param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    if max_tokens is None:
        max_tokens = min(model.sampling.max_tokens, limits.max_completion_tokens)
    elif max_tokens <= 0:
        raise APIError.invalid_request(f"{param} must be at least 1.", param=param)
    elif max_tokens > limits.max_completion_tokens:
        raise APIError.invalid_request(
            f"{param}={max_tokens} is larger than this server's limit of "
            f"{limits.max_completion_tokens}.", param=param,
        )
    if max_tokens >= model.engine.max_model_len:
        raise APIError.invalid_request(
            f"{param}={max_tokens} leaves no room for the prompt in the model's context of "
            f"{model.engine.max_model_len} tokens.", param=param, code="context_length_exceeded",
        )
    temperature = request.temperature
    top_p = request.top_p
    return SamplingOptions(
        max_tokens=max_tokens,
        temperature=model.sampling.temperature if temperature is None else temperature,
        top_p=model.sampling.top_p if top_p is None else top_p,
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
