"""The answer guard's logic (shop/guard/): claims read the same whatever way a number is written,
a changed number, unit or currency is unsupported, broken output is found, promises are caught,
and the release gate never shows a failed sentence and never loses a passed one."""

from __future__ import annotations

import random

import pytest
from pydantic import ValidationError

from shop.config import GuardConfig
from shop.guard.claims import extract_claims
from shop.guard.verdict import AnswerGuard


def words(text: str) -> list[str]:
    return text.split()


def guard(**config) -> AnswerGuard:
    return AnswerGuard(GuardConfig(**config), words, ["Maple & Thread", "小枫"])


FACTS_ZH = ("中通快递其他省份2-4天到，顺丰1-3天。运费：升级顺丰每单加12元，满399元免费。"
            "北京时间16:00前付款当天发货。签收后7天内可无理由退货。新会员券8折。"
            "客服电话400-820-8820，官网 www.maple-thread.com/help。")
FACTS_EN = ("Parcels arrive in 2-4 days by ZTO. SF Express costs 12 CNY per order, free from "
            "399 CNY. Orders paid by 16:00 ship the same day. Returns within 7 days.")


def verdict(answer: str, language: str = "zh", facts=(FACTS_ZH, FACTS_EN), said=(),
            finish_reason: str | None = "stop", g: AnswerGuard | None = None):
    g = g or guard()
    gate = g.check(answer, finish_reason, language, g.facts(facts, said))
    return gate.failure


@pytest.mark.parametrize("answer", [
    "其他省份两到四天能到。", "其他省份2至4天能到。", "其他省份２－４天能到。",
    "升级顺丰加十二元。", "升级顺丰加¥12。", "Upgrading to SF costs RMB 12.",
    "Other provinces take two to four days.", "Other provinces take 2 to 4 days.",
    "签收后一周内可以退。", "Returns are accepted within a week.",
    "新会员券是20% off。", "Pay before 4 pm and it ships today.", "下午4点前付款当天发。",
    "满三百九十九元就免费升级顺丰。",
])
def test_a_supported_number_passes_however_it_is_written(answer):
    language = "en" if answer.isascii() else "zh"
    assert verdict(answer, language) is None


@pytest.mark.parametrize("answer,claim", [
    ("其他省份3-5天到。", "3-5天"),  # changed number
    ("中通2-3天到。", "2-3天"),  # a range whose ends are in the facts, but not as a range
    ("签收后7周内可以退。", "7周"),  # changed unit
    ("升级顺丰每单加12美元。", "12美元"),  # changed currency
    ("Upgrading to SF costs $12.", "$12"),
    ("顺丰15元。", "15元"),
    ("下午5点前付款当天发。", "下午5点"),
    ("您的订单号是MT20261207001。", "mt20261207001"),  # invented order number
    ("请拨打400-820-9999。", "400-820-9999"),  # invented phone number
    ("详情见 www.maple.com/sale", "www.maple.com/sale"),  # invented URL
])
def test_a_changed_number_unit_or_currency_is_unsupported(answer, claim):
    failure = verdict(answer, "en" if answer.isascii() else "zh")
    assert failure is not None and failure.reason == "unsupported_number"
    assert failure.claim == claim.lower()


def test_numbers_the_shopper_wrote_are_supported():
    assert verdict("您这单420元，可以免费升级顺丰。") is not None
    assert verdict("您这单420元，可以免费升级顺丰。", said=["我这单是420元"]) is None


def test_small_bare_numbers_and_words_that_contain_numerals_are_not_claims():
    assert extract_claims("One of our staff will help you, 一般来说统一发货，便宜一点。") == []
    kinds = {c.kind for c in extract_claims("订单号 MT20261207001，3XL，IP67")}
    assert kinds == {"code"}


def test_a_promise_fails_unless_the_facts_say_the_same_words():
    assert verdict("我保证按时送到。").reason == "promise"
    assert verdict("I'll make an exception and refund you.", "en").reason == "promise"
    assert verdict("我们保证正品。", facts=("所有商品保证正品。",)) is None


def test_a_shop_adds_its_own_promise_patterns():
    g = guard(promise_patterns={"zh": ["包退"], "en": []})
    assert verdict("放心，包退。", g=g).reason == "promise"
    assert verdict("放心，包退。") is None


def test_a_promise_pattern_that_does_not_compile_is_a_config_error():
    with pytest.raises(ValidationError, match="does not compile"):
        GuardConfig(promise_patterns={"en": ["(unclosed"], "zh": []})


def test_broken_output_is_failed_for_its_reason():
    assert verdict("").reason == "empty" and verdict(" …。").reason == "empty"
    assert verdict("包邮哦。" * 3).reason == "loop"
    assert verdict("按键3秒，" * 5 + "然后配对。").reason == "loop"
    assert verdict("This is is a an answer.", "en").reason == "garbled"
    assert verdict("发票 发票抬头 个人 公司 电子 纸质。").reason == "garbled"
    assert verdict("Parcels usually arrive within a few days of dispatch from Hangzhou by ZTO.",
                   "zh").reason == "wrong_language"
    assert verdict("其他省份2-4天到，偏远地区", finish_reason="length").reason == "cut_off"
    assert verdict("其他省份2-4天到，偏远地区", finish_reason="stop") is None


def test_a_looping_answer_shows_its_sentence_once_then_fails():
    g = guard()
    gate = g.gate("zh", g.facts([FACTS_ZH], []))
    shown = [gate.feed("从杭州发货，中通快递其他省份2-4天到。") for _ in range(5)]
    assert shown == ["从杭州发货，中通快递其他省份2-4天到。", "", "", "", ""]
    assert gate.failure.reason == "loop"


def test_the_other_language_is_not_shown_before_the_language_is_judged():
    g = guard()
    # An English conversation answered in Chinese: its first clauses are not shown before the
    # language check fails it.
    gate = g.gate("en", g.facts([FACTS_EN], []))
    answer = "不过，确实，随身携带，充电宝要放在随身行李里面，托运是不可以的。"
    shown = [gate.feed(answer[i:i + 2]) for i in range(0, len(answer), 2)]
    assert shown == [""] * len(shown) and gate.released == ""
    assert gate.failure.reason == "wrong_language"
    # An answer in its own language alone is shown as it comes.
    plain = g.gate("zh", g.facts([FACTS_ZH], []))
    assert plain.feed("好的。") == "好的。"
    # A short one with a word of the other language waits until it can be judged, or its end.
    mixed = g.gate("zh", g.facts([FACTS_ZH], []))
    assert mixed.feed("用SF发。") == "" and mixed.end("stop") == "用SF发。"
    assert mixed.released == "用SF发。" and mixed.failure is None


def test_a_looping_list_shows_none_of_its_items():
    g = guard()
    gate = g.gate("zh", g.facts([FACTS_ZH], []))
    shown = [gate.feed(piece) for piece in ["这件毛衣的成分有"] + ["羊毛、", "山羊绒、"] * 12]
    shown.append(gate.end("length"))
    assert "".join(shown) == "" and gate.failure.reason in ("loop", "cut_off")


def test_a_sentence_that_says_a_long_clause_again_is_not_shown_again():
    g = guard()
    gate = g.gate("en", g.facts([FACTS_EN], []))
    first = "You can only return a jacket if it is unworn. "
    again = "If you ask again, you can only return a jacket if it is unworn. "
    shown = gate.feed(first) + gate.feed(again) + gate.feed("Returns within 7 days. ")
    assert shown == first + "Returns within 7 days."
    assert gate.end("stop") == "" and gate.failure is None


def test_a_long_sentence_is_released_a_clause_at_a_time():
    g = guard()
    gate = g.gate("zh", g.facts([FACTS_ZH], []))
    first = gate.feed("从杭州发货后，中通快递其他省份一般2-4天到，顺丰1-3天，")
    assert first == "从杭州发货后，中通快递其他省份一般2-4天到，顺丰1-3天，"
    assert gate.feed("偏远地区会慢一些") == ""  # a short unfinished clause waits
    assert gate.end("stop") == "偏远地区会慢一些"
    g2 = g.gate("en", g.facts([FACTS_EN, "1,099 CNY"], []))
    # "1,099" is one number, not two clauses: nothing is released inside it.
    assert g2.feed("The tablet is sold at 1,099 CNY in every colour") == ""
    assert g2.end("stop") == "The tablet is sold at 1,099 CNY in every colour"


def test_the_shopper_s_question_said_back_is_not_shown():
    g = guard()
    gate = g.gate("zh", g.facts([FACTS_ZH], []), question="新疆包邮吗？顺丰要加多少钱")
    shown = gate.feed("新疆包邮吗？顺丰要加多少钱？") + gate.feed("升级顺丰每单加12元。")
    assert shown == "升级顺丰每单加12元。" and gate.failure is None


def test_the_gate_never_shows_a_failed_sentence_and_stops_at_it():
    g = guard()
    gate = g.gate("zh", g.facts([FACTS_ZH], []))
    answer = "从杭州发货，中通快递其他省份2-4天到。顺丰只要半天就到。有问题再问我。"
    shown = "".join(gate.feed(answer[i:i + 3]) for i in range(0, len(answer), 3))
    assert shown == "从杭州发货，中通快递其他省份2-4天到。" == gate.released
    assert gate.failure.claim == "0.5天"
    assert gate.end("stop") == ""  # nothing after the failure


@pytest.mark.parametrize("seed", range(5))
def test_a_passing_answer_is_released_whole_however_it_is_chunked(seed):
    answer = ("Parcels arrive in 2-4 days by ZTO. SF Express costs 12 CNY per order, "
              "and the upgrade is 3.5 times faster? No: 1-3 days. Orders paid by 16:00 ship "
              "the same day.")
    g = guard()
    gate = g.gate("en", g.facts([FACTS_EN, FACTS_ZH, "3.5 times"], []))
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(answer)), 12))
    pieces = [answer[a:b] for a, b in zip([0, *cuts], [*cuts, len(answer)])]
    released = [gate.feed(piece) for piece in pieces]
    released.append(gate.end("stop"))
    assert gate.failure is None
    assert "".join(released) == answer
    # A decimal is never split at its point: no release ends with "3." before its "5".
    assert not any(r.endswith("3.") for r in released)
