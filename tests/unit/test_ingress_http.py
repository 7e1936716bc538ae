"""The ingress FastAPI app over HTTP (in-process ASGI), with fake replicas: status codes and the
OpenAI error envelope for every kind of bad input, and no 5xx for any of them."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from router.chat_service import ChatService
from router.ingress import build_api
from tests.conftest import image_message, model_for
from tests.fakes import FakeBehaviour, fake_streamers, recording_metrics

URL = "/v1/chat/completions"
JSON = {"Content-Type": "application/json"}


class FakeHandle:
    """Stands in for a DeploymentHandle in the readiness probe."""

    def __init__(self, alive: bool = True):
        self.alive = alive
        self.ping = self

    async def remote(self):
        if not self.alive:
            raise RuntimeError("replica gone")
        return "ok"


def client_for(config, behaviour=None, handle=None) -> TestClient:
    streamers, _ = fake_streamers(config, behaviour)
    metrics, _ = recording_metrics(config)
    api = build_api(ChatService(config, streamers), metrics, config, handle or FakeHandle())
    return TestClient(api, raise_server_exceptions=False)


@pytest.fixture
def client(local_config):
    return client_for(local_config)


def assert_envelope(response, status: int):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


def test_text_request(client, local_config):
    response = client.post(URL, json={"messages": [{"role": "user", "content": "能退货吗？"}]})
    assert response.status_code == 200
    assert response.headers["x-route"] == "text"
    assert response.json()["model"] == model_for(local_config, "text").name


def test_image_request(client, local_config):
    response = client.post(URL, json={"messages": [image_message()]})
    assert response.status_code == 200
    assert response.headers["x-route"] == "vision"
    assert response.json()["model"] == model_for(local_config, "vision").name


def test_stream_content_type_and_done(client):
    with client.stream("POST", URL, json={"messages": [{"role": "user", "content": "hi"}], "stream": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"


def _user(**fields) -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": "x"}], **fields}).encode()


# (body, status, error code, param): every refusal names its cause and, where there is one, the
# field as the client wrote it.
BAD_BODIES = [
    (b"{not json", 400, "invalid_request", None),
    (b"[]", 400, "invalid_request", None),
    (b"\xff\xff", 400, "invalid_request", None),
    (b"[" * 100_000 + b"]" * 100_000, 400, "invalid_request", None),
    (b"{}", 400, "invalid_request", "messages"),
    (json.dumps({"messages": []}).encode(), 400, "invalid_request", "messages"),
    (json.dumps({"messages": [{"role": "robot", "content": "x"}]}).encode(), 400,
     "invalid_request", "messages[0].role"),
    (json.dumps({"messages": [{"role": "user", "content": [{"type": "video", "video": 1}]}]}).encode(),
     400, "invalid_request", "messages[0].content[0]"),
    (_user(model="nope"), 404, "model_not_found", "model"),
    (_user(max_tokens=0), 400, "invalid_request", "max_tokens"),
    (_user(max_tokens=10**9), 400, "invalid_request", "max_tokens"),
    # Past CPython's 4300-digit int-string limit json.loads raises ValueError, not a decode error.
    (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": ' + b"9" * 5000 + b"}",
     400, "invalid_request", "max_tokens"),
    (_user(n=10**6), 400, "invalid_request", "n"),
    (_user(top_logprobs=10**6), 400, "invalid_request", "top_logprobs"),
    (b'{"messages": [{"role": "user", "content": "x"}], "temperature": -Infinity}', 400,
     "invalid_request", "temperature"),
    (json.dumps({"messages": [image_message(url="data:image/png;base64,%%%")]}).encode(), 400,
     "invalid_image", "messages[0].content[1].image_url"),
    (json.dumps({"messages": [image_message(url="http://127.0.0.1:6379/x.png")]}).encode(), 400,
     "image_url_not_allowed", "messages[0].content[1].image_url"),
    (b'{"messages": [{"role": "user", "content": "\\udc00\\ud800"}]}', 400, "invalid_request",
     "messages[0].content"),
]


@pytest.mark.parametrize(("raw", "status", "code", "param"), BAD_BODIES)
def test_bad_input_gets_the_openai_envelope(client, raw, status, code, param):
    error = assert_envelope(client.post(URL, content=raw, headers=JSON), status)
    assert (error["code"], error["param"]) == (code, param)


def test_wrong_content_type_is_415(client):
    assert_envelope(client.post(URL, content=b'{"messages": []}', headers={"Content-Type": "text/plain"}), 415)


def test_oversized_body_is_413_before_parsing(local_config):
    limits = local_config.limits.model_copy(update={"max_body_bytes": 1000})
    client = client_for(local_config.model_copy(update={"limits": limits}))
    assert_envelope(client.post(URL, content=b"x" * 1001, headers=JSON), 413)
    # Without a Content-Length header (chunked upload) the cap still holds.
    chunks = iter([b"x" * 600, b"x" * 600])
    assert_envelope(client.post(URL, content=chunks, headers=JSON), 413)


def test_engine_failure_is_500_without_internals(local_config):
    client = client_for(local_config, FakeBehaviour(fail_at_token=0))
    error = assert_envelope(client.post(URL, json={"messages": [{"role": "user", "content": "x"}]}), 500)
    assert "10.0.0.7" not in error["message"] and "/internal" not in error["message"]
    assert "chatcmpl-" in error["message"]  # the request id, to find the logged exception


def test_engine_input_error_before_streaming_is_400(local_config):
    client = client_for(local_config, FakeBehaviour(reject_input=True))
    response = client.post(URL, json={"messages": [{"role": "user", "content": "x"}], "stream": True})
    assert assert_envelope(response, 400)["code"] == "context_length_exceeded"


def test_unknown_route_and_method(client):
    assert assert_envelope(client.get("/v1/nothing"), 404)["code"] == "not_found"
    assert assert_envelope(client.get(URL), 405)["code"] == "method_not_allowed"


def test_models_health_ready(local_config, client):
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert {m["modality"] for m in models["data"]} == {"text", "vision"}
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").status_code == 200
    down = client_for(local_config, handle=FakeHandle(alive=False))
    assert down.get("/ready").status_code == 503
