"""Ingress metrics: names and label sets, bounded label values, and what each kind of request
records. The ingress app runs in-process over HTTP with fake replicas; metrics are recorded into
a private prometheus_client registry through the same `IngressMetrics` the Serve replica uses."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
from fastapi.testclient import TestClient
from starlette.requests import ClientDisconnect

from router.chat_service import ChatService
from router.ingress import build_api
from router.routes import ChatStreamResponse
from router.api.errors import ErrorCode
from router.observability.metrics import INGRESS_METRICS, NO_MODEL, RAY_EXPORT_PREFIX, REASONS
from tests.conftest import image_message, model_for
from tests.fakes import BACKEND_CALLER, FakeBehaviour, fake_streamers, recording_metrics
from tests.unit.test_ingress_http import BAD_BODIES, FakeHandle

URL = "/v1/chat/completions"
# key_id is bounded by the operator's keys file (+ `anonymous`, `none`); limit by LIMIT_KINDS;
# outcome by `ok` + ErrorCode.
BOUNDED_LABELS = {"model", "route", "status", "reason", "stream", "shop", "answer", "handoff_reason",
                  "verdict", "guard_reason", "failure",
                  "key_id", "limit", "outcome", "result", "shape", "finish"}
SERVE_RESERVED = {"deployment", "replica", "application"}


class Stack:
    """The ingress app over fake replicas, plus the registry its metrics land in."""

    def __init__(self, config, behaviour=None):
        self.config = config
        streamers, self.engines = fake_streamers(config, behaviour)
        self.metrics, self.registry = recording_metrics(config)
        self.service = ChatService(config, streamers)
        self.client = TestClient(
            build_api(self.service, self.metrics, config, FakeHandle()),
            raise_server_exceptions=False,
        )

    def value(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def requests(self, **labels) -> float:
        return sum(
            s.value
            for metric in self.registry.collect()
            for s in metric.samples
            if s.name == "cs_requests_total" and labels.items() <= s.labels.items()
        )

    def label_values(self) -> dict[str, set[str]]:
        seen: dict[str, set[str]] = {}
        for metric in self.registry.collect():
            for sample in metric.samples:
                for key, value in sample.labels.items():
                    if key != "le":
                        seen.setdefault(key, set()).add(value)
        return seen


@pytest.fixture
def stack(local_config):
    return Stack(local_config)


def text_body(**fields) -> dict:
    return {"messages": [{"role": "user", "content": "Where is my parcel?"}], **fields}


# --- names and label sets ------------------------------------------------------------------------

def test_names_follow_prometheus_conventions():
    names = [spec.name for spec in INGRESS_METRICS]
    assert len(set(names)) == len(names)
    for spec in INGRESS_METRICS:
        assert re.fullmatch(r"cs_[a-z0-9_]+", spec.name), spec.name
        assert spec.description
        if spec.kind == "counter":
            # The exporters add `_total`; declaring it too would give `_total_total`.
            assert not spec.name.endswith("_total")
            assert spec.exported_name == f"{RAY_EXPORT_PREFIX}{spec.name}_total"
        if spec.kind == "histogram":
            assert spec.name.endswith("_seconds"), "latency histograms are in base units"
            assert list(spec.buckets) == sorted(set(spec.buckets)) and spec.buckets[0] > 0
        else:
            assert not spec.buckets


def test_label_sets_are_bounded_and_do_not_clash_with_serve_tags():
    for spec in INGRESS_METRICS:
        assert set(spec.labels) <= BOUNDED_LABELS, spec.name
        assert not set(spec.labels) & SERVE_RESERVED, spec.name


def test_latency_buckets_cover_gpu_and_cpu():
    by_name = {spec.name: spec for spec in INGRESS_METRICS}
    ttft = by_name["cs_time_to_first_token_seconds"].buckets
    itl = by_name["cs_inter_token_latency_seconds"].buckets
    assert ttft[0] <= 0.05 and ttft[-1] >= 60  # GPU TTFT tens of ms; CPU tens of seconds
    assert itl[0] <= 0.01 and itl[-1] >= 2
    # The SLO thresholds of configs/prometheus/alerts.yml must be bucket boundaries, or the
    # p95 the alert compares is interpolated across the threshold.
    assert 2.0 in ttft and 10.0 in ttft


def test_reason_labels_are_exactly_the_error_code_table():
    assert REASONS == {code.value for code in ErrorCode}
    assert "client_disconnect" in REASONS and "not_found" in REASONS


# --- what requests record ------------------------------------------------------------------------

def test_non_streaming_text_request(stack, local_config):
    model = model_for(local_config, "text").name
    response = stack.client.post(URL, json=text_body())
    assert response.status_code == 200
    usage = response.json()["usage"]
    labels = {"model": model, "route": "text"}
    assert stack.value("cs_requests_total", status="200", **labels) == 1
    assert stack.value("cs_prompt_tokens_total", **labels) == usage["prompt_tokens"]
    assert stack.value("cs_completion_tokens_total", **labels) == usage["completion_tokens"] == 4
    assert stack.value("cs_e2e_latency_seconds_count", stream="false", **labels) == 1
    # No first token is visible to a non-streaming client.
    assert stack.value("cs_time_to_first_token_seconds_count", **labels) == 0
    assert stack.value("cs_requests_in_flight", **labels) == 0


def test_streamed_request_records_ttft_and_each_gap(local_config):
    # Tokens arrive 50 ms apart, so each is its own chunk: the ingress merges only tokens that
    # wait together, and a 10 ms gap could be bridged by a stalled test thread on a busy machine.
    stack = Stack(local_config, FakeBehaviour(token_delay_s=0.05))
    model = model_for(local_config, "text").name
    with stack.client.stream("POST", URL, json=text_body(stream=True)) as response:
        assert response.status_code == 200
        list(response.iter_lines())
    labels = {"model": model, "route": "text"}
    assert stack.value("cs_time_to_first_token_seconds_count", **labels) == 1
    assert stack.value("cs_inter_token_latency_seconds_count", **labels) == 3  # 4 chunks
    assert stack.value("cs_e2e_latency_seconds_count", stream="true", **labels) == 1
    assert stack.value("cs_completion_tokens_total", **labels) == 4
    assert stack.value("cs_requests_total", status="200", **labels) == 1
    assert stack.value("cs_requests_in_flight", **labels) == 0


def test_tokens_ready_together_travel_as_one_event(local_config):
    stack = Stack(local_config)  # the fake engine's 4 tokens are all ready at once
    model = model_for(local_config, "text").name
    with stack.client.stream("POST", URL, json=text_body(stream=True)) as response:
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: {")]
    contents = [e["choices"][0]["delta"].get("content") for e in events if e["choices"]]
    assert [c for c in contents if c] == ["Your order ships today."]
    labels = {"model": model, "route": "text"}
    assert stack.value("cs_time_to_first_token_seconds_count", **labels) == 1
    assert stack.value("cs_inter_token_latency_seconds_count", **labels) == 0
    assert stack.value("cs_completion_tokens_total", **labels) == 4


def test_a_chunk_of_several_tokens_is_one_gap_observation_per_token_time(local_config):
    metrics, registry = recording_metrics(local_config)
    model = model_for(local_config, "text").name
    request = metrics.start()
    request.routed(model, "text", stream=True)
    request.content_sent(1)
    time.sleep(0.06)
    request.content_sent(3)  # three tokens in 60 ms: 20 ms per token
    labels = {"model": model, "route": "text"}
    assert registry.get_sample_value("cs_inter_token_latency_seconds_count", labels) == 1
    per_token = registry.get_sample_value("cs_inter_token_latency_seconds_sum", labels)
    assert 0.019 <= per_token < 0.06


def test_vision_request_counts_images_and_preprocessing(stack, local_config):
    model = model_for(local_config, "vision").name
    message = image_message()
    message["content"].append(dict(message["content"][-1]))  # two images
    response = stack.client.post(URL, json={"messages": [message]})
    assert response.status_code == 200
    assert stack.value("cs_images_total", model=model) == 2
    assert stack.value("cs_image_preprocess_seconds_count", model=model) == 1
    assert stack.value("cs_image_preprocess_seconds_sum", model=model) > 0
    assert stack.value("cs_requests_total", model=model, route="vision", status="200") == 1


@pytest.mark.parametrize(("raw", "status", "code", "param"), BAD_BODIES)
def test_every_rejection_is_counted_once_with_bounded_labels(stack, local_config, raw, status,
                                                             code, param):
    response = stack.client.post(URL, content=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert stack.requests() == 1
    assert stack.requests(status=str(status)) == 1
    rejected = [
        s for m in stack.registry.collect() for s in m.samples
        if s.name == "cs_requests_rejected_total"
    ]
    assert [(s.labels["reason"], s.value) for s in rejected] == [(code, 1.0)]
    labels = stack.label_values()
    served = {m.name for m in local_config.models}
    assert labels["model"] <= served | {NO_MODEL}
    assert labels["route"] <= {"text", "vision", NO_MODEL}
    assert labels["reason"] <= REASONS
    assert all(value == 0 for value in _in_flight(stack))


def test_unknown_model_name_never_becomes_a_label(stack):
    response = stack.client.post(URL, json=text_body(model="'; DROP TABLE orders; --"))
    assert response.status_code == 404
    assert stack.value("cs_requests_total", model=NO_MODEL, route=NO_MODEL, status="404") == 1
    assert not any("DROP" in value for values in stack.label_values().values() for value in values)


def test_unknown_paths_and_methods_are_counted(stack):
    assert stack.client.get("/v1/nothing").status_code == 404
    assert stack.client.get(URL).status_code == 405
    labels = {"model": NO_MODEL, "route": NO_MODEL}
    assert stack.value("cs_requests_rejected_total", reason="not_found", **labels) == 1
    assert stack.value("cs_requests_rejected_total", reason="method_not_allowed", **labels) == 1
    assert stack.requests(status="404") == 1 and stack.requests(status="405") == 1


def test_transport_rejections_are_counted(stack):
    assert stack.client.post(URL, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    too_big = b"x" * (stack.config.limits.max_body_bytes + 1)
    assert stack.client.post(URL, content=too_big, headers={"Content-Type": "application/json"}).status_code == 413
    assert stack.value("cs_requests_rejected_total", model=NO_MODEL, route=NO_MODEL,
                       reason="unsupported_media_type") == 1
    assert stack.value("cs_requests_rejected_total", model=NO_MODEL, route=NO_MODEL,
                       reason="payload_too_large") == 1


def test_engine_failure_before_streaming_is_a_failed_500(local_config):
    stack = Stack(local_config, FakeBehaviour(fail_at_token=0))
    assert stack.client.post(URL, json=text_body()).status_code == 500
    labels = {"model": model_for(local_config, "text").name, "route": "text"}
    assert stack.value("cs_requests_total", status="500", **labels) == 1
    assert stack.value("cs_requests_failed_total", reason="internal_error", **labels) == 1
    assert stack.value("cs_requests_rejected_total", reason="internal_error", **labels) == 0
    assert stack.value("cs_e2e_latency_seconds_count", stream="false", **labels) == 0
    assert stack.value("cs_requests_in_flight", **labels) == 0


def test_mid_stream_failure_counts_the_in_band_status(local_config):
    stack = Stack(local_config, FakeBehaviour(fail_at_token=2))
    with stack.client.stream("POST", URL, json=text_body(stream=True)) as response:
        assert response.status_code == 200  # the header was sent before the failure
        lines = [line for line in response.iter_lines() if line]
    assert json.loads(lines[-2][len("data: "):])["error"]["code"] == "internal_error"
    labels = {"model": model_for(local_config, "text").name, "route": "text"}
    assert stack.value("cs_requests_total", status="500", **labels) == 1
    assert stack.value("cs_requests_total", status="200", **labels) == 0
    assert stack.value("cs_requests_failed_total", reason="internal_error", **labels) == 1
    assert stack.value("cs_completion_tokens_total", **labels) == 2  # what the client got
    assert stack.value("cs_requests_in_flight", **labels) == 0


def test_engine_input_error_is_a_rejection(local_config):
    stack = Stack(local_config, FakeBehaviour(reject_input=True))
    assert stack.client.post(URL, json=text_body(stream=True)).status_code == 400
    labels = {"model": model_for(local_config, "text").name, "route": "text"}
    assert stack.value("cs_requests_rejected_total", reason="context_length_exceeded", **labels) == 1
    assert stack.value("cs_requests_in_flight", **labels) == 0


def test_client_gone_before_the_first_byte_aborts_and_counts_once(local_config):
    """The response's close path: the SSE generator never ran, yet the engine request is
    cancelled and the request is counted once, as 499."""
    stack = Stack(local_config, FakeBehaviour(token_delay_s=0.05))
    labels = {"model": model_for(local_config, "text").name, "route": "text"}

    async def run():
        measured = stack.metrics.start()
        chat = await stack.service.prepare(
            json.dumps(text_body(stream=True)).encode(), "gone", measured, BACKEND_CALLER
        )
        response = ChatStreamResponse(await stack.service.open_stream(chat), {}, settle_nothing)
        assert stack.value("cs_requests_in_flight", **labels) == 1

        async def send(message):
            raise OSError("connection reset by peer")

        async def receive():
            return {"type": "http.disconnect"}

        with pytest.raises(ClientDisconnect):
            await response({"type": "http", "asgi": {"spec_version": "2.4"}}, receive, send)
        assert stack.engines["text"].cancelled == ["gone"]
        assert stack.value("cs_requests_total", status="499", **labels) == 1
        await response._chat_stream.close()  # a second close must not count again

    asyncio.run(run())
    assert stack.engines["text"].cancelled == ["gone"]
    assert stack.value("cs_requests_total", status="499", **labels) == 1
    assert stack.requests() == 1
    assert stack.value("cs_requests_failed_total", reason="client_disconnect", **labels) == 1
    assert stack.value("cs_requests_in_flight", **labels) == 0


async def settle_nothing() -> None:
    pass


def test_in_flight_gauge_counts_concurrent_requests(local_config):
    stack = Stack(local_config, FakeBehaviour(token_delay_s=0.05))
    labels = {"model": model_for(local_config, "text").name, "route": "text"}

    async def run():
        chats = [
            await stack.service.prepare(json.dumps(text_body()).encode(), f"r{i}",
                                        stack.metrics.start(), BACKEND_CALLER)
            for i in range(3)
        ]
        assert stack.value("cs_requests_in_flight", **labels) == 3
        for chat in chats:
            await stack.service.complete(chat)
            chat.metrics.succeeded()
        assert stack.value("cs_requests_in_flight", **labels) == 0

    asyncio.run(run())


def test_idle_gauges_are_reported_as_zero(stack, local_config):
    """Every model's in-flight series exists from the start (Ray drops unreported gauges)."""
    for model in local_config.models:
        sample = stack.registry.get_sample_value(
            "cs_requests_in_flight", {"model": model.name, "route": model.modality}
        )
        assert sample == 0


def _in_flight(stack) -> list[float]:
    return [
        s.value for m in stack.registry.collect() for s in m.samples
        if s.name == "cs_requests_in_flight"
    ]
