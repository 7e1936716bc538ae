"""The order-system client (shop/orders/backend.py): a reply that fits the contract is an
answer, a 404 is "no such order", and everything else (timeout, refused connection, 5xx,
malformed JSON) is `OrderSystemUnavailable`; the breaker fails fast once it opens and closes
again; calls in flight are bounded; ids stay one path segment."""

from __future__ import annotations

import asyncio
import httpx
import pytest

from shop.config import OrderBackendConfig
from shop.orders.backend import OrderBackend, OrderSystemUnavailable

BASE = "http://orders.test/shops/s"
ORDER = {
    "id": "A1", "placed_at": "2026-11-11T10:00:00+08:00", "status": "in_transit",
    "items": [{"sku": "x", "title": "毛衣", "quantity": 1,
               "price": {"amount": "10.00", "currency": "CNY"}}],
    "total": {"amount": "10.00", "currency": "CNY"},
    "shipment": {"carrier": "SF", "tracking_number": "SF1234567890",
                 "events": [{"time": "2026-11-12T10:00:00+08:00", "code": "in_transit"}]},
}


def backend(handler, **settings) -> tuple[OrderBackend, list[str]]:
    states: list[str] = []
    config = OrderBackendConfig(base_url=BASE, **{"timeout_s": 1.0, **settings})
    return OrderBackend("s", config, lambda shop, state: states.append(state),
                        httpx.MockTransport(handler)), states


def run(coro):
    return asyncio.run(coro)


def test_an_order_that_fits_the_contract_is_parsed():
    seen = []

    def handler(request):
        seen.append(request.url.path)
        return httpx.Response(200, json=ORDER)

    client, _ = backend(handler)
    order = run(client.order("u1", "A1"))
    assert order.status == "in_transit" and order.shipment.tracking_number == "SF1234567890"
    assert seen == ["/shops/s/shoppers/u1/orders/A1"]


def test_a_404_is_no_such_order_not_a_failure():
    client, states = backend(lambda request: httpx.Response(404, json={"error": "not_found"}))
    for _ in range(8):
        assert run(client.order("u1", "nope")) is None
    assert "opened" not in states


@pytest.mark.parametrize("reply, reason", [
    (lambda r: httpx.Response(503, json={"error": "x"}), "bad_status"),
    (lambda r: httpx.Response(401, json={"error": "unauthorized"}), "bad_status"),
    (lambda r: httpx.Response(200, text='{"orders": [{"id": 12'), "malformed"),
    (lambda r: httpx.Response(200, json={"orders": [{"id": "A", "status": "teleported"}]}),
     "malformed"),
    (lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused")), "connection"),
])
def test_failures_are_unavailable_with_their_reason(reply, reason):
    client, _ = backend(reply)
    with pytest.raises(OrderSystemUnavailable) as caught:
        run(client.recent("u1", 5))
    assert caught.value.reason == reason


def test_a_slow_order_system_times_out_within_the_deadline():
    async def slow(request):
        await asyncio.sleep(5)
        return httpx.Response(200, json={"orders": []})

    client, _ = backend(slow, timeout_s=0.2)

    async def call():
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(OrderSystemUnavailable) as caught:
            await client.recent("u1", 5)
        return caught.value.reason, loop.time() - started

    reason, took = run(call())
    assert reason == "timeout" and took < 1.0


def test_the_breaker_opens_fails_fast_and_closes_again():
    calls = []
    healthy = {"now": False}

    def handler(request):
        calls.append(1)
        if healthy["now"]:
            return httpx.Response(200, json={"orders": []})
        return httpx.Response(500)

    client, states = backend(handler, breaker_failures=3, breaker_open_s=0.3)

    async def scenario():
        for _ in range(3):
            with pytest.raises(OrderSystemUnavailable):
                await client.recent("u1", 5)
        with pytest.raises(OrderSystemUnavailable) as caught:
            await client.recent("u1", 5)
        assert caught.value.reason == "breaker_open"
        assert len(calls) == 3  # the open breaker did not call
        healthy["now"] = True
        await asyncio.sleep(0.4)
        assert await client.recent("u1", 5) == ()

    run(scenario())
    assert "opened" in states and states[-1] == "closed"


def test_calls_in_flight_are_bounded():
    in_flight = {"now": 0, "max": 0}

    async def handler(request):
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        await asyncio.sleep(0.05)
        in_flight["now"] -= 1
        return httpx.Response(200, json={"orders": []})

    client, _ = backend(handler, max_concurrent=2)

    async def burst():
        await asyncio.gather(*(client.recent("u1", 5) for _ in range(8)))

    run(burst())
    assert in_flight["max"] == 2


def test_ids_stay_one_path_segment():
    seen = []

    def handler(request):
        seen.append(request.url.host + request.url.raw_path.decode())
        return httpx.Response(404, json={"error": "not_found"})

    client, _ = backend(handler)
    run(client.order("u1/../../admin", "A1?x=1#y"))
    run(client.order("..", ".."))  # whole dot segments, which a URL parser would remove
    assert seen == ["orders.test/shops/s/shoppers/u1%2F..%2F..%2Fadmin/orders/A1%3Fx%3D1%23y",
                    "orders.test/shops/s/shoppers/%2E%2E/orders/%2E%2E"]
