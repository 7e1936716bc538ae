"""A client that disconnects mid-stream gets its request aborted inside the real vLLM engine.

Observed through vLLM's own metrics, exported by the replica through Ray's metrics agent: once the
engine's token counter has settled, it stopped short of the 1000 tokens asked for, and the request
was not counted as finished (`request_success` counts requests that ended by stop or length, not
aborted ones). vLLM's running-requests gauge is only exported while the engine steps, so it cannot
show the abort by returning to 0.
"""

from __future__ import annotations

import time

import pytest

from tests.integration.test_local_stack import TEXT_MODEL

pytestmark = pytest.mark.integration
GENERATED = "ray_vllm_generation_tokens_total"
FINISHED = "ray_vllm_request_success_total"
MAX_TOKENS = 1000
SETTLE_S = 4.0  # unchanged this long (4 metric reports) = the engine stopped generating
TIMEOUT_S = 90.0


def settled_token_count(stack) -> float:
    """The text engine's generated-token count once it has stopped changing."""
    deadline = time.monotonic() + TIMEOUT_S
    last, since = stack.metric_sum(GENERATED, model_name=TEXT_MODEL), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = stack.metric_sum(GENERATED, model_name=TEXT_MODEL)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= SETTLE_S:
            return now
    pytest.fail(f"token count still changing after {TIMEOUT_S}s")


def test_disconnect_mid_stream_aborts_the_engine_request(stack):
    before = settled_token_count(stack)
    finished_before = stack.metric_sum(FINISHED, model_name=TEXT_MODEL)
    with stack.client() as client, client.stream("POST", "/v1/chat/completions", json={
        # Not one FAQ entry's question (that would be a curated answer, no engine at all).
        "messages": [{"role": "user", "content": "Tell me everything about your return policy. "
                      "Who pays the shipping? Can I exchange instead?"}],
        "stream": True, "max_tokens": MAX_TOKENS, "temperature": 1.0, "seed": 7,
    }) as response:
        assert response.status_code == 200
        received = 0
        for line in response.iter_lines():
            received += line.startswith("data: {")
            if received >= 4:
                break  # leaving the block closes the connection mid-stream
    generated = settled_token_count(stack) - before
    assert 0 < generated < MAX_TOKENS, f"engine generated {generated:.0f} tokens"
    assert stack.metric_sum(FINISHED, model_name=TEXT_MODEL) == finished_before, (
        "the abandoned request ran to a natural end instead of being aborted")
    print(f"\n[integration] disconnected stream: engine stopped after {generated:.0f} tokens")
