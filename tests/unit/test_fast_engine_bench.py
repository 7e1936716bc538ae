"""The fast-engine benchmark's parts (loadtests/fast_engine.py): the engine streams exactly the
tokens asked for, the floor streams the same chunks as OpenAI SSE, and the Serve side is the
shipped app with one replica per deployment and every answer from the engine."""

from __future__ import annotations

import asyncio
import json

from fastapi.testclient import TestClient

from loadtests.fast_engine import (
    ANSWER,
    TOKEN_CHARS,
    FastEngine,
    answer_tokens,
    body,
    plain_app,
    serve_config,
)
from model_server.engine_protocol import EngineRequest, SamplingOptions


def request(max_tokens: int) -> EngineRequest:
    return EngineRequest("r", [{"role": "user", "content": "hi"}],
                         SamplingOptions(max_tokens, 0.2, 0.8))


def test_the_engine_streams_one_token_per_chunk_and_ends_at_the_length():
    engine = FastEngine(None, None)

    async def collect():
        return [chunk async for chunk in engine.chat(request(7))]

    chunks = asyncio.run(collect())
    assert [c.completion_tokens for c in chunks] == list(range(1, 8))
    assert [c.text for c in chunks] == [ANSWER[i:i + TOKEN_CHARS]
                                        for i in range(0, 7 * TOKEN_CHARS, TOKEN_CHARS)]
    assert [c.finish_reason for c in chunks] == [None] * 6 + ["stop"]


def test_a_consumer_that_falls_behind_gets_merged_chunks_and_no_token_is_lost():
    engine = FastEngine(None, None)
    engine.seconds_per_token = 0.002  # steps keep their pace whatever the consumer does

    async def slow_consumer():
        chunks = []
        async for chunk in engine.chat(request(20)):
            chunks.append(chunk)
            await asyncio.sleep(0.01)  # five steps per chunk taken
        return chunks

    chunks = asyncio.run(slow_consumer())
    assert "".join(c.text for c in chunks) == answer_tokens(0, 20)
    assert len(chunks) < 20 and chunks[-1].completion_tokens == 20
    assert chunks[-1].finish_reason == "stop"


def test_the_floor_streams_the_same_chunks_as_openai_sse():
    with TestClient(plain_app()) as client:
        response = client.post("/v1/chat/completions", json=body(5))
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert contents[1:] == [answer_tokens(i, 1) for i in range(5)]
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_the_serve_side_is_the_shipped_app_with_the_fast_engine_and_no_shortcuts():
    config = serve_config(8123)
    app = config["applications"][0]
    assert app["import_path"] == "loadtests.fast_engine:build_app"
    assert {d["name"]: d["num_replicas"] for d in app["deployments"]} == {
        "Ingress": 1, "TextModel": 1}
    assert all("autoscaling_config" not in d for d in app["deployments"])
    shops = app["args"]["shops"]
    assert shops["response_cache"]["enabled"] is False
    assert all(shop["curated_answers"]["enabled"] is False for shop in shops["catalog"])
    assert config["http_options"]["port"] == 8123


def test_the_text_replica_takes_as_many_requests_as_a_gpu_replica_so_no_level_queues():
    app = serve_config(8123)["applications"][0]
    text = next(d for d in app["deployments"] if d["name"] == "TextModel")
    assert text["max_ongoing_requests"] >= 64  # the highest level streams at once
    assert text["max_queued_requests"] >= 64


def test_the_engine_s_answer_passes_the_shop_s_answer_guard_whole():
    """The benchmark measures the path a passing answer takes (released a sentence at a time),
    not replacements: its 256-token answer to its question passes the demo shop's guard."""
    from configs.schema import (
        APP_NAME,
        PROJECT_ROOT,
        app_config_from_serve_config,
        load_serve_config,
    )
    from loadtests.fast_engine import QUESTION
    from shop.layer import shop_layer_for

    raw = load_serve_config(PROJECT_ROOT / "configs" / "local-cpu.yaml")
    config = app_config_from_serve_config(raw, APP_NAME)
    assistant = shop_layer_for(config.shops, PROJECT_ROOT).directory.get("demo-apparel")
    plan = assistant.plan([{"role": "user", "content": QUESTION}])
    assert plan.reply is None  # the model answers it
    gate = assistant.guard.gate(plan.language, assistant.fact_sheet(plan))
    shown = "".join(gate.feed(answer_tokens(i, 1)) for i in range(256)) + gate.end("stop")
    assert gate.failure is None and shown == ANSWER.rstrip()
