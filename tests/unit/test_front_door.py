"""The rest of the front door: request ids, slow uploads, large bodies parsed off the event loop,
and what the API documents (in-process app over fake replicas)."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from configs.schema import APP_NAME, RequestLimits, app_config_from_serve_config, load_serve_config
from router.chat_service import ChatService
from router.api.errors import APIError
from router.ingress import build_api
from router.api.parse_offload import BodyParser
from router.api.request_body import read_body
from starlette.requests import Request
from tests.conftest import PRODUCTION_CONFIG
from tests.fakes import fake_streamers, recording_metrics
from tests.unit.test_ingress_http import FakeHandle

URL = "/v1/chat/completions"
ASK = {"messages": [{"role": "user", "content": "Is shipping free?"}]}


def client_for(config) -> TestClient:
    streamers, _ = fake_streamers(config)
    metrics, _ = recording_metrics(config)
    return TestClient(build_api(ChatService(config, streamers), metrics, config, FakeHandle()),
                      raise_server_exceptions=False)


@pytest.fixture
def client(local_config) -> TestClient:
    return client_for(local_config)


def test_every_response_carries_its_request_id_and_a_completion_is_named_by_it(client):
    ok = client.post(URL, json=ASK)
    assert ok.status_code == 200
    assert ok.headers["x-request-id"] == ok.json()["id"]
    bad = client.post(URL, json={"messages": "nope"})
    assert bad.status_code == 400 and bad.headers["x-request-id"]
    with client.stream("POST", URL, json={**ASK, "stream": True}) as streamed:
        request_id = streamed.headers["x-request-id"]
        first = next(line for line in streamed.iter_lines() if line.startswith("data: {"))
    assert json.loads(first.removeprefix("data: "))["id"] == request_id


def test_a_clients_own_request_id_is_used_when_it_is_safe(client):
    mine = client.post(URL, json=ASK, headers={"X-Request-ID": "shop-42.order-7"})
    assert mine.json()["id"] == "shop-42.order-7"
    unsafe = client.post(URL, json=ASK, headers={"X-Request-ID": "a b<script>"})
    assert unsafe.status_code == 400
    assert unsafe.json()["error"]["code"] == "invalid_request_id"


def receiving(parts: list[bytes | None], pause_s: float):
    """An ASGI receive that sends `parts`, pausing `pause_s` before each; None stalls forever."""
    queue = list(parts)

    async def receive():
        await asyncio.sleep(pause_s)
        if not queue:
            return {"type": "http.request", "body": b"", "more_body": False}
        part = queue.pop(0)
        if part is None:
            await asyncio.sleep(3600)
        return {"type": "http.request", "body": part, "more_body": True}

    return receive


def read(parts, pause_s, **limits) -> bytes:
    scope = {"type": "http", "method": "POST", "headers": [], "path": URL}
    request = Request(scope, receiving(parts, pause_s))
    return asyncio.run(read_body(request, RequestLimits(**limits)))


def test_a_stalled_upload_is_408_after_the_idle_timeout():
    with pytest.raises(APIError) as caught:
        read([b"{", None], 0, body_idle_timeout_s=0.2)
    assert (caught.value.status, caught.value.code) == (408, "body_timeout")


def test_a_trickling_upload_is_408_after_the_body_timeout():
    # Each piece arrives within the idle bound; the whole body does not arrive in time.
    with pytest.raises(APIError) as caught:
        read([b"x"] * 50, 0.05, body_idle_timeout_s=1, body_timeout_s=0.5)
    assert caught.value.status == 408


def test_a_body_that_arrives_in_time_is_read_whole():
    assert read([b"ab", b"cd"], 0.01, body_idle_timeout_s=1) == b"abcd"


def test_large_bodies_parse_in_the_worker_to_the_same_result_and_errors():
    big_text = "x" * 400_000
    body = json.dumps({"messages": [{"role": "user", "content": big_text}]}).encode()

    async def run():
        parser = BodyParser(RequestLimits(parse_in_worker_bytes=100_000))
        try:
            request = await parser.parse(body)
            assert request.messages[0].content == big_text
            with pytest.raises(APIError) as caught:
                await parser.parse(b'{"messages": [{"role": "robot", "content": "' +
                                   b"y" * 200_000 + b'"}]}')
            assert caught.value.status == 400 and caught.value.param == "messages[0].role"
            many = json.dumps({"messages": [{"role": "user", "content": "a"}] * 20_000})
            with pytest.raises(APIError) as caught:
                await parser.parse(many.encode())
            assert caught.value.param == "messages" and "Too many" in caught.value.message
        finally:
            parser.close()

    asyncio.run(run())


def test_api_docs_are_served_locally_with_the_chat_schema_and_off_in_production(local_config):
    schema = client_for(local_config).get("/openapi.json").json()
    operation = schema["paths"]["/v1/chat/completions"]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/ChatCompletionRequest")
    assert "ChatMessage" in schema["components"]["schemas"]
    request = schema["components"]["schemas"]["ChatCompletionRequest"]["properties"]
    for field in ("tools", "tool_choice", "parallel_tool_calls", "response_format",
                  "enable_thinking", "return_reasoning"):
        assert field in request, field
    tools = [m for m in request["tools"]["anyOf"] if m.get("type") == "array"]
    assert tools[0]["maxItems"] == local_config.limits.max_tools
    assert "tool" in schema["components"]["schemas"]["ChatMessage"]["properties"]["role"]["enum"]
    assert schema["security"] == [{"apiKey": []}]
    assert "/health" not in schema["paths"]
    production = app_config_from_serve_config(load_serve_config(PRODUCTION_CONFIG), APP_NAME)
    assert not production.api_docs
    production_like = local_config.model_copy(update={"api_docs": False})
    off = client_for(production_like)
    assert off.get("/openapi.json").status_code == 404
    assert off.get("/docs").status_code == 404
    assert off.get("/docs/static/swagger-ui-bundle.js").status_code == 404


def test_the_docs_page_loads_swagger_from_this_server_not_a_cdn(local_config):
    client = client_for(local_config)
    page = client.get("/docs").text
    assert "/docs/static/swagger-ui-bundle.js" in page and "/docs/static/swagger-ui.css" in page
    assert "cdn." not in page and "https://" not in page  # a blank page on offline machines
    bundle = client.get("/docs/static/swagger-ui-bundle.js")
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
