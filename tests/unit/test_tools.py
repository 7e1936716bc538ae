"""Tools, response formats and reasoning in the ingress: what is accepted and refused (and with
which code and field), who may send them, which model serves them, what the replica is asked
for, and the OpenAI shapes of the answer (JSON body and SSE pieces) from engine chunks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from configs.schema import RequestLimits
from model_server.engine_protocol import GenerationChunk, ToolCallDelta, merge_tool_calls
from router.access.api_keys import Caller
from router.api.errors import APIError
from router.api.protocol import ChatCompletionChunk
from router.api.validation import check_request, parse_chat_request
from router.chat_service import ChatService
from router.engine_params import chat_template_kwargs_for, output_format_for
from router.routing import CatalogEntry, route_for_request
from tests.conftest import image_message, model_for
from tests.fakes import BACKEND_CALLER, recording_metrics

USER = {"role": "user", "content": "订单号123456，收到货发现屏幕有划痕，申请换新"}
TOOL = {"type": "function", "function": {"name": "get_order", "parameters": {
    "type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}}}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "ticket", "schema": {
    "type": "object", "properties": {"order_id": {"type": "string"}}}}}
LIMITS = RequestLimits(max_tools=2, max_schema_bytes=400, max_schema_depth=6,
                       max_schema_length_bound=64, max_schema_length_bounds=2)


def text_format(**string) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "t", "schema": {
        "type": "object", "properties": {"a": {"type": "string", **string}}}}}


def request_of(**fields):
    return parse_chat_request(json.dumps({"messages": [USER], **fields}).encode())


def refused(local_config, **fields) -> APIError:
    request = request_of(**fields)
    with pytest.raises(APIError) as err:
        check_request(request, model_for(local_config, "text"), LIMITS)
    return err.value


def test_unbounded_strings_and_repeats_and_shared_bounds_are_cheap_and_accepted(local_config):
    tool = {"type": "function", "function": {"name": "a", "parameters": {"properties": {
        "id": {"pattern": "^[A-Z]+[0-9]{6}(-.*)?$"}, "note": {"type": "string"},
        "code": {"maxLength": 6}, "tags": {"type": "array", "maxItems": 500}}}}}
    request = request_of(tools=[tool], response_format=text_format(minLength=6, maxLength=64))
    check_request(request, model_for(local_config, "text"), LIMITS)  # two distinct: 6 and 64


def test_a_full_tool_conversation_is_accepted(local_config):
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_order", "arguments": '{"order_id": "123456"}'}}
    request = parse_chat_request(json.dumps({"messages": [
        USER, {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
        {"role": "assistant", "content": "", "tool_calls": [call]},
    ], "tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "get_order"}},
        "parallel_tool_calls": False}).encode())
    check_request(request, model_for(local_config, "text"), LIMITS)
    assert request.structured and request.backend_only_fields() == [
        "tools", "tool_choice", "parallel_tool_calls"]


@pytest.mark.parametrize(("fields", "param", "fragment"), [
    ({"tools": [TOOL] * 3}, "tools", "At most 2 tools"),
    ({"tools": [TOOL, TOOL]}, "tools", "Two tools are named 'get_order'"),
    ({"tool_choice": "required"}, "tool_choice", "sends no tools"),
    ({"parallel_tool_calls": True}, "parallel_tool_calls", "sends no tools"),
    ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "cancel"}}},
     "tool_choice.function.name", "'cancel'"),
    ({"tools": [TOOL], "tool_choice": "required", "response_format": SCHEMA_FORMAT},
     "response_format", "tool_choice 'required'"),
    ({"response_format": {"type": "json_schema", "json_schema": {
        "name": "big", "schema": {"description": "x" * 500}}}},
     "response_format.json_schema.schema", "at most 400"),
    ({"tools": [{"type": "function", "function": {"name": "deep", "parameters": {
        "a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}}}]},
     "tools[0].function.parameters", "7 deep"),
    ({"enable_thinking": True, "chat_template_kwargs": {"enable_thinking": False}},
     "enable_thinking", "disagree"),
    ({"messages": [USER, {"role": "tool", "content": "x"}]}, "messages[1].tool_call_id",
     "needs the tool_call_id"),
    ({"messages": [{**USER, "tool_call_id": "call_1"}]}, "messages[0].tool_call_id",
     "only 'tool' messages"),
    ({"messages": [{**USER, "tool_calls": []}]}, "messages[0].tool_calls",
     "only 'assistant' messages"),
    ({"messages": [USER, {"role": "assistant"}]}, "messages[1].content", "is missing"),
    # Bounded lengths are what grammars are slow to compile (docs/benchmarks.md).
    ({"response_format": text_format(maxLength=65)}, "response_format.json_schema.schema",
     "at 65 (properties.a.maxLength); at most 64"),
    ({"response_format": text_format(pattern="^(([a-z]{1,9}){1,9})$")},
     "response_format.json_schema.schema", "at 81 (properties.a.pattern)"),
    ({"response_format": text_format(pattern="^([a-z]$")}, "response_format.json_schema.schema",
     "cannot read (properties.a.pattern): missing )"),
    ({"tools": [TOOL, {"type": "function", "function": {"name": "b", "parameters": {
        "properties": {"x": {"maxLength": 10}, "y": {"pattern": "^[0-9]{6}$"}}}}}],
      "response_format": text_format(minLength=3)},
     "response_format.json_schema.schema", "bound 3 different lengths"),
])
def test_bad_tool_requests_are_400s_naming_the_field(local_config, fields, param, fragment):
    error = refused(local_config, **fields)
    assert (error.status, error.param) == (400, param)
    assert fragment in error.message


@pytest.mark.parametrize("fields", [
    {"tools": [{"type": "function", "function": {"name": "has space"}}]},
    {"tool_choice": "sometimes"},
    {"response_format": {"type": "xml"}},
    {"response_format": {"type": "json_schema", "json_schema": {"name": "no_schema"}}},
])
def test_malformed_tool_fields_fail_the_schema(fields):
    with pytest.raises(APIError) as err:
        request_of(**fields)
    assert err.value.status == 400 and err.value.param.split(".")[0].split("[")[0] in fields


def test_only_backend_keys_may_drive_tools_or_read_reasoning():
    widget = Caller("page", "widget", None, BACKEND_CALLER.limits)
    for field, value in [("tools", [TOOL]), ("response_format", SCHEMA_FORMAT),
                         ("return_reasoning", True)]:
        with pytest.raises(APIError) as err:
            widget.check_fields(request_of(**{field: value}).backend_only_fields())
        assert (err.value.status, err.value.code, err.value.param) == (
            403, "backend_only_field", field)
    with pytest.raises(APIError) as err:
        widget.check_roles(["user", "tool"])
    assert err.value.code == "message_role_not_allowed"
    BACKEND_CALLER.check_fields(request_of(tools=[TOOL]).backend_only_fields())


CATALOG = (CatalogEntry("text-m", "text", tools=True, reasoning=True),
           CatalogEntry("vision-m", "vision"))


def test_tools_go_to_a_model_that_serves_them_or_are_refused_by_name():
    assert route_for_request(request_of(tools=[TOOL]), CATALOG).model == "text-m"
    with_image = parse_chat_request(json.dumps(
        {"messages": [image_message()], "tools": [TOOL]}).encode())
    for request in (with_image, request_of(response_format=SCHEMA_FORMAT, model="vision-m")):
        with pytest.raises(APIError) as err:
            route_for_request(request, CATALOG)
        assert (err.value.status, err.value.code) == (400, "tools_not_supported")
        assert "vision-m" in err.value.message
    with pytest.raises(APIError) as err:
        route_for_request(request_of(return_reasoning=True, model="vision-m"), CATALOG)
    assert (err.value.code, err.value.param) == ("tools_not_supported", "return_reasoning")


def test_the_replica_is_asked_for_the_shape_and_constrained_answers_do_not_think(local_config):
    model = model_for(local_config, "text")
    assert output_format_for(request_of(), model, enable_thinking=False) is None
    thinking = output_format_for(request_of(), model, enable_thinking=True)
    assert thinking.reasoning and not thinking.constrained  # thinking never reaches content
    auto = output_format_for(request_of(tools=[TOOL]), model, enable_thinking=True)
    assert auto.tools[0]["function"]["name"] == "get_order" and auto.reasoning
    named = request_of(tools=[TOOL], tool_choice={"type": "function",
                                                  "function": {"name": "get_order"}},
                       enable_thinking=True)
    forced = output_format_for(named, model, enable_thinking=True)
    assert forced.constrained and not forced.reasoning
    assert forced.tool_choice == {"type": "function", "function": {"name": "get_order"}}
    assert chat_template_kwargs_for(named, True, forced)["enable_thinking"] is False
    schema = output_format_for(request_of(response_format=SCHEMA_FORMAT), model, False)
    assert schema.response_format["json_schema"]["schema"]["type"] == "object"  # by alias
    vision = model_for(local_config, "vision")
    assert output_format_for(request_of(), vision, enable_thinking=True) is None


def test_pieces_of_tool_calls_merge_per_call_in_order():
    pieces = [ToolCallDelta(0, "call_a", "get_order", '{"order_id": "1'),
              ToolCallDelta(0, None, None, '23"}'), ToolCallDelta(1, "call_b", "list_orders", ""),
              ToolCallDelta(1, None, None, "{}")]
    assert merge_tool_calls(pieces) == (ToolCallDelta(0, "call_a", "get_order",
                                                      '{"order_id": "123"}'),
                                        ToolCallDelta(1, "call_b", "list_orders", "{}"))
    merged = GenerationChunk.merged([GenerationChunk("", 5, 1, None, "think", pieces[:2]),
                                     GenerationChunk("", 5, 2, "stop", "ing", pieces[2:])])
    assert merged.reasoning == "thinking" and len(merged.tool_calls) == 2


# ---- the answer's OpenAI shapes, from engine chunks --------------------------------------------

CALL_PIECES = (
    GenerationChunk("", 10, 3, None, "", (ToolCallDelta(0, "chatcmpl-tool-1", "get_order", ""),)),
    GenerationChunk("", 10, 6, None, "", (ToolCallDelta(0, None, None, '{"order_id": "屏'),)),
    GenerationChunk("", 10, 8, None, "", (ToolCallDelta(0, None, None, '幕123"}'),)),
    GenerationChunk("", 10, 9, "stop"),
)


def service_with(local_config, chunks) -> ChatService:
    async def stream(request) -> AsyncIterator[GenerationChunk]:
        for chunk in chunks:
            yield chunk
    return ChatService(local_config, {"text": stream, "vision": stream})


def run_chat_measured(local_config, chunks, **fields):
    """The JSON body (or the stream's events) of a request answered with `chunks`, and the
    registry its metrics went to."""
    service = service_with(local_config, chunks)
    metrics, registry = recording_metrics(local_config)
    body = json.dumps({"messages": [USER], "tools": [TOOL], **fields}).encode()

    async def run():
        chat = await service.prepare(body, "chatcmpl-t", metrics.start(), BACKEND_CALLER)
        if not fields.get("stream"):
            return (await service.complete(chat)).body()
        events = [e async for e in (await service.open_stream(chat)).events()]
        return [json.loads(e.removeprefix("data: ")) for e in events if e != "data: [DONE]\n\n"]
    return asyncio.run(run()), registry


def run_chat(local_config, chunks, **fields):
    return run_chat_measured(local_config, chunks, **fields)[0]


def test_a_json_answer_carries_the_calls_in_openai_shape(local_config):
    body = run_chat(local_config, CALL_PIECES)
    choice = body["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [{"id": "chatcmpl-tool-1", "type": "function",
                                                "function": {"name": "get_order",
                                                             "arguments": '{"order_id": "屏幕123"}'}}]
    assert "reasoning_content" not in choice["message"]


def test_a_stream_sends_call_pieces_then_finish_reason_tool_calls(local_config):
    events = run_chat(local_config, CALL_PIECES, stream=True)
    for event in events:
        ChatCompletionChunk.model_validate(event)
    pieces = [d for e in events for c in e["choices"] for d in c["delta"].get("tool_calls", [])]
    # Pieces that arrived together go out as one (router/chat_service.py coalesces them).
    assert {k: pieces[0][k] for k in ("index", "id", "type")} == {
        "index": 0, "id": "chatcmpl-tool-1", "type": "function"}
    assert pieces[0]["function"]["name"] == "get_order"
    assert all(set(p) == {"index", "function"} and set(p["function"]) == {"arguments"}
               for p in pieces[1:])
    assert "".join(p["function"]["arguments"] for p in pieces) == '{"order_id": "屏幕123"}'
    finishes = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
    assert finishes == ["tool_calls"]


def test_reasoning_is_sent_apart_only_to_a_request_that_asked(local_config):
    chunks = (GenerationChunk("", 10, 2, None, "Let me think. "),
              GenerationChunk("Ships today.", 10, 5, "stop"))
    asked = run_chat(local_config, chunks, return_reasoning=True, enable_thinking=True,
                     tools=[TOOL])
    message = asked["choices"][0]["message"]
    assert message == {"role": "assistant", "content": "Ships today.",
                       "reasoning_content": "Let me think. "}
    assert asked["choices"][0]["finish_reason"] == "stop"
    streamed = run_chat(local_config, chunks, return_reasoning=True, stream=True)
    deltas = [c["delta"] for e in streamed for c in e["choices"]]
    assert {"reasoning_content": "Let me think. "} in deltas
    not_asked = run_chat(local_config, chunks, stream=True)
    assert not any("reasoning_content" in c["delta"] for e in not_asked for c in e["choices"])


def test_shaped_answers_are_counted_by_shape_and_how_they_ended(local_config):
    model = model_for(local_config, "text").name

    def counted(registry, shape: str, finish: str) -> float | None:
        return registry.get_sample_value("cs_shaped_answers_total",
                                         {"model": model, "shape": shape, "finish": finish})

    _, called = run_chat_measured(local_config, CALL_PIECES, tool_choice="required")
    assert counted(called, "tools_required", "tool_calls") == 1
    cut = (GenerationChunk('{"size": ', 10, 5, "length"),)
    _, json_cut = run_chat_measured(local_config, cut, tools=None, stream=True,
                                    response_format={"type": "json_object"})
    assert counted(json_cut, "json_object", "length") == 1
    plain = (GenerationChunk("Ships today.", 10, 3, "stop"),)
    _, answered = run_chat_measured(local_config, plain, tool_choice={
        "type": "function", "function": {"name": TOOL["function"]["name"]}})
    assert counted(answered, "tools_named", "stop") == 1
    _, text_only = run_chat_measured(local_config, plain, tools=None)
    assert not [s for m in text_only.collect() if m.name == "cs_shaped_answers"
                for s in m.samples]
