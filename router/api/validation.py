"""Parsing and validation of a chat request: the body into a schema-checked request, then, once
the route is known, every limit of config against it.

Order matters: cheap checks first (encoding, JSON shape), then the schema, then the limits;
images (CPU-bound decoding) last and off the event loop. Every failure is an `APIError` with a
4xx status, built from its rule's entry in the error table (`ErrorKind`), and a `param` that
names the field as the client wrote it.
"""

from __future__ import annotations

import json
import math
import re
import re._constants as sre_constants
import re._parser as sre_parser
from typing import Any

from pydantic import ValidationError

from configs.schema import ModelConfig, RequestLimits
from router.api.errors import APIError, ErrorKind
from router.api.protocol import ChatCompletionRequest, ChatMessage, JsonSchemaFormat

_INT64_MAX = 2**63 - 1


def parse_chat_request(body: bytes) -> ChatCompletionRequest:
    """Decode and schema-check a request body (already size-capped by the caller)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError.of(ErrorKind.BODY_NOT_UTF8) from None
    try:
        payload = json.loads(text, parse_int=_parse_int)
    except json.JSONDecodeError as exc:
        raise APIError.of(ErrorKind.BODY_NOT_JSON, reason=exc.msg, line=exc.lineno,
                          column=exc.colno) from None
    except RecursionError:
        raise APIError.of(ErrorKind.BODY_TOO_DEEP) from None
    if not isinstance(payload, dict):
        raise APIError.of(ErrorKind.BODY_NOT_OBJECT, json_type=type(payload).__name__)
    try:
        return ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        errors = _client_errors(exc, payload)
        raise APIError.of(ErrorKind.SCHEMA_VIOLATION, param=errors[0][0],
                          problems=_problems(errors)) from None
    except RecursionError:
        raise APIError.of(ErrorKind.BODY_TOO_DEEP) from None


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


def _problems(errors: list[tuple[str, str]]) -> str:
    """The first three problems, and how many more there are."""
    shown = "; ".join(message for _, message in errors[:3])
    more = f" (and {len(errors) - 3} more problems)" if len(errors) > 3 else ""
    return shown + more


def check_message_count(request: ChatCompletionRequest, limits: RequestLimits) -> None:
    """The number of messages: checked first, also where large bodies are parsed, so a body of
    half a million messages is refused there instead of travelling back as objects."""
    messages = request.messages
    if not messages:
        raise APIError.of(ErrorKind.NO_MESSAGES)
    if len(messages) > limits.max_messages:
        raise APIError.of(ErrorKind.TOO_MANY_MESSAGES, count=len(messages),
                          limit=limits.max_messages)


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
        raise APIError.of(ErrorKind.TOO_MUCH_TEXT, count=total_chars,
                          limit=limits.max_text_chars)
    if len(request.images) > limits.max_images:
        raise APIError.of(ErrorKind.TOO_MANY_IMAGES, count=len(request.images),
                          limit=limits.max_images)
    if request.n != 1:
        raise APIError.of(ErrorKind.ONLY_ONE_CHOICE)
    _check_stops(request.stop_list(), limits)
    _check_sampling(request)
    _check_max_tokens(request, model, limits)
    _check_template_kwargs(request, limits)
    _check_tools(request, limits)


def _check_message(message: ChatMessage, index: int) -> None:
    where = f"messages[{index}]"
    if message.tool_calls is not None and message.role != "assistant":
        raise APIError.of(ErrorKind.TOOL_CALLS_NOT_FROM_ASSISTANT, param=f"{where}.tool_calls")
    if message.role == "tool" and message.tool_call_id is None:
        raise APIError.of(ErrorKind.TOOL_CALL_ID_MISSING, param=f"{where}.tool_call_id")
    if message.role != "tool" and message.tool_call_id is not None:
        raise APIError.of(ErrorKind.TOOL_CALL_ID_NOT_FROM_TOOL, param=f"{where}.tool_call_id")
    if message.tool_calls:
        # An assistant turn that called tools may say nothing (OpenAI clients send null or "").
        if isinstance(message.content, list) and not message.content:
            raise APIError.of(ErrorKind.EMPTY_CONTENT_LIST, param=f"{where}.content")
        return
    if message.content is None:
        raise APIError.of(ErrorKind.CONTENT_MISSING, param=f"{where}.content")
    if isinstance(message.content, str):
        if not message.content:
            raise APIError.of(ErrorKind.EMPTY_CONTENT, param=f"{where}.content")
        return
    if not message.content:
        raise APIError.of(ErrorKind.EMPTY_CONTENT_LIST, param=f"{where}.content")
    if message.image_parts() and message.role != "user":
        raise APIError.of(ErrorKind.IMAGE_NOT_FROM_USER, param=f"{where}.content", where=where,
                          role=message.role)


def _check_stops(stops: list[str], limits: RequestLimits) -> None:
    if len(stops) > limits.max_stop_sequences:
        raise APIError.of(ErrorKind.TOO_MANY_STOPS, limit=limits.max_stop_sequences)
    for stop in stops:
        if not stop or len(stop) > limits.max_stop_chars:
            raise APIError.of(ErrorKind.STOP_LENGTH, limit=limits.max_stop_chars)
        _check_unicode(stop, "stop")


def _check_sampling(request: ChatCompletionRequest) -> None:
    if request.temperature is not None and not 0.0 <= request.temperature <= 2.0:
        raise APIError.of(ErrorKind.TEMPERATURE_RANGE)
    if request.top_p is not None and not 0.0 < request.top_p <= 1.0:
        raise APIError.of(ErrorKind.TOP_P_RANGE)
    if request.seed is not None and not -_INT64_MAX - 1 <= request.seed <= _INT64_MAX:
        raise APIError.of(ErrorKind.SEED_RANGE)


def _check_max_tokens(request: ChatCompletionRequest, model: ModelConfig,
                      limits: RequestLimits) -> None:
    max_tokens = request.requested_max_tokens()
    if max_tokens is None:
        return  # the model's default applies (router/engine_params.py), within the limit
    param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    if max_tokens <= 0:
        raise APIError.of(ErrorKind.MAX_TOKENS_BELOW_ONE, param=param)
    if max_tokens > limits.max_completion_tokens:
        raise APIError.of(ErrorKind.MAX_TOKENS_OVER_LIMIT, param=param, requested=max_tokens,
                          limit=limits.max_completion_tokens)
    if max_tokens >= model.engine.max_model_len:
        raise APIError.of(ErrorKind.MAX_TOKENS_FILL_CONTEXT, param=param, requested=max_tokens,
                          context_tokens=model.engine.max_model_len)


def _check_template_kwargs(request: ChatCompletionRequest, limits: RequestLimits) -> None:
    kwargs = request.chat_template_kwargs or {}
    not_allowed = sorted(set(kwargs) - set(limits.chat_template_kwargs_allowed))
    if not_allowed:
        raise APIError.of(ErrorKind.TEMPLATE_KWARGS_NOT_ALLOWED,
                          allowed=list(limits.chat_template_kwargs_allowed),
                          count=len(not_allowed))
    if "enable_thinking" in kwargs and not isinstance(kwargs["enable_thinking"], bool):
        raise APIError.of(ErrorKind.THINKING_NOT_BOOLEAN)
    if request.enable_thinking is not None and \
            kwargs.get("enable_thinking", request.enable_thinking) != request.enable_thinking:
        raise APIError.of(ErrorKind.THINKING_CONFLICT)


def _check_tools(request: ChatCompletionRequest, limits: RequestLimits) -> None:
    """Tools, tool_choice and response_format: consistent, and every JSON schema within the
    bounds that keep its grammar cheap to compile (the replica compiles it, and refuses one
    its grammar engine cannot enforce: model_server/vllm/output_format.py)."""
    tools = request.tools or []
    if len(tools) > limits.max_tools:
        raise APIError.of(ErrorKind.TOO_MANY_TOOLS, count=len(tools), limit=limits.max_tools)
    names: set[str] = set()
    lengths: dict[int, str] = {}  # each distinct bounded length, and the schema it is in
    for i, tool in enumerate(tools):
        name = tool.function.name
        if name in names:
            raise APIError.of(ErrorKind.DUPLICATE_TOOL, name=name)
        names.add(name)
        if tool.function.parameters is not None:
            _check_schema(tool.function.parameters, f"tools[{i}].function.parameters", limits,
                          lengths)
    choice = request.tool_choice
    for field_name in ("tool_choice", "parallel_tool_calls"):
        if getattr(request, field_name) is not None and not tools:
            raise APIError.of(ErrorKind.TOOL_CHOICE_WITHOUT_TOOLS, param=field_name)
    if choice is not None and not isinstance(choice, str) and choice.function.name not in names:
        raise APIError.of(ErrorKind.TOOL_CHOICE_UNKNOWN, name=choice.function.name)
    fmt = request.json_format
    if fmt is not None and tools and choice is not None and choice not in ("auto", "none"):
        raise APIError.of(ErrorKind.FORMAT_WITH_FORCED_CALL,
                          choice=choice if isinstance(choice, str) else choice.function.name)
    if isinstance(fmt, JsonSchemaFormat):
        _check_schema(fmt.json_schema.schema_, "response_format.json_schema.schema", limits,
                      lengths)
    if len(lengths) > limits.max_schema_length_bounds:
        raise APIError.of(ErrorKind.SCHEMA_TOO_MANY_LENGTHS, count=len(lengths),
                          limit=limits.max_schema_length_bounds,
                          param=next(reversed(lengths.values())))


def bounded_lengths(schema: dict, param: str, limits: RequestLimits) -> set[int]:
    """The distinct bounded lengths in a schema (minLength, maxLength, a pattern's {m,n}, nested
    repetitions multiplied), each within `max_schema_length_bound`. Measured with xgrammar on
    Qwen3's vocabulary, each distinct one costs up to ~2 s of compilation and they add up, while
    size and nesting cost little (docs/benchmarks.md "Tools and structured outputs")."""
    found: set[int] = set()
    stack: list[tuple[Any, str]] = [(schema, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, list):
            stack.extend((child, f"{where}[{i}]") for i, child in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        for key, child in node.items():
            here = f"{where}.{key}" if where else key
            if key in ("minLength", "maxLength") and isinstance(child, int) and \
                    not isinstance(child, bool) and child > 1:
                found.add(_within(child, here, param, limits))
            elif key == "pattern" and isinstance(child, str):
                found.update(_within(bound, here, param, limits)
                             for bound in _pattern_repeats(child, here, param))
            else:
                stack.append((child, here))
    return found


def _within(bound: int, where: str, param: str, limits: RequestLimits) -> int:
    if bound > limits.max_schema_length_bound:
        raise APIError.of(ErrorKind.SCHEMA_LENGTH_TOO_LARGE, param=param, bound=bound,
                          where=where, limit=limits.max_schema_length_bound)
    return bound


def _pattern_repeats(pattern: str, where: str, param: str) -> list[int]:
    """The bounded repetitions of a regular expression ({m,n}, {n}), each multiplied by the
    bounds of the repetitions it sits in; unbounded ones (*, +, {m,}) cost little."""
    try:
        parsed = sre_parser.parse(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise APIError.of(ErrorKind.SCHEMA_PATTERN_INVALID, param=param, where=where,
                          reason=str(exc)) from None
    bounds: list[int] = []
    stack: list[tuple[Any, int]] = [(parsed, 1)]
    while stack:
        items, outer = stack.pop()
        for op, value in items:
            if op in (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT):
                low, high, sub = value
                bounded = high != sre_constants.MAXREPEAT and high > 1
                factor = outer * high if bounded else outer
                if bounded:
                    bounds.append(factor)
                stack.append((sub, factor))
            elif op == sre_constants.SUBPATTERN:
                stack.append((value[-1], outer))
            elif op == sre_constants.BRANCH:
                stack.extend((branch, outer) for branch in value[1])
            elif op in (sre_constants.ASSERT, sre_constants.ASSERT_NOT):
                stack.append((value[1], outer))
    return bounds


def _check_schema(schema: dict, param: str, limits: RequestLimits,
                  lengths: dict[int, str]) -> None:
    """One schema's bounds; its bounded lengths are added to `lengths` (with `param`), which
    the request's schemas share."""
    check_schema_bounds(schema, param, limits)
    lengths.update(dict.fromkeys(bounded_lengths(schema, param, limits), param))


def check_schema_bounds(schema: dict, param: str, limits: RequestLimits) -> None:
    """A schema's size and nesting: what bounds the time its grammar takes to compile."""
    size = len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False).encode())
    if size > limits.max_schema_bytes:
        raise APIError.of(ErrorKind.SCHEMA_TOO_LARGE, param=param, size=size,
                          limit=limits.max_schema_bytes)
    depth = _nesting(schema)
    if depth > limits.max_schema_depth:
        raise APIError.of(ErrorKind.SCHEMA_TOO_DEEP, param=param, depth=depth,
                          limit=limits.max_schema_depth)


def _nesting(node: Any) -> int:
    """How deep objects and arrays nest in a schema's JSON (an object of plain values: 1),
    walked without recursion (the body parser already caps JSON depth, this caps the walk)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(node, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value \
            if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return deepest


def _check_unicode(text: str, param: str) -> None:
    # JSON escapes can produce lone surrogates, which no tokenizer can encode.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise APIError.of(ErrorKind.INVALID_UNICODE, param=param) from None
