"""ChatService with fake replica streams: response shapes, SSE framing, errors, timeouts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from configs.schema import RequestLimits
from router.chat_service import ChatService
from router.api.errors import APIError, api_error_for
from router.observability.metrics import IngressMetrics
from tests.conftest import image_message, model_for
from tests.fakes import BACKEND_CALLER, FakeBehaviour, fake_streamers, recording_metrics


@dataclass
class ServiceUnderTest:
    service: ChatService
    engines: dict
    metrics: IngressMetrics
    registry: CollectorRegistry

    async def prepare(self, payload: bytes, request_id: str):
        return await self.service.prepare(payload, request_id, self.metrics.start(),
                                          BACKEND_CALLER)

    async def stream(self, payload: bytes, request_id: str) -> list[str]:
        chat = await self.prepare(payload, request_id)
        return await collect((await self.service.open_stream(chat)).events())

    def sample(self, name: str, **labels) -> float | None:
        return self.registry.get_sample_value(name, labels)


def make_service(config, behaviour=None, limits: RequestLimits | None = None) -> ServiceUnderTest:
    if limits is not None:
        config = config.model_copy(update={"limits": limits})
    streamers, engines = fake_streamers(config, behaviour)
    metrics, registry = recording_metrics(config)
    return ServiceUnderTest(ChatService(config, streamers), engines, metrics, registry)


def body(**fields) -> bytes:
    payload = {"messages": [{"role": "user", "content": "When will it ship?"}]}
    payload.update(fields)
    return json.dumps(payload).encode()


def parse_sse(events: list[str]) -> list:
    out = []
    for event in events:
        assert event.startswith("data: ") and event.endswith("\n\n"), event
        data = event[len("data: "):-2]
        out.append(data if data == "[DONE]" else json.loads(data))
    return out


async def collect(iterator) -> list[str]:
    return [event async for event in iterator]


def test_non_streaming_response(local_config):
    sut = make_service(local_config)

    async def run():
        chat = await sut.prepare(body(), "chatcmpl-1")
        return await sut.service.complete(chat)

    response = asyncio.run(run())
    assert response.model == model_for(local_config, "text").name
    assert response.choices[0].message.content == "Your order ships today."
    assert response.choices[0].finish_reason == "stop"
    assert response.usage.completion_tokens == 4
    assert response.usage.total_tokens == response.usage.prompt_tokens + 4
    sent = sut.engines["text"].requests[0]
    assert sent.chat_template_kwargs == {"enable_thinking": False}
    assert sent.sampling.temperature == model_for(local_config, "text").sampling.temperature


def test_image_request_goes_to_the_vision_engine(local_config):
    sut = make_service(local_config)

    async def run():
        chat = await sut.prepare(json.dumps({"messages": [image_message()]}).encode(), "id")
        return await sut.service.complete(chat)

    response = asyncio.run(run())
    assert response.model == model_for(local_config, "vision").name
    assert len(sut.engines["vision"].requests) == 1 and not sut.engines["text"].requests


def test_streaming_events_follow_openai_framing(local_config):
    sut = make_service(local_config, FakeBehaviour(reply=("a", "b", "c")))

    async def run():
        chat = await sut.prepare(body(stream=True, stream_options={"include_usage": True}), "id")
        return await collect((await sut.service.open_stream(chat)).events())

    events = parse_sse(asyncio.run(run()))
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "abc"
    finals = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert [c["choices"][0]["finish_reason"] for c in finals] == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "id" for c in chunks)


def test_unicode_line_separators_in_output_stay_inside_one_sse_line(local_config):
    # Model output may hold U+2028/U+2029/U+0085; str.splitlines() based readers (requests,
    # httpx) would cut an event there and fail to parse it.
    reply = ("a\u2028b", "c\u2029d", "e\x85f", "不\x1c")
    sut = make_service(local_config, FakeBehaviour(reply=reply))

    async def run():
        chat = await sut.prepare(body(stream=True), "id")
        return await collect((await sut.service.open_stream(chat)).events())

    stream = "".join(asyncio.run(run()))
    lines = [line for line in stream.splitlines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    events = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "".join(reply)


def test_length_finish_reason(local_config):
    sut = make_service(local_config)

    async def run():
        return await sut.service.complete(await sut.prepare(body(max_tokens=2), "id"))

    response = asyncio.run(run())
    assert response.choices[0].finish_reason == "length"
    assert response.usage.completion_tokens == 2


def test_mid_stream_failure_is_an_in_band_error_then_done(local_config):
    sut = make_service(local_config, FakeBehaviour(fail_at_token=2))

    async def run():
        return await sut.stream(body(stream=True), "chatcmpl-x")

    events = parse_sse(asyncio.run(run()))
    assert events[-1] == "[DONE]"
    error = events[-2]["error"]
    assert error["code"] == "internal_error" and "chatcmpl-x" in error["message"]
    assert "10.0.0.7" not in json.dumps(events) and "/internal/path" not in json.dumps(events)


def test_engine_input_error_before_first_token_raises_for_a_4xx(local_config):
    sut = make_service(local_config, FakeBehaviour(reject_input=True))

    async def run():
        chat = await sut.prepare(body(stream=True), "id")
        await sut.service.open_stream(chat)

    with pytest.raises(Exception) as err:
        asyncio.run(run())
    mapped = api_error_for(err.value, "id")
    assert mapped.status == 400 and mapped.code == "context_length_exceeded"


def test_timeout_cancels_the_engine_stream(local_config):
    limits = local_config.limits.model_copy(update={"request_timeout_s": 0.2})
    sut = make_service(local_config, FakeBehaviour(token_delay_s=0.15), limits)

    async def run():
        chat = await sut.prepare(body(), "slow")
        await sut.service.complete(chat)

    with pytest.raises(TimeoutError) as err:
        asyncio.run(run())
    assert api_error_for(err.value, "slow").status == 504
    assert sut.engines["text"].cancelled == ["slow"]


def test_streaming_timeout_is_in_band(local_config):
    limits = local_config.limits.model_copy(update={"request_timeout_s": 0.3})
    sut = make_service(local_config, FakeBehaviour(token_delay_s=0.12), limits)

    async def run():
        return await sut.stream(body(stream=True), "slow")

    events = parse_sse(asyncio.run(run()))
    assert events[-1] == "[DONE]" and events[-2]["error"]["code"] == "request_timeout"
    assert sut.engines["text"].cancelled == ["slow"]


def test_client_disconnect_closes_the_engine_stream(local_config):
    sut = make_service(local_config, FakeBehaviour(token_delay_s=0.01))

    async def run():
        chat = await sut.prepare(body(stream=True), "gone")
        events = (await sut.service.open_stream(chat)).events()
        await anext(events)
        await anext(events)
        await events.aclose()  # what Starlette does when the client goes away

    asyncio.run(run())
    assert sut.engines["text"].cancelled == ["gone"]


def test_models_list(local_config):
    sut = make_service(local_config)
    cards = sut.service.model_list().model_dump()["data"]
    assert {(c["id"], c["modality"]) for c in cards} == {
        (m.name, m.modality) for m in local_config.models
    }


def test_validation_runs_before_any_engine_call(local_config):
    sut = make_service(local_config)
    with pytest.raises(APIError):
        asyncio.run(sut.prepare(body(max_tokens=0), "id"))
    assert not sut.engines["text"].requests
