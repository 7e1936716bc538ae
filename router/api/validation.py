"""Parsing and validation of a chat request: the body into a schema-checked request, then, once
the route is known, every limit of config against it.

Order matters: cheap checks first (encoding, JSON shape), then the schema, then the limits;
images (CPU-bound decoding) last and off the event loop. Every failure is an `APIError` with a
4xx status, a code from `ErrorCode`, and a `param` that names the field as the client wrote it.
"""

from __future__ import annotations

import json
import math
from typing import Any

from pydantic import ValidationError

from configs.schema import ModelConfig, RequestLimits
from router.api.errors import APIError, ErrorCode
from router.api.protocol import ChatCompletionRequest, ChatMessage

_INT64_MAX = 2**63 - 1


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    """Decode and schema-check a request body (already size-capped by the caller)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError.invalid_request("The request body is not valid UTF-8.") from None
    try:
        payload = json.loads(text, parse_int=_parse_int)
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
        errors = _client_errors(exc, payload)
        raise APIError.invalid_request(_describe(errors), param=errors[0][0]) from None
    except RecursionError:
        raise APIError.invalid_request("The request body is nested too deeply.") from None


def _parse_int(digits: str) -> int | float:
    """JSON integers; one past CPython's int-string limit (4300 digits) becomes infinity, which
    every numeric field refuses by name ("must be finite"), instead of a ValueError from
    json.loads that names nothing."""
    try:
        return int(digits)
    except ValueError:
        return -math.inf if digits.startswith("-") else math.inf


def client_path(loc: tuple[Any, ...], payload: Any, missing: bool = False) -> str:
    """A pydantic error location as the client wrote it (`messages[0].content[1].text`).

    Pydantic inserts segments the client never wrote (union members such as `str`, discriminator
    tags such as `image_url`, validator names); walking the client's own JSON alongside the
    location keeps exactly the keys and indexes that exist in it, whatever pydantic names the
    rest. For a `missing` error the last segment is the required key the client left out.
    """
    path = ""
    node = payload
    for position, part in enumerate(loc):
        if isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
            path += f"[{part}]"
            node = node[part]
        elif isinstance(part, str) and isinstance(node, dict) and (
            part in node or (missing and position == len(loc) - 1)
        ):
            path += f".{part}" if path else part
            node = node.get(part)
        # Anything else is a segment pydantic inserted.
    return path or "body"


def _client_errors(exc: ValidationError, payload: dict) -> list[tuple[str, str]]:
    """(client path, message) of each error worth reporting, most specific first.

    A field with alternatives (`content`: a string or a list of parts) fails once per
    alternative; when one alternative failed deeper inside what the client sent, that deeper
    error is the one the client needs, and the shallow "not a string" one is dropped.
    """
    located = [(client_path(e["loc"], payload, missing=e["type"] == "missing"), e)
               for e in exc.errors()]
    paths = {path for path, _ in located}

    def has_deeper(path: str) -> bool:
        return any(other != path and other.startswith((path + ".", path + "[")) for other in paths)

    kept: list[tuple[str, str]] = []
    for path, error in located:
        if has_deeper(path) and error["type"] not in ("extra_forbidden", "missing"):
            continue
        if error["type"] == "extra_forbidden":
            message = f"{path}: unsupported field"
        elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            message = (f"{path}: unsupported content part type; supported types are 'text' "
                       "and 'image_url'")
        else:
            message = f"{path}: {error['msg']}"
        if (path, message) not in kept:
            kept.append((path, message))
    return kept


def _describe(errors: list[tuple[str, str]]) -> str:
    shown = "; ".join(message for _, message in errors[:3])
    more = f" (and {len(errors) - 3} more problems)" if len(errors) > 3 else ""
    return f"Invalid request: {shown}{more}."


def check_message_count(request: ChatCompletionRequest, limits: RequestLimits) -> None:
    """The number of messages: checked first, also where large bodies are parsed, so a body of
    half a million messages is refused there instead of travelling back as objects."""
    messages = request.messages
    if not messages:
        raise APIError.invalid_request("messages must contain at least one message.",
                                       param="messages")
    if len(messages) > limits.max_messages:
        raise APIError.invalid_request(
            f"Too many messages: {len(messages)}; at most {limits.max_messages} are accepted. "
            "Trim older turns of the conversation.", param="messages",
        )


def check_request(request: ChatCompletionRequest, model: ModelConfig,
                  limits: RequestLimits) -> None:
    """Every bound of config on a routed request, except the images (router/images/inputs.py)."""
    check_message_count(request, limits)
    messages = request.messages
    total_chars = 0
    for i, message in enumerate(messages):
        _check_message(message, i)
        for text in message.text_parts():
            total_chars += len(text)
            _check_unicode(text, f"messages[{i}].content")
    if total_chars > limits.max_text_chars:
        raise APIError.invalid_request(
            f"The messages hold {total_chars} characters of text; at most "
            f"{limits.max_text_chars} are accepted.", param="messages",
        )
    if len(request.images) > limits.max_images:
        raise APIError.invalid_request(
            f"The request carries {len(request.images)} images; at most {limits.max_images} "
            "are accepted.", param="messages", code=ErrorCode.TOO_MANY_IMAGES,
        )
    if request.n != 1:
        raise APIError.invalid_request("Only n=1 is supported.", param="n")
    _check_stops(request.stop_list(), limits)
    _check_sampling(request)
    _check_max_tokens(request, model, limits)
    _check_template_kwargs(request, limits)


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


def _check_stops(stops: list[str], limits: RequestLimits) -> None:
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


def _check_sampling(request: ChatCompletionRequest) -> None:
    if request.temperature is not None and not 0.0 <= request.temperature <= 2.0:
        raise APIError.invalid_request("temperature must be between 0 and 2.",
                                       param="temperature")
    if request.top_p is not None and not 0.0 < request.top_p <= 1.0:
        raise APIError.invalid_request("top_p must be greater than 0 and at most 1.",
                                       param="top_p")
    if request.seed is not None and not -_INT64_MAX - 1 <= request.seed <= _INT64_MAX:
        raise APIError.invalid_request("seed must fit in a signed 64-bit integer.", param="seed")


def _check_max_tokens(request: ChatCompletionRequest, model: ModelConfig,
                      limits: RequestLimits) -> None:
    max_tokens = request.requested_max_tokens()
    if max_tokens is None:
        return  # the model's default applies (router/engine_params.py), within the limit
    param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    if max_tokens <= 0:
        raise APIError.invalid_request(f"{param} must be at least 1.", param=param)
    if max_tokens > limits.max_completion_tokens:
        raise APIError.invalid_request(
            f"{param}={max_tokens} is larger than this server's limit of "
            f"{limits.max_completion_tokens}.", param=param,
        )
    if max_tokens >= model.engine.max_model_len:
        raise APIError.invalid_request(
            f"{param}={max_tokens} leaves no room for the prompt in the model's context of "
            f"{model.engine.max_model_len} tokens.", param=param,
            code=ErrorCode.CONTEXT_LENGTH_EXCEEDED,
        )


def _check_template_kwargs(request: ChatCompletionRequest, limits: RequestLimits) -> None:
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


def _check_unicode(text: str, param: str) -> None:
    # JSON escapes can produce lone surrogates, which no tokenizer can encode.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError.invalid_request(
            f"{param} contains invalid Unicode (a lone surrogate escape such as \\ud800).",
            param=param,
        ) from None
