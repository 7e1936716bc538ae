"""Process failures inside the running stack: a dead engine or a killed replica is replaced by
Serve, every request in the meantime gets one clean outcome within its time limit, and the other
model keeps serving. Marked disruptive, so it runs after the other integration tests."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from configs.schema import app_config_from_serve_config, load_serve_config
from tests.conftest import APP_NAME, image_message
from tests.integration.conftest import processes
from tests.integration.test_local_stack import SAMPLE

pytestmark = [pytest.mark.integration, pytest.mark.disruptive]
RECOVERY_TIMEOUT_S = 420


def replica_pid(deployment: str) -> int:
    pids = [pid for pid, _, args in processes() if f"ServeReplica:cs-assistant:{deployment}" in args]
    assert len(pids) == 1, pids
    return pids[0]


def engine_core_pid(replica: int) -> int:
    children = [pid for pid, ppid, args in processes() if ppid == replica and "EngineCore" in args]
    assert len(children) == 1, f"engine core of replica {replica} not found"
    return children[0]


def request_timeout_s(stack) -> float:
    config = app_config_from_serve_config(load_serve_config(stack.config_path), APP_NAME)
    return config.limits.request_timeout_s


def timed_ask(stack, messages) -> tuple[httpx.Response, float]:
    # The client waits longer than the server's own limit, so the server's outcome is observed.
    limit = request_timeout_s(stack)
    started = time.monotonic()
    with stack.client(timeout=limit + 60) as client:
        response = client.post("/v1/chat/completions", json={"messages": messages, **SAMPLE})
    elapsed = time.monotonic() - started
    assert elapsed < limit + 15, f"request took {elapsed:.0f}s, past the {limit}s limit"
    return response, elapsed


# What a request may get while a replica is being replaced, by (status, error code). No bare
# 500: a call whose replica is lost before any output is sent once more, and when no replica can
# take it the client is told when to come back (router/replica_client.py). Anything else (a 500, a
# 400, a 502 from the proxy, a body outside the OpenAI envelope) fails the test.
OUTCOMES_WHILE_RECOVERING = {
    (503, "model_unavailable"), (503, "no_replica_available"), (504, "request_timeout"),
}
# These messages name the request id, so a client's report can be found in the server log.
CODES_WITH_REQUEST_ID = {"model_unavailable", "request_timeout"}


def check_failure(response: httpx.Response) -> tuple[int, str, int | None]:
    """A clean 5xx: the OpenAI envelope, a known code, and a request id to trace it by.
    Returns (status, code, Retry-After)."""
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, response.text
    outcome = (response.status_code, error["code"])
    assert outcome in OUTCOMES_WHILE_RECOVERING, response.text
    assert response.headers.get("x-request-id"), dict(response.headers)
    if error["code"] in CODES_WITH_REQUEST_ID:
        assert response.headers["x-request-id"] in error["message"], error["message"]
    retry_after = None
    if response.status_code == 503:
        retry_after = int(response.headers["Retry-After"])
        assert retry_after > 0
    return (*outcome, retry_after)


def wait_until_served(stack, messages) -> tuple[float, list[tuple[int, str]]]:
    """Ask until a 200; every failure before it must be a clean 5xx (see `check_failure`).
    Returns the time to recovery and the (status, code, Retry-After) of each failure."""
    started = time.monotonic()
    failures = []
    while time.monotonic() - started < RECOVERY_TIMEOUT_S:
        response, _ = timed_ask(stack, messages)
        if response.status_code == 200:
            return time.monotonic() - started, failures
        failures.append(check_failure(response))
        time.sleep(1)
    pytest.fail(f"not served again within {RECOVERY_TIMEOUT_S}s")


TEXT = [{"role": "user", "content": "still there?"}]


def test_killed_engine_process_gets_its_replica_restarted(stack):
    old_replica = replica_pid("TextModel")
    os.kill(engine_core_pid(old_replica), signal.SIGKILL)

    # The vision model keeps serving while the text replica is replaced.
    response, _ = timed_ask(stack, [image_message()])
    assert response.status_code == 200

    recovered_s, failures = wait_until_served(stack, TEXT)
    assert replica_pid("TextModel") != old_replica
    # The replica left with its engine, so requests found no replica: each was told to come
    # back when the replacement is due (replica_wait.replacement_s), not after the cold-start
    # Retry-After of a model at zero.
    assert failures, "no request saw the text model without a replica"
    wait = next(m.replica_wait for m in app_config_from_serve_config(
        load_serve_config(stack.config_path), APP_NAME).models if m.modality == "text")
    assert failures[0][2] is not None and failures[0][2] > wait.retry_after_s, failures
    print(f"\n[integration] text replica serving again {recovered_s:.0f}s after its engine was "
          f"killed; failures meanwhile: {failures}")


def test_killed_replica_takes_its_engine_with_it_and_is_replaced(stack):
    old_replica = replica_pid("VisionModel")
    engine = engine_core_pid(old_replica)
    os.kill(old_replica, signal.SIGKILL)
    killed_at = time.monotonic()

    # The engine process goes with its replica (no orphan holding memory and a core).
    while time.monotonic() - killed_at < 15 and any(pid == engine for pid, _, _ in processes()):
        time.sleep(0.2)
    assert not any(pid == engine for pid, _, _ in processes()), "engine core outlived its replica"

    # Text traffic is unaffected while the vision replica is replaced.
    response, elapsed = timed_ask(stack, [{"role": "user", "content": "Do you have the merino sweater in grey, size M, and how warm is it?"}])
    assert response.status_code == 200 and elapsed < 30

    recovered_s, failures = wait_until_served(stack, [image_message()])
    assert replica_pid("VisionModel") != old_replica
    print(f"\n[integration] vision replica serving again {recovered_s:.0f}s after it was killed; "
          f"outcomes meanwhile: {failures}")
