"""Request parsing and limits: every bad input is a 4xx APIError naming the problem."""

from __future__ import annotations

import json

import pytest

from configs.schema import RequestLimits
from router.engine_params import chat_template_kwargs_for, sampling_for
from router.api.errors import APIError
from router.api.request_body import check_content_type
from router.api.validation import check_request, client_path, parse_chat_request
from tests.conftest import model_for

LIMITS = RequestLimits(max_messages=4, max_text_chars=100, max_completion_tokens=64,
                       max_stop_sequences=2, max_stop_chars=8, max_images=1)
USER = {"role": "user", "content": "hi"}


def body(**fields) -> bytes:
    payload = {"messages": [USER]}
    payload.update(fields)
    return json.dumps(payload).encode()


def api_error(fn, *args) -> APIError:
    with pytest.raises(APIError) as err:
        fn(*args)
    assert 400 <= err.value.status < 500
    assert err.value.body()["error"]["message"]
    return err.value


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"{bad", "not valid JSON"),
        (b"", "not valid JSON"),
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'"text"', "must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"messages": "hi"}', "messages"),
        (b'{"model": "auto"}', "messages"),
        (b'{"messages": [{"role": "function", "content": "x"}]}', "role"),
        (b'{"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}', "unsupported content part type"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}', "temperature"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "top_p": Infinity}', "top_p"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "logprobs": true}', "logprobs: unsupported field"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "chat_template": "{{x}}"}', "chat_template: unsupported field"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "mm_processor_kwargs": {}}', "mm_processor_kwargs"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "prompt_embeds": "AAAA"}', "prompt_embeds"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"}', "max_tokens"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": ' + b"9" * 4301 + b"}",
         "max_tokens: Input should be a finite number"),
        (b'{"messages": [{"role": "user", "content": "hi"}], "seed": -' + b"9" * 9000 + b"}", "seed"),
    ],
)
def test_unparseable_bodies_are_400(raw, fragment):
    error = api_error(parse_chat_request, raw)
    assert error.status == 400
    assert fragment in error.message


def test_content_type_must_be_json():
    assert api_error(check_content_type, "text/plain").status == 415
    assert api_error(check_content_type, None).status == 415
    check_content_type("application/json; charset=utf-8")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [USER] * 5}, "messages"),
        ({"messages": [{"role": "user", "content": "x" * 101}]}, "messages"),
        ({"messages": [{"role": "user", "content": ""}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": []}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
        ({"messages": [{"role": "system", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}]}]},
         "messages[0].content"),
        ({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}}] * 2}]},
         "messages"),
        ({"n": 2}, "n"),
        ({"n": 1_000_000}, "n"),
        ({"stop": ["a", "b", "c"]}, "stop"),
        ({"stop": ["x" * 9]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": ["a"] * 5000}, "stop"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"seed": 2**70}, "seed"),
        ({"chat_template_kwargs": {"tools": []}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"enable_thinking": "yes"}}, "chat_template_kwargs"),
    ],
)
def test_limits(local_config, fields, param):
    request = parse_chat_request(body(**fields))
    error = api_error(check_request, request, model_for(local_config, "text"), LIMITS)
    assert error.status == 400
    assert error.param == param


def test_valid_request_passes_limits(local_config):
    request = parse_chat_request(body(stop=["\n"], temperature=0, chat_template_kwargs={"enable_thinking": True}))
    check_request(request, model_for(local_config, "text"), LIMITS)


def test_nul_bytes_and_combining_marks_are_accepted(local_config):
    request = parse_chat_request(body(messages=[{"role": "user", "content": "a\u0000b" + "\u0301" * 50}]))
    check_request(request, model_for(local_config, "text"), LIMITS)


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"max_tokens": 0}, "at least 1"),
        ({"max_tokens": -5}, "at least 1"),
        ({"max_completion_tokens": 65}, "limit of 64"),
        ({"max_tokens": 10**12}, "limit of 64"),
    ],
)
def test_max_tokens_bounds(local_config, fields, fragment):
    model = model_for(local_config, "text")
    error = api_error(check_request, parse_chat_request(body(**fields)), model, LIMITS)
    assert fragment in error.message
    assert error.param == next(iter(fields))


def test_max_tokens_must_leave_room_for_the_prompt(local_config):
    model = model_for(local_config, "text")
    limits = RequestLimits(max_completion_tokens=10**6)
    request = parse_chat_request(body(max_tokens=model.engine.max_model_len))
    error = api_error(check_request, request, model, limits)
    assert error.code == "context_length_exceeded"


def test_sampling_defaults_come_from_the_model_config(local_config):
    model = model_for(local_config, "text")
    sampling = sampling_for(parse_chat_request(body()), model.sampling, LIMITS)
    assert sampling.temperature == model.sampling.temperature
    assert sampling.top_p == model.sampling.top_p
    assert sampling.max_tokens == min(model.sampling.max_tokens, LIMITS.max_completion_tokens)
    explicit = sampling_for(parse_chat_request(body(max_tokens=7, temperature=0.0, max_completion_tokens=9)), model.sampling, LIMITS)
    assert (explicit.max_tokens, explicit.temperature) == (9, 0.0)  # max_completion_tokens wins


def test_thinking_is_off_unless_requested(local_config):
    model = model_for(local_config, "text")
    default = model.sampling.enable_thinking
    assert chat_template_kwargs_for(parse_chat_request(body()), default) == {"enable_thinking": False}
    on = parse_chat_request(body(chat_template_kwargs={"enable_thinking": True}))
    assert chat_template_kwargs_for(on, default) == {"enable_thinking": True}


# One case per shape of pydantic error location: a plain field, a missing field, a wrong type
# inside a discriminated union member, a missing field of a union member, an unknown tag, a field
# under a tag of the same name, an extra field inside a part, and a list index.
@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"messages": [{"role": "user", "content": "x"}], "top_p": "high"}', "top_p"),
        (b'{"model": "auto"}', "messages"),
        (b'{"messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}', "messages[0].content[0].text"),
        (b'{"messages": [{"role": "user", "content": [{"type": "text"}]}]}', "messages[0].content[0].text"),
        (b'{"messages": [{"role": "user", "content": [{"type": "audio"}]}]}', "messages[0].content[0]"),
        (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": 5}}]}]}',
         "messages[0].content[0].image_url.url"),
        (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x", "y": 1}}]}]}',
         "messages[0].content[0].image_url.y"),
        (b'{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": {"a": 1}}]}',
         "messages[1].content"),
        (b'{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": ""}}]}]}',
         "messages[0].content[0].image_url.url"),
    ],
)
def test_error_names_the_field_as_the_client_wrote_it(raw, param):
    error = api_error(parse_chat_request, raw)
    assert error.param == param
    assert param in error.message


def test_client_path_skips_segments_the_client_never_wrote():
    payload = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}
    # Whatever pydantic calls its union member and tag segments, only the client's keys remain.
    loc = ("messages", 0, "content", "list[tagged-union[A,B]]", 0, "image_url", "image_url", "url")
    assert client_path(loc, payload, missing=True) == "messages[0].content[0].image_url.url"
    assert client_path(loc, payload) == "messages[0].content[0].image_url"
    assert client_path(("messages", 0, "content", "function-wrap[x]"), payload) == "messages[0].content"
    assert client_path((), payload) == "body"
