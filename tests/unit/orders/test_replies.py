"""What is said about an order (shop/orders/replies.py): every status has words in both
languages, personal data is masked, and "not found" says nothing about whose order it is."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest

from shop.orders.contract import Order
from shop.orders.replies import (
    STATUS,
    mask_digits,
    mask_phone,
    not_found_reply,
    order_facts,
    refund_reply,
    status_reply,
)

NOW = datetime(2026, 11, 12, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def order(status: str, **fields) -> Order:
    shipped = status not in ("unpaid", "paid", "packed", "cancelled")
    return Order.model_validate({
        "id": "MT1", "placed_at": NOW - timedelta(days=3), "status": status,
        "items": [{"sku": "s", "title": "毛衣", "quantity": 1,
                   "price": {"amount": "459", "currency": "CNY"}}],
        "total": {"amount": "459", "currency": "CNY"},
        "shipment": {"carrier": "顺丰速运", "tracking_number": "SF1428730095621",
                     "events": [{"time": NOW, "code": "arrived", "location": "上海转运中心"}]}
        if shipped else None,
        "promised_delivery": date(2026, 11, 14),
        "address": {"name": "李伟", "phone": "13812341234", "city": "上海市",
                    "line": "张杨路 500 号"},
        **fields})


@pytest.mark.parametrize("language", ["zh", "en"])
def test_every_status_is_worded_in_both_languages_with_the_order_id(language):
    texts = {status: status_reply(order(status), language) for status in STATUS}
    assert len(set(texts.values())) == len(STATUS)  # no two statuses read alike
    for status, text in texts.items():
        assert "MT1" in text, text
        shipped = status in ("shipped", "in_transit", "out_for_delivery", "delivery_exception")
        assert ("SF1428730095621" in text) == shipped, text
        assert ("上海转运中心" in text) == shipped, text  # the latest tracking event


def test_refund_states_are_worded_and_rejections_give_the_reason():
    refund = {"state": "rejected", "amount": {"amount": "99", "currency": "CNY"},
              "requested_at": NOW, "reason": "超过7天"}
    text = refund_reply(order("delivered", refund=refund), "zh")
    assert "¥99.00" in text and "未通过" in text and "超过7天" in text
    assert "没有退款申请" in refund_reply(order("delivered"), "zh")


def test_phones_are_masked_and_the_street_never_given():
    facts = order_facts(order("in_transit"), "zh")
    assert "138****1234" in facts and "13812341234" not in facts and "张杨路" not in facts
    assert mask_phone("+852 6123 4567") == "852****4567"
    assert mask_digits("call 13812341234 or 010-6552-1234") == "call 138****1234 or 010****1234"
    assert mask_digits("SF1428730095621") == "SF1428730095621"  # a tracking number is kept


def test_not_found_is_the_same_for_any_reference():
    first = not_found_reply("MT1", "en").replace("MT1", "<ref>")
    assert first == not_found_reply("VW99", "en").replace("VW99", "<ref>")
