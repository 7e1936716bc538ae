"""OpenAI tools and response formats on the real local stack (Ray Serve, vLLM CPU, the tiny test
models), through the OpenAI SDK and on the raw wire.

The tiny models have random weights: they cannot choose tools well, and nothing here judges what
they choose. What is checked is what the server guarantees whatever the model: a `required` or
named call and a `json_schema` answer always parse and validate against their schema (guided
decoding), streamed and not; streamed argument pieces join into the same JSON (Chinese text
included: vLLM issue 19056); ids, `finish_reason: "tool_calls"`, `tool` messages in the history;
who may send tools, and which model serves them. Schemas bound their strings (enum, pattern,
maxLength) so a random model finishes within its token budget; a real model needs no such help.
"""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.conftest import image_message
from tests.integration.test_local_stack import TEXT_MODEL, VISION_MODEL

pytestmark = pytest.mark.integration

# The problems and wishes are the ticket of the issue: Chinese text every argument must carry
# through the streamed pieces intact.
PROBLEMS = ["屏幕有划痕", "收到货发现屏幕有划痕", "the screen is scratched"]
WISHES = ["换新", "退款", "维修"]
GET_ORDER = {"type": "function", "function": {
    "name": "get_order", "description": "Look up one of the shopper's orders by its number.",
    "parameters": {"type": "object", "properties": {
        "order_id": {"type": "string", "pattern": "^[0-9]{6,12}$"},
        "problem": {"type": "string", "enum": PROBLEMS}},
        "required": ["order_id", "problem"], "additionalProperties": False}}}
LIST_ORDERS = {"type": "function", "function": {
    "name": "list_orders", "description": "List the shopper's recent orders.",
    "parameters": {"type": "object", "properties": {
        "limit": {"type": "integer", "minimum": 1, "maximum": 20}},
        "required": ["limit"], "additionalProperties": False}}}
TOOLS = [GET_ORDER, LIST_ORDERS]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
TICKET = "订单号123456，收到货发现屏幕有划痕，申请换新"
TICKET_SCHEMA = {"type": "object", "properties": {
    "order_id": {"type": "string", "pattern": "^[0-9]{6}$"},
    "problem": {"type": "string", "enum": PROBLEMS},
    "wish": {"type": "string", "enum": WISHES}},
    "required": ["order_id", "problem", "wish"], "additionalProperties": False}
TICKET_FORMAT = {"type": "json_schema", "json_schema": {
    "name": "after_sales_ticket", "schema": TICKET_SCHEMA, "strict": True}}
# In English for the tool tests: the tiny models' 1,000-token vocabulary spends ~3 tokens on each
# Chinese character, and the Chinese persona, facts and tools would fill the 4k context. The
# arguments still carry Chinese (the `problem` enum).
MESSAGES = [{"role": "user", "content": "Order 123456 came with a scratched screen, I want a "
                                        "replacement."}]
SHOP = {"X-Shop-Id": "demo-electronics"}
# A random model writes one byte-sized token at a time, a whitespace between JSON tokens where
# the grammar allows one: a call of ~60 characters can take a few hundred tokens.
BUDGET = {"max_tokens": 500, "temperature": 1.0}


def sdk(stack, key) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key.key, default_headers=SHOP,
                         max_retries=0, timeout=120)


def post(stack, key, **body):
    with stack.client() as client:
        return client.post("/v1/chat/completions", headers={**key.headers, **SHOP},
                           json={"messages": MESSAGES, **BUDGET, **body})


def streamed_events(stack, key, **body) -> list[dict]:
    with stack.client() as client, client.stream(
            "POST", "/v1/chat/completions", headers={**key.headers, **SHOP},
            json={"messages": MESSAGES, **BUDGET, "stream": True, **body}) as response:
        assert response.status_code == 200, response.read()
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


def assert_valid_call(name: str, arguments: str) -> dict:
    parsed = json.loads(arguments)
    jsonschema.validate(parsed, SCHEMAS[name])
    return parsed


@pytest.fixture(scope="module")
def backend(stack_keys):
    return stack_keys["quiet"]


@pytest.mark.parametrize("choice", ["required", {"type": "function",
                                                 "function": {"name": "get_order"}}])
def test_a_forced_call_parses_and_validates_through_the_openai_sdk(stack, backend, choice):
    for attempt in range(3):  # three samples of a random model: every one must parse
        completion = sdk(stack, backend).chat.completions.create(
            model=TEXT_MODEL, messages=MESSAGES, tools=TOOLS, tool_choice=choice,
            parallel_tool_calls=False, **BUDGET)
        choice_0 = completion.choices[0]
        assert choice_0.finish_reason == "tool_calls", (choice_0, completion.usage)
        calls = choice_0.message.tool_calls
        assert len(calls) == 1 and calls[0].id and calls[0].type == "function"
        if not isinstance(choice, str):
            assert calls[0].function.name == "get_order"
        assert_valid_call(calls[0].function.name, calls[0].function.arguments)
        assert not choice_0.message.content


@pytest.mark.parametrize("choice", ["required", {"type": "function",
                                                 "function": {"name": "get_order"}}])
def test_a_streamed_forced_call_arrives_in_pieces_that_join_into_valid_arguments(
        stack, backend, choice):
    for attempt in range(3):
        events = streamed_events(stack, backend, tools=TOOLS, tool_choice=choice,
                                 parallel_tool_calls=False)
        pieces = [d for e in events for c in e["choices"] for d in c["delta"].get("tool_calls", [])]
        assert pieces, events
        first = pieces[0]
        assert first["index"] == 0 and first["id"] and first["type"] == "function"
        name = first["function"]["name"]
        assert all("id" not in p and "name" not in p["function"] for p in pieces[1:])
        arguments = "".join(p["function"].get("arguments", "") for p in pieces)
        parsed = assert_valid_call(name, arguments)
        if name == "get_order":
            assert parsed["problem"] in PROBLEMS  # Chinese text intact across pieces
        finish = [c["finish_reason"] for e in events for c in e["choices"] if c["finish_reason"]]
        assert finish == ["tool_calls"]
        assert not any(c["delta"].get("content") for e in events for c in e["choices"])


def test_the_openai_sdk_accumulates_a_streamed_call_with_chinese_arguments(stack, backend):
    stream = sdk(stack, backend).chat.completions.create(
        model=TEXT_MODEL, messages=MESSAGES, tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_order"}}, stream=True,
        **BUDGET)
    arguments, names = "", []
    for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or []:
            if delta.function.name:
                names.append(delta.function.name)
            arguments += delta.function.arguments or ""
    assert names == ["get_order"]
    assert assert_valid_call("get_order", arguments)["problem"] in PROBLEMS


@pytest.mark.parametrize("stream", [False, True])
def test_a_json_schema_answer_parses_and_validates(stack, backend, stream):
    for attempt in range(3):
        if stream:
            events = streamed_events(stack, backend, response_format=TICKET_FORMAT,
                                     messages=[{"role": "user", "content": TICKET}])
            content = "".join(c["delta"].get("content") or "" for e in events
                              for c in e["choices"])
            service = events[-1]["service"]
        else:
            response = post(stack, backend, response_format=TICKET_FORMAT,
                            messages=[{"role": "user", "content": TICKET}])
            assert response.status_code == 200, response.text
            body = response.json()
            content, service = body["choices"][0]["message"]["content"], body["service"]
            assert body["choices"][0]["finish_reason"] == "stop"
        jsonschema.validate(json.loads(content), TICKET_SCHEMA)
        # The answer is the backend's JSON: nothing curated or cached, not rewritten.
        assert service["cache"] == "bypass_response_format" and service["guard"] is None


def test_a_json_object_answer_is_json_from_its_first_character(stack, backend):
    response = post(stack, backend, response_format={"type": "json_object"}, max_tokens=300)
    assert response.status_code == 200, response.text
    choice = response.json()["choices"][0]
    content = choice["message"]["content"]
    assert content.startswith("{"), content
    if choice["finish_reason"] == "stop":  # a random model may run out of budget mid-object
        assert isinstance(json.loads(content), dict)


def test_auto_renders_the_tools_and_none_leaves_them_out(stack, backend):
    with_tools = post(stack, backend, tools=TOOLS, tool_choice="auto", max_tokens=4).json()
    without = post(stack, backend, tools=TOOLS, tool_choice="none", max_tokens=4).json()
    # Qwen3's template writes the tools into the system turn; with "none" they are not shown.
    tools_json = len(json.dumps(TOOLS))
    assert with_tools["usage"]["prompt_tokens"] > without["usage"]["prompt_tokens"] + tools_json / 4
    assert "tool_calls" not in without["choices"][0]["message"]
    assert with_tools["service"]["cache"] == "bypass_tools"
    for call in with_tools["choices"][0]["message"].get("tool_calls", []):
        assert_valid_call(call["function"]["name"], call["function"]["arguments"])


def test_a_tool_result_in_the_history_is_answered(stack, backend):
    call = {"id": "call_1", "type": "function", "function": {
        "name": "get_order", "arguments": json.dumps({"order_id": "123456",
                                                      "problem": PROBLEMS[0]})}}
    history = [*MESSAGES, {"role": "assistant", "content": None, "tool_calls": [call]},
               {"role": "tool", "tool_call_id": "call_1",
                "content": json.dumps({"status": "delivered"}, ensure_ascii=False)}]
    completion = sdk(stack, backend).chat.completions.create(
        model=TEXT_MODEL, messages=history, tools=TOOLS, tool_choice="none", **BUDGET)
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 0


def test_a_widget_key_may_not_send_tools_or_ask_for_reasoning(stack, stack_keys):
    widget = stack_keys["widget-apparel"]
    headers = {**widget.headers, "X-Shop-Id": "demo-apparel"}
    with stack.client() as client:
        for field, value in [("tools", TOOLS), ("response_format", TICKET_FORMAT),
                             ("return_reasoning", True)]:
            response = client.post("/v1/chat/completions", headers=headers, json={
                "messages": MESSAGES, field: value, **BUDGET})
            assert response.status_code == 403, response.text
            error = response.json()["error"]
            assert (error["code"], error["param"]) == ("backend_only_field", field)


def test_tools_with_an_image_are_refused_by_name_not_failed(stack, backend):
    response = post(stack, backend, messages=[image_message("这个订单屏幕有划痕")], tools=TOOLS)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "tools_not_supported" and VISION_MODEL in error["message"]


def test_a_schema_the_grammar_engine_cannot_enforce_is_a_400_naming_it(stack, backend):
    broken = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "object", "properties": {"a": {"type": "strin"}}}}}
    response = post(stack, backend, response_format=broken)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "response_format.json_schema.schema"
    assert "strin" in error["message"] and ".cc:" not in error["message"]


def test_qwen_style_thinking_switch_returns_reasoning_apart_from_the_answer(stack, backend):
    # The seeds' LangChain agent: its tools, and extra_body={"enable_thinking": True,
    # "return_reasoning": True} (the Qwen cloud API's style). The tiny model never closes its
    # think block, so all it writes is reasoning; the real model's answer follows `</think>`.
    agent = {"tools": TOOLS, "tool_choice": "auto", "enable_thinking": True, "max_tokens": 24}
    message = post(stack, backend, return_reasoning=True, **agent).json()["choices"][0]["message"]
    assert message["reasoning_content"]
    assert "<think>" not in (message["content"] or "") and "</think>" not in message[
        "reasoning_content"]
    # Without return_reasoning the thinking is not sent at all, nor put in the content.
    quiet = post(stack, backend, **agent).json()["choices"][0]["message"]
    assert "reasoning_content" not in quiet
    assert not (quiet["content"] or "").startswith(message["reasoning_content"][:8])
