"""Per-key rate limits with an injected clock: the `limits` package's in-memory store and our
leases read the same fake time, so windows slide and expire without sleeping."""

from __future__ import annotations

import asyncio
import types

import pytest
import yaml
from fastapi.testclient import TestClient

import limits.aio.storage.memory
import limits.aio.strategies
from configs.schema import PROJECT_ROOT, AccessConfig, AppConfig, RateLimits
from router.access.api_keys import Caller, key_entry, new_key
from router.access.rate_limits import RateLimiter, openai_duration, store_options
from router.chat_service import ChatService
from router.api.errors import APIError
from router.ingress import build_api
from tests.fakes import FakeBehaviour, fake_streamers, recording_metrics
from tests.unit.test_ingress_http import FakeHandle

URL = "/v1/chat/completions"
ASK = {"messages": [{"role": "user", "content": "Is shipping free?"}]}


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    clock = FakeClock()
    fake_time = types.SimpleNamespace(time=clock)
    monkeypatch.setattr(limits.aio.storage.memory, "time", fake_time)
    monkeypatch.setattr(limits.aio.strategies, "time", fake_time)
    return clock


class Recorded:
    def __init__(self):
        self.limited: list[tuple[str, str]] = []
        self.store_errors = 0

    def on_limited(self, key_id: str, limit: str) -> None:
        self.limited.append((key_id, limit))

    def on_store_error(self) -> None:
        self.store_errors += 1


def limiter(clock, recorded=None, **config) -> RateLimiter:
    recorded = recorded or Recorded()
    return RateLimiter(AccessConfig(allow_anonymous=True, **config), lease_ttl_s=150,
                       on_limited=recorded.on_limited, on_store_error=recorded.on_store_error,
                       clock=clock)


def key(key_id: str = "k", **limits) -> Caller:
    return Caller(key_id, "backend", None, RateLimits(**limits))


async def refused(coroutine) -> APIError:
    with pytest.raises(APIError) as caught:
        await coroutine
    assert caught.value.status == 429 and caught.value.code == "rate_limit_exceeded"
    return caught.value


def test_openai_duration_format():
    assert [openai_duration(s) for s in (0, 0.02, 0.9991, 1.5, 12.04, 59.99, 60, 61, 360.2)] == \
        ["0ms", "20ms", "1000ms", "1.5s", "12.1s", "60s", "1m0s", "1m1s", "6m1s"]


def test_requests_per_minute_refuses_the_next_request_and_says_when_to_retry(clock):
    async def run():
        rl, recorded = None, Recorded()
        rl = limiter(clock, recorded)
        caller = key(requests_per_minute=3)
        remaining = []
        for _ in range(3):
            admission = await rl.admit(caller, chat=True)
            remaining.append(admission.headers["x-ratelimit-remaining-requests"])
            await rl.settle(admission, 0)
        assert remaining == ["2", "1", "0"]
        error = await refused(rl.admit(caller, chat=True))
        assert error.headers["x-ratelimit-limit-requests"] == "3"
        assert error.headers["x-ratelimit-remaining-requests"] == "0"
        assert 1 <= int(error.headers["Retry-After"]) <= 60
        assert recorded.limited == [("k", "requests")]
        # Another key is not affected.
        assert (await rl.admit(key("other", requests_per_minute=3), chat=True)).headers
        # The window slides: after a minute the earlier requests weigh less, then nothing.
        clock.now += 61
        await rl.admit(caller, chat=True)
        clock.now += 120
        admission = await rl.admit(caller, chat=True)
        assert admission.headers["x-ratelimit-remaining-requests"] == "2"

    asyncio.run(run())


def test_tokens_are_charged_when_the_answer_ends_and_refuse_once_spent(clock):
    async def run():
        rl = limiter(clock)
        caller = key(tokens_per_minute=1000)
        first = await rl.admit(caller, chat=True)
        assert first.headers["x-ratelimit-remaining-tokens"] == "1000"
        await rl.settle(first, 700)
        second = await rl.admit(caller, chat=True)
        assert second.headers["x-ratelimit-remaining-tokens"] == "300"
        # Charged in full even past the limit: the overshoot is what was in flight.
        await rl.settle(second, 900)
        await rl.settle(second, 900)  # settling twice charges once
        error = await refused(rl.admit(caller, chat=True))
        assert error.headers["x-ratelimit-remaining-tokens"] == "0"
        assert 1 <= int(error.headers["Retry-After"]) <= 60
        # Listing calls are not chat: tokens do not gate them.
        await rl.admit(caller, chat=False)
        clock.now += 60.5  # the fixed window ends
        third = await rl.admit(caller, chat=True)
        assert third.headers["x-ratelimit-remaining-tokens"] == "1000"

    asyncio.run(run())


def test_concurrent_requests_hold_leases_until_settled(clock):
    async def run():
        recorded = Recorded()
        rl = limiter(clock, recorded)
        caller = key(concurrent_requests=2)
        a = await rl.admit(caller, chat=True)
        b = await rl.admit(caller, chat=True)
        await refused(rl.admit(caller, chat=True))
        assert recorded.limited == [("k", "concurrency")]
        await rl.settle(a, 10)
        c = await rl.admit(caller, chat=True)
        # A lease that is never settled (its replica died) expires after the lease TTL.
        clock.now += 151
        d = await rl.admit(caller, chat=True)
        e = await rl.admit(caller, chat=True)
        assert None not in (b.lease, c.lease, d.lease, e.lease)

    asyncio.run(run())


def test_a_refused_request_gives_its_concurrency_slot_back(clock):
    async def run():
        rl = limiter(clock)
        caller = key(concurrent_requests=1, requests_per_minute=1)
        await rl.settle(await rl.admit(caller, chat=True), 0)
        await refused(rl.admit(caller, chat=True))  # requests refuse after the lease was taken
        clock.now += 120
        await rl.admit(caller, chat=True)  # the slot was released, not leaked

    asyncio.run(run())


def test_a_failing_store_serves_the_request_and_counts_the_failure(clock):
    async def run():
        recorded = Recorded()
        # Nothing listens on port 9 of loopback: every call to the store fails fast.
        rl = limiter(clock, recorded, rate_limit_store="redis://127.0.0.1:9/0",
                     store_timeout_s=0.2)
        admission = await rl.admit(key(requests_per_minute=1, concurrent_requests=1,
                                       tokens_per_minute=10), chat=True)
        assert admission.headers == {}
        await rl.settle(admission, 5)
        assert recorded.store_errors >= 1

    asyncio.run(run())


def test_the_store_password_comes_from_the_named_environment_variable():
    config = AccessConfig(allow_anonymous=True, rate_limit_store="redis://limits:6379/0",
                          rate_limit_store_password_env="LIMITS_PASSWORD", store_timeout_s=0.5)
    assert store_options(config, {"LIMITS_PASSWORD": "s3cret"}) == {
        "socket_timeout": 0.5, "socket_connect_timeout": 0.5, "password": "s3cret"}
    for environ in ({}, {"LIMITS_PASSWORD": ""}):
        with pytest.raises(RuntimeError, match="LIMITS_PASSWORD, which is not set"):
            store_options(config, environ)
    # Without the option, whatever the URL holds is used, and no password is added.
    plain = AccessConfig(allow_anonymous=True, rate_limit_store="redis://limits:6379/0")
    assert "password" not in store_options(plain, {"LIMITS_PASSWORD": "s3cret"})


def test_a_replica_without_the_store_password_refuses_to_start(clock, monkeypatch):
    monkeypatch.delenv("CS_TEST_LIMITS_PASSWORD", raising=False)
    with pytest.raises(RuntimeError, match="CS_TEST_LIMITS_PASSWORD"):
        limiter(clock, rate_limit_store="redis://127.0.0.1:9/0",
                rate_limit_store_password_env="CS_TEST_LIMITS_PASSWORD")


def test_a_store_password_without_a_store_is_a_config_error():
    with pytest.raises(ValueError, match="no store to log in to"):
        AccessConfig(allow_anonymous=True, rate_limit_store_password_env="LIMITS_PASSWORD")
    with pytest.raises(ValueError, match="pattern"):
        AccessConfig(allow_anonymous=True, rate_limit_store="redis://limits:6379/0",
                     rate_limit_store_password_env="not a name")


def test_unlimited_keys_get_no_headers(clock):
    async def run():
        admission = await limiter(clock).admit(key(), chat=True)
        assert admission.headers == {} and admission.lease is None

    asyncio.run(run())


# ---- over HTTP -------------------------------------------------------------------------------


@pytest.fixture
def limited(local_config, tmp_path, clock):
    keys = {"bot": new_key(), "shopper": new_key()}
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [
        key_entry(keys["bot"], "bot", "*", "backend",
                  {"requests_per_minute": 2, "tokens_per_minute": 10_000}),
        key_entry(keys["shopper"], "shopper", "*", "backend", {"requests_per_minute": 100}),
    ]}))
    config = AppConfig.model_validate({**local_config.model_dump(),
                                       "access": {"keys_file": str(path)}})
    streamers, engines = fake_streamers(config, FakeBehaviour())
    metrics, registry = recording_metrics(config)
    client = TestClient(build_api(ChatService(config, streamers), metrics, config,
                                  FakeHandle()), raise_server_exceptions=False)
    headers = {name: {"Authorization": f"Bearer {k}"} for name, k in keys.items()}
    return client, headers, registry


def test_http_every_response_carries_the_limits_and_a_429_names_them(limited):
    client, headers, registry = limited
    first = client.post(URL, json=ASK, headers=headers["bot"])
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-limit-tokens"] == "10000"
    assert first.headers["x-ratelimit-reset-requests"].endswith(("s", "ms"))
    second = client.post(URL, json={"messages": []}, headers=headers["bot"])  # a 400 counts
    assert second.status_code == 400
    assert second.headers["x-ratelimit-remaining-requests"] == "0"
    third = client.post(URL, json=ASK, headers=headers["bot"])
    assert third.status_code == 429
    assert third.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(third.headers["retry-after"]) >= 1
    assert third.headers["x-ratelimit-remaining-requests"] == "0"
    # The other key is served normally meanwhile.
    assert client.post(URL, json=ASK, headers=headers["shopper"]).status_code == 200
    assert registry.get_sample_value("cs_rate_limited_total",
                                     {"key_id": "bot", "limit": "requests"}) == 1
    assert registry.get_sample_value("cs_key_requests_total",
                                     {"key_id": "bot", "status": "429"}) == 1
    assert registry.get_sample_value("cs_key_requests_total",
                                     {"key_id": "shopper", "status": "200"}) == 1


def test_http_tokens_of_a_streamed_answer_are_charged_when_it_ends(limited):
    client, headers, registry = limited
    with client.stream("POST", URL, json={**ASK, "stream": True},
                       headers=headers["bot"]) as response:
        assert response.status_code == 200
        list(response.iter_lines())
    used = registry.get_sample_value("cs_key_tokens_total", {"key_id": "bot"})
    assert used > 0
    after = client.post(URL, json=ASK, headers=headers["bot"])
    assert int(after.headers["x-ratelimit-remaining-tokens"]) == 10_000 - used


def test_http_a_stream_refused_as_it_opens_gives_its_slot_back(local_config, tmp_path, clock):
    key = new_key()
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump({"keys": [key_entry(key, "one-stream", "*", "backend",
                                                       {"concurrent_requests": 1})]}))
    config = AppConfig.model_validate({**local_config.model_dump(),
                                       "access": {"keys_file": str(path)}})
    behaviour = FakeBehaviour(reject_input=True)  # the engine refuses the prompt up front
    streamers, _ = fake_streamers(config, behaviour)
    metrics, _ = recording_metrics(config)
    client = TestClient(build_api(ChatService(config, streamers), metrics, config,
                                  FakeHandle()), raise_server_exceptions=False)
    headers = {"Authorization": f"Bearer {key}"}
    refused_stream = client.post(URL, json={**ASK, "stream": True}, headers=headers)
    assert refused_stream.status_code == 400
    behaviour.reject_input = False
    assert client.post(URL, json={**ASK, "stream": True}, headers=headers).status_code == 200
    assert client.post(URL, json=ASK, headers=headers).status_code == 200
