"""The replica's side of tools and response formats (model_server/vllm/output_format.py), with
vLLM's own parsers and the prepared models' tokenizers, no engine: the grammar a forced call
gets, schemas refused by name, the model's text split into content, reasoning and call pieces
(streamed and whole), and the stand-in models' templates rendering tools as Qwen3's does."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from model_server.engine_protocol import EngineInputError, GenerationChunk, OutputFormat
from model_server.vllm.output_format import MAX_JSON_WHITESPACE, AnswerShape
from tests.conftest import PROJECT_ROOT, model_for

TOOL = {"type": "function", "function": {"name": "get_order", "parameters": {
    "type": "object", "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"]}}}
NAMED = {"type": "function", "function": {"name": "get_order"}}
CALL_TEXT = '<tool_call>\n{"name": "get_order", "arguments": {"order_id": "订单123屏幕"}}\n</tool_call>'
THINK_OFF = {"enable_thinking": False}


@pytest.fixture(scope="module")
def tokenizer():
    path = PROJECT_ROOT / ".models" / "tiny-qwen3"
    if not (path / ".complete").exists():
        pytest.fail(f"{path} missing: run scripts/setup.sh")
    return AutoTokenizer.from_pretrained(path)


def shape(local_config, tokenizer, kwargs=THINK_OFF, **output) -> AnswerShape:
    return AnswerShape(model_for(local_config, "text"), OutputFormat(**output), tokenizer, kwargs)


def json_nodes(node):
    if isinstance(node, dict):
        if node.get("type") == "json_schema":
            yield node
        for value in node.values():
            yield from json_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from json_nodes(value)


@pytest.mark.parametrize("choice", ["required", NAMED])
def test_a_forced_call_gets_a_grammar_holding_the_arguments_to_the_tools_schema(
        local_config, tokenizer, choice):
    shaped = shape(local_config, tokenizer, tools=(TOOL,), tool_choice=choice,
                   parallel_tool_calls=False, constrained=True)
    tag = json.loads(shaped.structured_outputs.structural_tag)
    arguments = list(json_nodes(tag))
    # Strict level "parameter": the tool's own schema, not "any JSON".
    assert arguments and all(n["json_schema"] == TOOL["function"]["parameters"]
                             for n in arguments)
    assert all(n["max_whitespace_cnt"] == MAX_JSON_WHITESPACE for n in arguments)
    assert '"stop_after_first": true' in json.dumps(tag)  # parallel_tool_calls: false
    assert shaped.skip_special_tokens is False  # `<tool_call>` may be a special token
    assert shaped.template_kwargs() == {"tools": [TOOL]}


def test_auto_leaves_the_model_free_unless_a_tool_is_strict(local_config, tokenizer):
    free = shape(local_config, tokenizer, tools=(TOOL,), tool_choice="auto")
    assert free.structured_outputs is None and free.template_kwargs() == {"tools": [TOOL]}
    strict = {"type": "function", "function": {**TOOL["function"], "strict": True}}
    held = shape(local_config, tokenizer, tools=(strict,), tool_choice="auto")
    assert [n["json_schema"] for n in json_nodes(json.loads(
        held.structured_outputs.structural_tag))] == [TOOL["function"]["parameters"]] * 2


def test_none_shows_no_tools_and_parses_nothing(local_config, tokenizer):
    shaped = shape(local_config, tokenizer, tools=(TOOL,), tool_choice="none")
    assert shaped.template_kwargs() == {} and shaped.structured_outputs is None
    chunk = GenerationChunk(CALL_TEXT, 5, 9, "stop")
    assert shaped.delta(chunk, [], True) == chunk  # a made-up call stays text


def test_a_json_schema_is_a_json_grammar(local_config, tokenizer):
    schema = {"type": "object", "properties": {"wish": {"enum": ["换新", "退款"]}}}
    shaped = shape(local_config, tokenizer, constrained=True, response_format={
        "type": "json_schema", "json_schema": {"name": "t", "schema": schema}})
    assert json.loads(json.dumps(shaped.structured_outputs.json)) == schema
    anything = shape(local_config, tokenizer, response_format={"type": "json_object"})
    assert anything.structured_outputs.json_object is True


@pytest.mark.parametrize(("output", "param"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "t", "schema": {
        "type": "object", "properties": {"a": {"type": "strin"}}}}}},
     "response_format.json_schema.schema"),
    ({"tools": (TOOL, {"type": "function", "function": {"name": "b", "parameters": {
        "$ref": "#/nowhere"}}}), "tool_choice": "auto"}, "tools[1].function.parameters"),
])
def test_a_schema_the_grammar_engine_cannot_enforce_is_refused_by_name(
        local_config, tokenizer, output, param):
    with pytest.raises(EngineInputError) as err:
        shape(local_config, tokenizer, **output)
    assert err.value.param == param
    assert err.value.client_message.startswith(param) and ".cc:" not in str(err.value)


def test_streamed_text_is_split_into_content_and_call_pieces(local_config, tokenizer):
    shaped = shape(local_config, tokenizer, tools=(TOOL,), tool_choice="auto")
    shaped.set_prompt(tokenizer.encode("<|im_start|>assistant\n<think>\n\n</think>\n\n"))
    text = "好的 " + CALL_TEXT
    ids = tokenizer.encode(text)
    pieces, previous = [], ""
    # One token at a time, as vLLM's detokenizer sends them: a piece never ends inside a
    # character (incomplete bytes are held back), which is what this loop does too.
    for i in range(1, len(ids) + 1):
        current = tokenizer.decode(ids[:i])
        if current.endswith("\ufffd") and i < len(ids):
            continue
        delta, previous = current[len(previous):], current
        pieces.append(shaped.delta(GenerationChunk(delta, 3, i), ids[i - 1:i], i == len(ids)))
    content = "".join(p.text for p in pieces)
    calls = [d for p in pieces for d in p.tool_calls]
    assert content.strip() == "好的"
    assert calls[0].id and calls[0].name == "get_order"
    assert json.loads("".join(d.arguments for d in calls)) == {"order_id": "订单123屏幕"}


def test_a_whole_answer_is_parsed_once(local_config, tokenizer):
    shaped = shape(local_config, tokenizer, tools=(TOOL,), tool_choice=NAMED, constrained=True)
    whole = shaped.whole(GenerationChunk(CALL_TEXT, 3, 30, "stop"), [])
    assert whole.text == "" and whole.finish_reason == "stop"
    (call,) = whole.tool_calls
    assert call.id.startswith("chatcmpl-tool-") and call.name == "get_order"
    assert json.loads(call.arguments) == {"order_id": "订单123屏幕"}


def test_thinking_is_split_from_the_answer(local_config, tokenizer):
    shaped = shape(local_config, tokenizer, {"enable_thinking": True}, reasoning=True)
    whole = shaped.whole(GenerationChunk("<think>库存要查一下</think>\n\n有货。", 3, 12, "stop"), [])
    assert (whole.reasoning.strip(), whole.text.strip()) == ("库存要查一下", "有货。")


def test_the_stand_in_templates_render_tools_calls_and_results_as_qwen3_does():
    messages = [{"role": "user", "content": "订单123在哪"},
                {"role": "assistant", "content": None, "tool_calls": [{
                    "id": "c1", "type": "function", "function": {
                        "name": "get_order", "arguments": '{"order_id": "123"}'}}]},
                {"role": "tool", "tool_call_id": "c1", "content": '{"status": "shipped"}'}]
    for model in ("tiny-qwen3", "smollm2-135m-instruct"):
        tokenizer = AutoTokenizer.from_pretrained(PROJECT_ROOT / ".models" / model)
        prompt = tokenizer.apply_chat_template(messages, tools=[TOOL], tokenize=False,
                                               add_generation_prompt=True)
        assert "<tools>\n" + json.dumps(TOOL) + "\n</tools>" in prompt
        assert ('<|im_start|>assistant\n<tool_call>\n{"name": "get_order", "arguments": '
                '{"order_id": "123"}}\n</tool_call><|im_end|>') in prompt
        assert '<|im_start|>user\n<tool_response>\n{"status": "shipped"}\n</tool_response>' \
            in prompt
        assert prompt.endswith("<|im_start|>assistant\n")
