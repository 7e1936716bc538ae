"""End-to-end over HTTP against real Ray Serve and real vLLM CPU engines (tiny checkpoints)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.conftest import image_message
from tests.integration.conftest import LocalStack

pytestmark = pytest.mark.integration

TEXT_MODEL = "Qwen/Qwen3-0.6B"
VISION_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
# Random-weight models: sample (temperature 1) so they emit tokens instead of an instant EOS.
SAMPLE = {"temperature": 1.0, "seed": 7, "max_tokens": 12}


def ask(stack: LocalStack, **body):
    with stack.client() as client:
        return client.post("/v1/chat/completions", json=body)


def test_text_question_is_answered_by_the_text_model(stack):
    # Two questions in one message: no curated answer covers both, so the model answers.
    r = ask(stack, messages=[{"role": "user", "content": "今天下午三点付款的话什么时候发货？顺丰能到新疆吗？"}], **SAMPLE)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["model"] == TEXT_MODEL and r.headers["x-route"] == "text"
    usage = data["usage"]
    assert usage["prompt_tokens"] > 0 and 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert data["choices"][0]["finish_reason"] in ("stop", "length")


def test_image_question_is_answered_by_the_vision_model(stack):
    r = ask(stack, messages=[image_message("你们发错颜色了，这是包裹的照片")], **SAMPLE)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == VISION_MODEL and r.headers["x-route"] == "vision"
    # The image became vision tokens: the prompt is longer than the same text alone.
    text_only = ask(stack, model=VISION_MODEL,
                    messages=[{"role": "user", "content": "你们发错颜色了，这是包裹的照片"}], **SAMPLE)
    assert r.json()["usage"]["prompt_tokens"] > text_only.json()["usage"]["prompt_tokens"]


def test_image_in_an_earlier_turn_keeps_the_conversation_on_the_vision_model(stack):
    r = ask(stack, messages=[
        image_message("Is this the item in the listing?"),
        {"role": "assistant", "content": "Yes, that is the grey hoodie."},
        {"role": "user", "content": "Do you have it in M?"},
    ], **SAMPLE)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == VISION_MODEL


def test_streaming_chunks_parse_as_openai_sse(stack):
    with stack.client() as client, client.stream("POST", "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Can I return it if I already washed it once? Who pays the return shipping?"}], "stream": True,
        "stream_options": {"include_usage": True}, **SAMPLE,
    }) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert len(finishes) == 1
    usage = chunks[-1]["usage"]
    content_chunks = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert 1 <= usage["completion_tokens"] <= 12 and len(content_chunks) <= usage["completion_tokens"]


def test_models_endpoint_lists_both_models(stack):
    with stack.client() as client:
        data = client.get("/v1/models").json()
    assert {(m["id"], m["modality"]) for m in data["data"]} == {(TEXT_MODEL, "text"), (VISION_MODEL, "vision")}


def test_openai_sdk(stack, stack_keys):
    # The SDK always sends its api_key as a bearer token: a real key of the stack's keys file.
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack_keys["quiet"].key,
                           max_retries=0)
    completion = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Is the size true to fit for the merino sweater, or should I size up?"}], **SAMPLE)
    assert completion.model == TEXT_MODEL and completion.usage.completion_tokens >= 1
    stream = client.chat.completions.create(
        model=VISION_MODEL, messages=[image_message()], stream=True, **SAMPLE)
    chunks = list(stream)
    assert chunks and all(c.model == VISION_MODEL for c in chunks)
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=TEXT_MODEL, messages=[image_message()])
    assert err.value.status_code == 400 and "takes text only" in str(err.value)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    wrong = openai.OpenAI(base_url=f"{stack.url}/v1", api_key="csk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(messages=[{"role": "user", "content": "hi"}], model="auto")


def test_concurrent_text_and_vision_requests_all_succeed(stack):
    def one(i: int):
        messages = [image_message()] if i % 2 else [{"role": "user", "content": f"Question {i}: is grey M in stock?"}]
        return ask(stack, messages=messages, **SAMPLE)

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(one, range(16)))
    assert [r.status_code for r in responses] == [200] * 16
    assert {r.json()["model"] for r in responses} == {TEXT_MODEL, VISION_MODEL}


# (name, body, status, error code, param): the real stack names the cause and the field.
BAD = [
    ("malformed json", b'{"messages": [', 400, "invalid_request", None),
    ("top-level array", b"[]", 400, "invalid_request", None),
    ("missing messages", b"{}", 400, "invalid_request", "messages"),
    ("empty messages", b'{"messages": []}', 400, "invalid_request", "messages"),
    ("unknown role", b'{"messages": [{"role": "wizard", "content": "x"}]}', 400,
     "invalid_request", "messages[0].role"),
    ("unknown part", b'{"messages": [{"role": "user", "content": [{"type": "file", "file": {}}]}]}',
     400, "invalid_request", "messages[0].content[0]"),
    ("unknown model", b'{"model": "llama", "messages": [{"role": "user", "content": "x"}]}', 404,
     "model_not_found", "model"),
    ("max_tokens zero", b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 400,
     "invalid_request", "max_tokens"),
    ("max_tokens huge", b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 99999999}',
     400, "invalid_request", "max_tokens"),
    ("max_tokens 5000 digits",
     b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": ' + b"9" * 5000 + b"}",
     400, "invalid_request", "max_tokens"),
    ("undecodable image",
     json.dumps({"messages": [image_message(url="data:image/png;base64,iVBORw0KGgo=")]}).encode(),
     400, "invalid_image", "messages[0].content[1].image_url"),
    ("1x1 image", None, 400, "image_too_small", "messages[0].content[1].image_url"),
    ("remote image",
     json.dumps({"messages": [image_message(url="http://169.254.169.254/latest")]}).encode(), 400,
     "image_url_not_allowed", "messages[0].content[1].image_url"),
]


@pytest.mark.parametrize(("name", "raw", "status", "code", "param"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_4xx_with_the_openai_envelope(stack, name, raw, status, code, param):
    if raw is None:
        from router.images.decode import data_url
        from tests.conftest import image_bytes
        raw = json.dumps({"messages": [image_message(url=data_url(image_bytes(1, 1), "image/png"))]}).encode()
    with stack.client() as client:
        r = client.post("/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, (name, r.text)
    error = r.json()["error"]
    assert error["message"] and error["type"] and "Traceback" not in r.text
    assert (error["code"], error["param"]) == (code, param)


def test_prompt_longer_than_the_context_is_400_from_the_engine(stack):
    # Under the ingress's character limit, over the tiny tokenizer's 4096-token context; a
    # question the shop's knowledge base answers, so the model (not a fixed reply) is asked.
    long_text = "When do you ship orders? " * 1200
    for stream in (False, True):
        r = ask(stack, messages=[{"role": "user", "content": long_text}], stream=stream, max_tokens=16)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "context_length_exceeded"
        assert "context length" in r.json()["error"]["message"]


def test_a_seeded_request_prefilled_in_chunks_does_not_kill_the_engine(stack):
    # ~3.3k prompt tokens with the tiny tokenizer (2k of text + the shop prompt): more than one
    # 2048-token prefill chunk, inside the 4096-token context. With a seed, vLLM CPU 0.32 killed the engine here ("CPU Generator does not
    # use offset"); the CPU config does not pass seeds to the engine (engine.request_seed: false).
    text = "Is shipping free to Xinjiang if I order two hoodies? " * 60  # not a curated answer
    for _ in range(2):
        r = ask(stack, messages=[{"role": "user", "content": text}], max_tokens=4, seed=7,
                temperature=1.0)
        assert r.status_code == 200, r.text
        assert r.json()["usage"]["prompt_tokens"] > 2048
