"""Hand-off rules, table-driven in both languages: each reason fires on what it is for and stays
quiet on what only looks alike (enthusiasm, questions about the complaint or safety policy,
negations)."""

from __future__ import annotations

import pytest

from shop.config import HandoffConfig, LocalizedList
from shop.handoff import HandoffRules
from shop.no_answer import NoAnswerMessages

NO_ANSWER = ("I'm sorry, I don't have that information to hand.", "抱歉，这个问题我暂时无法确认。")
RULES = HandoffRules(HandoffConfig(), NoAnswerMessages(NO_ANSWER))


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("转人工", "requested"),
        ("帮我找个人工客服", "requested"),
        ("我要真人客服，不要机器人", "requested"),
        ("Can I talk to a human please?", "requested"),
        ("get me a real person", "requested"),
        ("I want to speak to a manager", "requested"),
        ("我要投诉你们！", "complaint"),
        ("再不退款我就打12315", "complaint"),
        ("你们就是骗子，垃圾店铺", "complaint"),
        ("Where is my parcel!!!", "complaint"),
        ("This is ridiculous, worst shop ever", "complaint"),
        ("I'm reporting your shop to the platform", "complaint"),
        ("我要找律师起诉你们", "sensitive"),
        ("同一个订单扣了两次款", "sensitive"),
        ("充电宝鼓包了还发烫", "sensitive"),
        ("孩子穿了以后起了红疹子", "sensitive"),
        ("I was charged twice for one order", "sensitive"),
        ("My lawyer will contact you", "sensitive"),
        ("the power bank swelled up and smoke came out", "sensitive"),
        ("the charger sparked when I plugged it in", "sensitive"),
        # Without the usual keywords (issue 21): frustration, repeated asking, nobody helping.
        ("问了三天了一直没人回，鞋子开胶了到底管不管", "complaint"),
        ("这已经是第四次找你们了", "complaint"),
        ("衣服质量有问题，好几天都没人理", "complaint"),
        ("fourth time I'm writing about this, still no reply", "complaint"),
        ("Honestly I'm done with this shop, nobody gets back to me", "complaint"),
        ("you keep sending me round in circles", "complaint"),
        # Payment disputes without "twice"/"charged" keywords in the old forms.
        ("怎么扣了我两笔钱，我只下了一单", "sensitive"),
        ("付款页面卡住，结果重复支付了", "sensitive"),
        ("my bank shows two payments for the same order", "sensitive"),
        ("I see duplicate charges on my statement", "sensitive"),
        ("the wool gave my son a skin rash", "sensitive"),
        ("could a real person look at my refund?", "requested"),
    ],
)
def test_each_reason_fires(message, reason):
    assert RULES.reason_for(message, []) == reason


@pytest.mark.parametrize(
    "message",
    [
        "Great, thanks!",
        "Great, thanks!!!",
        "太好了，谢谢！！！",
        "Love it!!! Thank you",
        "投诉流程是什么？",
        "怎么投诉比较快",
        "我能不能直接打12315投诉？会影响权益吗",
        "How do I file a complaint?",
        "What is your complaints procedure?",
        "I don't want to complain, just asking when it ships",
        "不用转人工，我自己看看",
        "no need for a human, thanks",
        "你们是人工智能吗",
        "Can I take the power bank on a plane?",
        "充电宝可以带上飞机吗",
        "Is the wool itchy for sensitive skin?",
        "When will my order ship?",
        "我的订单什么时候发货？",
        "report card: can I return a gift?",
        "投诉之后一般多久有回复",
        "万一充电宝鼓包了怎么办",
        "What if the power bank swells after a year?",
        "the deals this year are unbelievable!",
        "second time buying here, love the quality",
        "我是第二次买了，质量不错",
        # Order numbers that contain a hotline's digits.
        "帮我查一下订单2026123456到哪了",
        "订单号1231511，什么时候发货",
    ],
)
def test_look_alikes_do_not_fire(message):
    assert RULES.reason_for(message, []) is None


def test_repeated_failure_after_the_configured_number_of_no_answers():
    assert RULES.reason_for("and the other one?", [NO_ANSWER[0], NO_ANSWER[0]]) == \
        "repeated_failure"
    assert RULES.reason_for("那另一个呢", ["你好", NO_ANSWER[1], NO_ANSWER[1]]) == \
        "repeated_failure"
    # One failure, or a real answer in between, is not repeated failure.
    assert RULES.reason_for("and?", [NO_ANSWER[0]]) is None
    assert RULES.reason_for("and?", [NO_ANSWER[0], "It ships today.", NO_ANSWER[0]]) is None


def test_shops_add_their_own_patterns():
    rules = HandoffRules(HandoffConfig(
        extra_patterns={"sensitive": LocalizedList(zh=("发票作废",), en=(r"\bvoid the invoice\b",))}),
        NoAnswerMessages(NO_ANSWER))
    assert rules.reason_for("please void the invoice", []) == "sensitive"
    assert rules.reason_for("发票作废怎么办", []) == "sensitive"
    assert RULES.reason_for("please void the invoice", []) is None
