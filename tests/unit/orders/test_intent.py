"""Order-question recognition (shop/orders/intent.py): the rules' behaviour, one per kind of
message. Its accuracy is measured on the labelled sets (scripts/evaluate_order_intent.py), not
here."""

from __future__ import annotations

import pytest

from shop.orders.intent import recognise, references
from shop.orders.replies import WHICH_ORDER


@pytest.mark.parametrize("text, expected", [
    ("单号 SF1428730095621 怎么还没动", ["SF1428730095621"]),
    ("订单号：MT20261204-0001", ["MT20261204-0001"]),
    ("order #A1B2C3D4 please", ["A1B2C3D4"]),
    ("２０２６１１１１００１２３到哪了", ["2026111100123"]),  # full-width digits
    ("我的手机号13812341234，查下快递", []),  # a mobile number is not an order
    ("K75键盘有货吗", []),  # a model number has too few digits
])
def test_references_are_order_and_tracking_numbers_only(text, expected):
    assert references(text) == expected


@pytest.mark.parametrize("text", [
    "快递到哪了", "发货没", "我的退款到账了吗", "where's my parcel??", "my order??",
    "I ordered the cardigan last week, has it shipped?", "我双11拍的羽绒服啥时候发货",
    "it says delivered but I never got it", "退款怎么样了",
])
def test_the_shoppers_own_order_state_is_an_order_question(text):
    assert recognise(text) is not None, text


@pytest.mark.parametrize("text", [
    "一般几天发货", "how long does shipping take?", "怎么申请退款", "如果快递丢了怎么办",
    "what if my parcel is late?", "在哪看物流信息", "Can I change the address on my order?",
    "包邮吗", "这件毛衣会缩水吗",
])
def test_policy_look_alikes_are_not(text):
    assert recognise(text) is None, text


def test_topics_choose_the_template():
    assert recognise("我的退款到账了吗").topic == "refund"
    assert recognise("快递到哪了").topic == "status"
    assert recognise("我买了什么").topic == "list"
    assert recognise("订单 MT20261204-0001 能开发票吗").topic == "other"


def test_a_follow_up_to_an_order_reply_names_that_order():
    reply = "您的订单 MT20261204-0001（毛衣）已由顺丰速运发出，当前状态：运输中。"
    question = recognise("那退款呢？", reply)
    assert (question.ref, question.topic) == ("MT20261204-0001", "refund")
    assert recognise("那退款呢？") is None  # without an order reply before it: no order named


def test_the_answer_to_which_order_is_an_order_question():
    listing = f"You have these recent orders; {WHICH_ORDER[1]}? ...\n1. Order A ..."
    assert recognise("the 2nd one", listing).why == "which-reply"


def test_after_the_which_order_list_a_change_of_topic_is_not_taken_for_a_choice():
    listing = (f"您最近有以下订单，{WHICH_ORDER[0]}？\n1. 订单 MT20261204-0001，…\n"
               "2. 订单 MT20261125-0002，…")
    assert recognise("第二个", listing).why == "which-reply"
    assert recognise("对了，羊毛衫能机洗吗", listing) is None
    # A follow-up names no order when the reply listed several (not the first of them).
    assert recognise("那退款呢？", listing) is None


# FAQ entries of the demo shops that answer how the shop works, not where an order is: every
# phrasing the shop wrote for them must stay with the knowledge base ("Where is the size chart?",
# "手表升级卡住了" once read as order questions).
POLICY_FAQ = {"demo-apparel": ("size-chart", "physical-store", "coupon-where-to-get",
                               "manufacturing-origin", "restock-notify", "payment-cod",
                               "scam-warning", "delivery-to-door", "presale-ship-date",
                               "stock-reservation", "payment-on-behalf"),
              "demo-electronics": ("firmware-update", "invoice-e-invoice", "complaint-procedure")}


@pytest.mark.parametrize("shop", sorted(POLICY_FAQ))
def test_the_shops_policy_faq_phrasings_are_not_order_questions(shop):
    import yaml

    from tests.conftest import PROJECT_ROOT

    entries = yaml.safe_load((PROJECT_ROOT / "configs" / "shops" / shop / "faq.yaml").read_text())
    entries = entries if isinstance(entries, list) else entries.get("entries", [])
    checked = [e for e in entries if e.get("id") in POLICY_FAQ[shop]]
    assert len(checked) == len(POLICY_FAQ[shop])
    for entry in checked:
        questions = entry.get("questions") or []
        if isinstance(questions, dict):
            questions = [q for texts in questions.values() for q in texts]
        assert questions
        recognised = [q for q in questions if recognise(q) is not None]
        assert not recognised, (entry["id"], recognised)
