"""The replica client at the Serve boundary (`router.replica_client.ReplicaClient`), over HTTP with fake
deployment handles: a full queue is a fast 429 with Retry-After, no replica within the wait bound
is a 503 with Retry-After, both in the OpenAI envelope, counted by model and reason, and a vision
pool in either state leaves text requests alone. A lost replica costs only what it had already
streamed: a call lost before any output is sent once more, a second loss is a 503 whose
Retry-After is the replacement time."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi.testclient import TestClient

from configs.schema import ReplicaWait
from model_server.engine_protocol import EngineRequest, SamplingOptions
from router.chat_service import ChatService
from router.api.errors import APIError
from router.replica_client import ReplicaClient
from router.ingress import build_api
from tests.conftest import image_message, model_for
from tests.fakes import FakeChatEngine, FakeDeploymentHandle, recording_metrics

URL = "/v1/chat/completions"
TEXT = {"messages": [{"role": "user", "content": "When will my order ship?"}]}
IMAGE = {"messages": [image_message()]}
WAIT = ReplicaWait(timeout_s=0.3, retry_after_s=20, replacement_s=40)


class Ingress:
    """The ingress app over fake handles, one per model, each in a chosen state."""

    def __init__(self, config, text_state="serving", vision_state="serving",
                 running_replicas=None, wait=WAIT, **handle_kwargs):
        """`running_replicas`: what Serve would report for every model (None: not asked)."""
        config = config.model_copy(update={"models": tuple(
            m.model_copy(update={"replica_wait": wait}) for m in config.models)})
        self.config = config
        self.handles = {
            m.modality: FakeDeploymentHandle(
                FakeChatEngine(m, "/fake"),
                text_state if m.modality == "text" else vision_state, **handle_kwargs)
            for m in config.models
        }
        self.metrics, self.registry = recording_metrics(config)
        self.status_calls = 0

        async def running() -> int:
            self.status_calls += 1
            if isinstance(running_replicas, Exception):
                raise running_replicas
            return running_replicas

        streamers = {m.modality: ReplicaClient(
            self.handles[m.modality], m, self.metrics.replica_retried,
            None if running_replicas is None else running).stream for m in config.models}
        api = build_api(ChatService(config, streamers), self.metrics, config, None)
        self.client = TestClient(api, raise_server_exceptions=False)

    def model(self, modality: str) -> str:
        return model_for(self.config, modality).name

    def counted(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


def envelope(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("stream", [False, True])
def test_full_queue_is_a_429_with_retry_after_and_the_openai_envelope(local_config, stream):
    # A replica wait far longer than any slow machine's refusal: waiting it out would show.
    long_wait = WAIT.model_copy(update={"timeout_s": 60.0})
    ingress = Ingress(local_config, vision_state="queue_full", wait=long_wait)
    started = time.monotonic()
    response = ingress.client.post(URL, json={**IMAGE, "stream": stream})
    elapsed = time.monotonic() - started
    error = envelope(response, 429)
    assert error["code"] == "queue_full" and error["type"] == "rate_limit_error"
    assert ingress.model("vision") in error["message"]
    assert response.headers["retry-after"] == "3"  # backpressure_config's 2.5 s, rounded up
    assert elapsed < long_wait.timeout_s  # refused at once, not after the replica wait
    vision = ingress.model("vision")
    assert ingress.counted("cs_requests_rejected_total", model=vision, route="vision",
                           reason="queue_full") == 1
    assert ingress.counted("cs_requests_total", model=vision, route="vision", status="429") == 1


def test_backpressure_status_and_missing_retry_after_follow_the_serve_config(local_config):
    ingress = Ingress(local_config, text_state="queue_full", status_code=503, retry_after_s=None)
    response = ingress.client.post(URL, json=TEXT)
    error = envelope(response, 503)
    assert error["code"] == "queue_full" and error["type"] == "service_unavailable"
    assert response.headers["retry-after"] == "1"  # never a 429/503 without Retry-After


@pytest.mark.parametrize("stream", [False, True])
def test_no_replica_within_the_wait_is_a_503_and_the_queued_call_is_withdrawn(local_config,
                                                                              stream):
    ingress = Ingress(local_config, vision_state="no_replica")
    started = time.monotonic()
    response = ingress.client.post(URL, json={**IMAGE, "stream": stream})
    elapsed = time.monotonic() - started
    error = envelope(response, 503)
    assert error["code"] == "no_replica_available"
    assert response.headers["retry-after"] == str(WAIT.retry_after_s)
    assert WAIT.timeout_s <= elapsed < local_config.limits.request_timeout_s
    assert [call.cancelled for call in ingress.handles["vision"].calls] == [True]
    assert ingress.counted("cs_requests_failed_total", model=ingress.model("vision"),
                           route="vision", reason="no_replica_available") == 1


@pytest.mark.parametrize("vision_state", ["queue_full", "no_replica"])
def test_text_is_served_while_the_vision_pool_refuses(local_config, vision_state):
    ingress = Ingress(local_config, vision_state=vision_state)
    assert ingress.client.post(URL, json=IMAGE).status_code in (429, 503)
    response = ingress.client.post(URL, json=TEXT)
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"] == "Your order ships today."
    assert ingress.counted("cs_requests_total", model=ingress.model("text"), route="text",
                           status="200") == 1


def test_accepted_calls_stream_the_engine_and_finished_calls_are_not_cancelled(local_config):
    ingress = Ingress(local_config)
    response = ingress.client.post(URL, json=TEXT)
    assert response.status_code == 200
    assert [call.cancelled for call in ingress.handles["text"].calls] == [False]


def test_a_stream_closed_early_cancels_the_replica_call(local_config):
    model = model_for(local_config, "text")
    handle = FakeDeploymentHandle(FakeChatEngine(model, "/fake"))
    stream = ReplicaClient(handle, model).stream
    request = EngineRequest("r1", [{"role": "user", "content": "hi"}],
                            SamplingOptions(16, 0.0, 1.0))

    async def first_then_close():
        chunks = stream(request)
        first = await anext(chunks)
        await chunks.aclose()
        return first

    assert asyncio.run(first_then_close()).text == "Your "
    assert [call.cancelled for call in handle.calls] == [True]


def test_replica_wait_must_end_before_the_request_deadline(local_config):
    text = model_for(local_config, "text")
    too_long = text.model_copy(update={"replica_wait": ReplicaWait(
        timeout_s=local_config.limits.request_timeout_s, retry_after_s=5)})
    with pytest.raises(ValueError, match="replica_wait.timeout_s"):
        type(local_config).model_validate({
            **local_config.model_dump(),
            "models": [too_long.model_dump(), model_for(local_config, "vision").model_dump()],
        })


def test_overloaded_error_is_a_client_error_with_retry_after():
    error = APIError.overloaded("m", 429, 7)
    assert (error.status, error.headers) == (429, {"Retry-After": "7"})


def sse_events(response) -> list[str]:
    return [line[len("data: "):] for line in response.text.splitlines()
            if line.startswith("data: ")]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("loss", ["replica_died", "engine_dead"])
def test_a_call_whose_replica_is_lost_before_any_output_is_sent_once_more(local_config, loss,
                                                                          stream):
    ingress = Ingress(local_config, losses=(loss,))
    response = ingress.client.post(URL, json={**TEXT, "stream": stream})
    assert response.status_code == 200, response.text
    text = response.text if stream else response.json()["choices"][0]["message"]["content"]
    assert "ships" in text and "error" not in text
    calls = ingress.handles["text"].calls
    assert [call.cancelled for call in calls] == [True, False]
    assert calls[0].request_id == calls[1].request_id  # the same request, sent again
    text_model = ingress.model("text")
    assert ingress.counted("cs_replica_retries_total", model=text_model, reason=loss) == 1
    assert ingress.counted("cs_requests_total", model=text_model, route="text",
                           status="200") == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_second_loss_is_a_503_with_the_replacement_time_as_retry_after(local_config, stream):
    ingress = Ingress(local_config, losses=("replica_died", "engine_dead"))
    response = ingress.client.post(URL, json={**TEXT, "stream": stream})
    error = envelope(response, 503)
    assert error["code"] == "model_unavailable"
    assert response.headers["x-request-id"] in error["message"]
    assert WAIT.replacement_s - 2 <= int(response.headers["retry-after"]) <= WAIT.replacement_s
    assert len(ingress.handles["text"].calls) == 2  # retried once, not more
    assert ingress.counted("cs_requests_failed_total", model=ingress.model("text"),
                           route="text", reason="model_unavailable") == 1


def test_a_stream_whose_replica_is_lost_after_output_ends_in_band_and_is_not_repeated(
        local_config):
    ingress = Ingress(local_config, losses=("mid_stream",))
    response = ingress.client.post(URL, json={**TEXT, "stream": True})
    assert response.status_code == 200  # the status went out with the first chunk
    events = sse_events(response)
    assert events[-1] == "[DONE]"
    assert '"content": "Your "' in events[1].replace('":"', '": "')
    assert '"model_unavailable"' in events[-2]
    assert not any("ships" in event for event in events)  # nothing sent twice or after
    assert len(ingress.handles["text"].calls) == 1
    assert ingress.counted("cs_requests_failed_total", model=ingress.model("text"),
                           route="text", reason="model_unavailable") == 1


def test_while_a_replacement_starts_no_replica_is_a_503_until_it_is_expected(local_config):
    ingress = Ingress(local_config, losses=("replica_died", "replica_died"))
    assert ingress.client.post(URL, json=TEXT).status_code == 503
    ingress.handles["text"].state = "no_replica"
    response = ingress.client.post(URL, json=TEXT)
    error = envelope(response, 503)
    assert error["code"] == "no_replica_available"
    # Not the cold-start 20 s: the replacement is due in about 40 s.
    assert WAIT.replacement_s - 2 <= int(response.headers["retry-after"]) <= WAIT.replacement_s


@pytest.mark.parametrize("running, retry_after", [
    (0, WAIT.replacement_s),  # ceil(40 - 0.3): the rest of a replacement after the wait
    (2, WAIT.retry_after_s),  # replicas run and are busy: the configured Retry-After
    (RuntimeError("controller unreachable"), WAIT.retry_after_s),
])
def test_no_replica_retry_after_follows_what_serve_reports(local_config, running, retry_after):
    ingress = Ingress(local_config, text_state="no_replica", running_replicas=running)
    served = Ingress(local_config, running_replicas=0)
    response = ingress.client.post(URL, json=TEXT)
    assert envelope(response, 503)["code"] == "no_replica_available"
    assert response.headers["retry-after"] == str(retry_after)
    assert ingress.status_calls == 1
    # Serve is asked on the way to a 503 only, never for a request that is served.
    assert served.client.post(URL, json=TEXT).status_code == 200
    assert served.status_calls == 0
