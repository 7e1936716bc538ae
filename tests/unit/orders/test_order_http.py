"""Order questions through the HTTP API (in-process ingress, fake model replicas, the real
reference order service): verified shoppers get their order's facts, everyone else nothing of
any order; a failing order system is a hand-off, never a guessed status."""

from __future__ import annotations

import logging
import time

import pytest

from tests.unit.orders.conftest import ORDER_TIMEOUT_S
from tests.order_stack import token_for
from tests.unit.test_shop_http import URL, ShopStack

IN_TRANSIT_TRACKING = "SF1428730095621"  # u1001's in-transit order (order_service/seed.py)
ORDER_FIELDS = ("MT2026", "VW2026", "SF14", "运输中", "in transit", "¥")


@pytest.fixture(scope="module")
def one_stack(ordering):
    config, _ = ordering
    return ShopStack(config)  # indexing both shops takes seconds: once per module


@pytest.fixture
def shop_stack(one_stack, healthy_orders):
    one_stack.engines["text"].requests.clear()
    return one_stack


def signed(ordering, shopper: str, shop: str = "demo-apparel", **claims) -> dict:
    _, secrets = ordering
    return {"X-Shop-Id": shop, "X-Shopper-Token": token_for(secrets[shop], shop, shopper,
                                                            **claims)}


def post(stack, text: str, headers: dict, history: list | None = None):
    messages = [*(history or []), {"role": "user", "content": text}]
    return stack.client.post(URL, json={"messages": messages}, headers=headers)


def answer(stack, text: str, headers: dict, history: list | None = None) -> dict:
    response = post(stack, text, headers, history)
    assert response.status_code == 200, response.text
    return response.json()


def content(body: dict) -> str:
    return body["choices"][0]["message"]["content"]


def test_a_verified_shopper_gets_the_order_from_a_template_without_a_model(shop_stack, ordering):
    found_before = shop_stack.value("cs_shop_order_lookups_total", shop="demo-apparel",
                                    outcome="found")
    body = answer(shop_stack, "快递到哪了", signed(ordering, "u1001"))
    text, service = content(body), body["service"]
    assert IN_TRANSIT_TRACKING in text and "运输中" in text and "顺丰速运" in text
    assert service["order"] == "found" and service["handoff"] is None
    assert service["sources"][0]["id"].startswith("order/MT")
    assert shop_stack.engine_calls() == 0
    assert shop_stack.value("cs_shop_order_lookups_total", shop="demo-apparel",
                            outcome="found") == found_before + 1


def test_a_refund_question_is_answered_from_the_order_with_a_refund(shop_stack, ordering):
    body = answer(shop_stack, "has my refund gone through?", signed(ordering, "u1002"))
    text = content(body)
    assert "Refund of ¥499.00" in text and "being reviewed" in text
    assert body["service"]["order"] == "found"


def test_an_anonymous_shopper_is_asked_to_sign_in_and_sees_no_order(shop_stack):
    for message in ("我的快递到哪了", "where is my parcel", f"{IN_TRANSIT_TRACKING} 到哪了"):
        body = answer(shop_stack, message, {"X-Shop-Id": "demo-apparel"})
        assert body["service"]["order"] == "signed_out"
        assert "登录" in content(body) or "sign in" in content(body)
        assert not any(field in content(body) for field in ORDER_FIELDS)
    assert shop_stack.engine_calls() == 0


def test_another_shoppers_or_shops_order_reads_like_one_that_does_not_exist(
        shop_stack, ordering, order_service):
    refs = (order_service.order_ids("demo-apparel", "u1002")[0],
            order_service.order_ids("demo-electronics", "e2001")[0], "MT20990101-9999")
    headers = signed(ordering, "u1001")
    texts = [content(answer(shop_stack, f"订单 {ref} 到哪了", headers)).replace(ref, "<ref>")
             for ref in refs]
    assert texts[0] == texts[1] == texts[2] and "没有找到" in texts[0]
    assert not any(field in texts[0] for field in ORDER_FIELDS)


@pytest.mark.parametrize("make_headers, code", [
    (lambda o: signed(o, "u1001", ttl_s=60, now=time.time() - 3600), "shopper_token_expired"),
    (lambda o: {"X-Shop-Id": "demo-electronics", **{
        "X-Shopper-Token": signed(o, "u1001")["X-Shopper-Token"]}}, "shopper_token_wrong_shop"),
    (lambda o: {"X-Shop-Id": "demo-apparel", "X-Shopper-Token":
                signed(o, "u1001")["X-Shopper-Token"][:-4] + "AAAA"}, "shopper_token_invalid"),
    (lambda o: {"X-Shop-Id": "demo-apparel", "X-Shopper-Token": "u1001"},
     "shopper_token_invalid"),
])
def test_tokens_that_do_not_verify_are_401_with_their_code_and_no_order(
        shop_stack, ordering, make_headers, code):
    response = post(shop_stack, "我的快递到哪了", make_headers(ordering))
    assert response.status_code == 401
    error = response.json()["error"]
    assert (error["code"], error["param"]) == (code, "X-Shopper-Token")
    assert not any(field in response.text for field in ORDER_FIELDS)


def test_a_failing_order_system_is_a_handoff_and_the_shop_keeps_answering(
        shop_stack, ordering, order_service):
    headers = signed(ordering, "u1001")

    def counted():
        return [shop_stack.value("cs_shop_order_system_failures_total", shop="demo-apparel",
                                 failure=failure) for failure in ("timeout", "malformed")] + [
            shop_stack.value("cs_shop_handoffs_total", shop="demo-apparel",
                             handoff_reason="order_system_unavailable")]

    before = counted()
    for fault in ("error", "garbage", "slow"):
        order_service.set_fault(fault, delay_s=ORDER_TIMEOUT_S * 3)
        body = answer(shop_stack, "我的快递到哪了", headers)
        assert body["service"]["handoff"]["reason"] == "order_system_unavailable"
        assert body["service"]["order"] == "unavailable"
        assert not any(field in content(body) for field in ORDER_FIELDS)
        # A question that is not about an order is answered as usual.
        faq = answer(shop_stack, "包邮吗", headers)
        assert faq["service"]["cache"] == "faq" and faq["service"]["handoff"] is None
    order_service.set_fault("none")
    timeouts, malformed, handoffs = (now - then for now, then in zip(counted(), before))
    assert (timeouts, malformed, handoffs) == (1, 1, 3)


def test_an_order_question_a_template_cannot_answer_goes_to_the_model_with_the_order_masked(
        shop_stack, ordering, order_service):
    order_id = order_service.order_ids("demo-apparel", "u1001")[0]
    headers = signed(ordering, "u1001")
    for _ in range(2):
        body = answer(shop_stack, f"订单 {order_id} 能开发票吗", headers)
        assert body["service"]["sources"][0]["id"] == f"order/{order_id}"
    engine = shop_stack.engines["text"]
    assert len(engine.requests) == 2  # never cached: one shopper's order data
    system = engine.requests[-1].messages[0]["content"]
    assert order_id in system and IN_TRANSIT_TRACKING in system
    assert "138****1234" in system and "13812341234" not in system
    assert "张杨路" not in system  # the street address stays with the order system


def test_order_data_is_not_logged(shop_stack, ordering, caplog):
    caplog.set_level(logging.DEBUG)
    answer(shop_stack, "快递到哪了", signed(ordering, "u1001"))
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert IN_TRANSIT_TRACKING not in logged and "MT2026" not in logged


def test_several_open_orders_are_listed_and_a_position_picks_one(shop_stack, ordering,
                                                                 order_service):
    headers = signed(ordering, "u1002")
    first = answer(shop_stack, "has my order shipped?", headers)
    assert first["service"]["order"] == "ambiguous"
    listing = content(first)
    listed = [line.split()[2].rstrip(",") for line in listing.splitlines()
              if line[:2] in ("1.", "2.", "3.")]
    assert listed == order_service.order_ids("demo-apparel", "u1002")[:3]
    history = [{"role": "user", "content": "has my order shipped?"},
               {"role": "assistant", "content": listing}]
    second = answer(shop_stack, "the 2nd one", headers, history)
    assert second["service"]["sources"][0]["id"] == f"order/{listed[1]}"


def test_the_demo_sign_in_mints_tokens_for_demo_shoppers_only(shop_stack):
    minted = shop_stack.client.post("/v1/demo/shopper-token", json={"shopper": "u1001"},
                                    headers={"X-Shop-Id": "demo-apparel"})
    assert minted.status_code == 200 and minted.headers["cache-control"] == "no-store"
    token = minted.json()["token"]
    body = answer(shop_stack, "快递到哪了", {"X-Shop-Id": "demo-apparel",
                                          "X-Shopper-Token": token})
    assert IN_TRANSIT_TRACKING in content(body)
    refused = shop_stack.client.post("/v1/demo/shopper-token", json={"shopper": "e2001"},
                                     headers={"X-Shop-Id": "demo-apparel"})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "demo_shopper_not_found"
