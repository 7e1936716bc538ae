"""The shop layer's two fixed points on their own (shop/layer.py): plan, then finish; the response
cache behind them; and the plain pass-through of an application without shops."""

from __future__ import annotations

import asyncio

import pytest

from configs.schema import PROJECT_ROOT
from shop.directory import ShopDirectory
from shop.layer import NoShops, ShopLayer, Turn, UnknownShopError
from tests.unit.shop.conftest import SINGLES_DAY, user

# Grounded, single-turn, and no curated answer: answered by the model, and cacheable.
MODEL_QUESTION = "包邮吗？新疆也包邮吗，顺丰要加钱吗"
# Answers to it: one the facts support (faq/shipping-fee), one with an invented price.
FAITHFUL = "中通全国包邮；新疆不满299元补20元运费，顺丰每单加十二元。"
INVENTED = "新疆包邮，顺丰加 10 元。"


class Defaults:
    temperature, top_p, max_tokens = 0.9, 0.8, 77


class AnyShop:
    """A key that may use every shop."""

    def shop_for(self, requested, default):
        return requested if requested is not None else default


def planned(shop, asked: Turn):
    """`shop.plan` is a coroutine (it computes the message's vectors off the event loop)."""
    return asyncio.run(shop.plan(asked))


def turn(text: str, options=("client", 1)) -> Turn:
    return Turn([user(text)], None, "text-model", Defaults(), True, options)


@pytest.fixture(scope="module")
def indexed(local_config) -> ShopDirectory:
    return ShopDirectory(local_config.shops, PROJECT_ROOT, clock=lambda: SINGLES_DAY)


@pytest.fixture
def layer(local_config, indexed) -> ShopLayer:
    """A fresh layer (an empty cache) over shops indexed once for the module."""
    return ShopLayer(local_config.shops, PROJECT_ROOT, directory=indexed)


def test_a_model_answer_is_cached_by_finish_and_replayed_by_the_next_plan(layer):
    shop = layer.select("demo-apparel", AnyShop())
    first = planned(shop, turn(MODEL_QUESTION))
    assert first.reply is None and first.cache_key is not None
    assert first.decision.service.cache == "miss"
    finished = shop.finish(first, FAITHFUL, "stop")
    assert finished.text is None and finished.handoff is None
    assert finished.service["cache"] == "miss"
    assert finished.service["guard"] == {"verdict": "pass", "reasons": []}

    again = planned(shop, turn(MODEL_QUESTION))
    assert again.reply == FAITHFUL and again.replayed
    assert again.decision.service.cache == "hit" and again.cache_key is None


def test_other_client_options_are_another_answer(layer):
    shop = layer.select("demo-apparel", AnyShop())
    shop.finish(planned(shop, turn(MODEL_QUESTION)), FAITHFUL, "stop")
    other = planned(shop, turn(MODEL_QUESTION, options=("client", 2)))
    assert other.reply is None and other.decision.service.cache == "miss"


def test_a_blank_answer_is_substituted_handed_off_and_never_cached(layer):
    shop = layer.select("demo-apparel", AnyShop())
    plan = planned(shop, turn(MODEL_QUESTION))
    finished = shop.finish(plan, "  ", "stop")
    no_answer = layer.config.catalog[0].messages.no_answer.zh
    assert finished.text == no_answer
    assert finished.handoff == "no_answer"
    assert finished.service["handoff"]["reason"] == "no_answer"
    assert layer.cache.stats().entries == 0
    assert planned(shop, turn(MODEL_QUESTION)).reply is None


def test_a_reply_that_is_the_no_answer_message_is_a_late_handoff_and_not_cached(layer):
    shop = layer.select("demo-apparel", AnyShop())
    plan = planned(shop, turn(MODEL_QUESTION))
    declined = layer.config.catalog[0].messages.no_answer.zh
    finished = shop.finish(plan, declined, "stop")
    assert finished.text is None and finished.handoff == "no_answer"
    assert finished.service["sources"] == []
    assert layer.cache.stats().entries == 0


def test_a_hand_off_decided_before_the_model_is_not_counted_again_by_finish(layer):
    shop = layer.select("demo-apparel", AnyShop())
    plan = planned(shop, turn("转人工"))
    assert plan.reply is not None and plan.decision.service.handoff.reason == "requested"
    assert shop.finish(plan, plan.reply, "stop").handoff is None


def test_an_unknown_shop_is_refused_before_the_key_is_asked(layer):
    class Refusing:
        def shop_for(self, requested, default):
            raise AssertionError("the key is asked only about shops that exist")

    with pytest.raises(UnknownShopError):
        layer.select("no-such-shop", Refusing())


def test_without_shops_the_request_passes_through_with_the_model_defaults():
    shops = NoShops()
    plain = shops.select(None, AnyShop())
    sent = [user("hello")]
    plan = planned(plain, Turn(sent, None, "text-model", Defaults(), True))
    assert plan.reply is None and plan.messages is sent
    assert plan.sampling.max_tokens == 77 and plan.enable_thinking is True
    assert plan.shop_id is None and plan.decision is None
    finished = plain.finish(plan, "", "stop")
    assert finished.text is None and finished.service is None
    assert shops.listing() == [] and shops.refresh() == [] and shops.cache_stats() is None
    with pytest.raises(UnknownShopError):
        shops.select("demo-apparel", AnyShop())


def test_an_answer_with_an_invented_number_is_replaced_handed_off_and_never_cached(layer):
    shop = layer.select("demo-apparel", AnyShop())
    plan = planned(shop, turn(MODEL_QUESTION))
    finished = shop.finish(plan, INVENTED, "stop")
    no_answer = layer.config.catalog[0].messages.no_answer.zh
    # Two questions in one message: no FAQ answer is confident, so the no-answer message.
    assert finished.text == finished.tail == no_answer
    assert finished.handoff == "no_answer" and finished.service["sources"] == []
    assert finished.service["guard"] == {"verdict": "replaced",
                                         "reasons": ["unsupported_number"]}
    assert finished.guard.failure.claim == "10 元"
    assert planned(shop, turn(MODEL_QUESTION)).decision.service.cache == "miss"


def test_a_stream_keeps_the_sentences_it_released_before_the_failure(layer):
    shop = layer.select("demo-apparel", AnyShop())
    plan = planned(shop, turn(MODEL_QUESTION))
    gate = shop.gate(plan)
    passed = "中通全国包邮。发货后请留意物流信息。"
    shown = gate.feed(passed[:7]) + gate.feed(passed[7:]) + gate.feed("新疆也包邮，顺丰加 10 元。")
    assert shown == passed  # the failed sentence is never released
    finished = shop.finish(plan, passed + "新疆也包邮，顺丰加 10 元。", "stop", gate)
    no_answer = layer.config.catalog[0].messages.no_answer.zh
    assert finished.tail == "\n\n" + no_answer
    assert finished.text == passed + "\n\n" + no_answer


def test_a_json_body_keeps_whole_sentences_only_before_the_no_answer_message(layer):
    shop = layer.select("demo-apparel", AnyShop())
    plan = planned(shop, turn(MODEL_QUESTION))
    gate = shop.gate(plan)
    # A long sentence goes out a clause at a time; the next clause fails it.
    clause = "中通全国包邮，发货以后请您留意物流信息和手机短信通知，"
    assert gate.feed(clause) == clause
    gate.feed("新疆顺丰加 10 元。")
    finished = shop.finish(plan, clause + "新疆顺丰加 10 元。", "stop", gate)
    no_answer = layer.config.catalog[0].messages.no_answer.zh
    assert finished.tail == "\n\n" + no_answer  # after what the stream showed
    assert finished.text == no_answer  # a body does not start with half a sentence


def test_a_flagging_shop_sends_the_answer_as_written_and_marks_it(layer):
    shop = layer.select("demo-apparel", AnyShop())
    guard = shop.assistant.guard
    guard.mode = "flag"
    try:
        plan = planned(shop, turn(MODEL_QUESTION))
        assert shop.gate(plan) is None  # nothing held back in a stream
        finished = shop.finish(plan, INVENTED, "stop")
    finally:
        guard.mode = "replace"
    assert finished.text is None and finished.tail is None and finished.handoff is None
    assert finished.service["guard"] == {"verdict": "flagged",
                                         "reasons": ["unsupported_number"]}
    assert planned(shop, turn(MODEL_QUESTION)).decision.service.cache == "miss"


def test_an_answer_cut_at_the_token_limit_ends_at_its_last_passed_sentence(layer):
    shop = layer.select("demo-apparel", AnyShop())
    plan = planned(shop, turn(MODEL_QUESTION))
    finished = shop.finish(plan, "中通全国包邮。新疆不满299元补20元运费，顺丰", "length")
    assert finished.text == "中通全国包邮。" and finished.tail is None
    assert finished.handoff is None and finished.service["sources"]  # still grounded
    assert finished.service["guard"] == {"verdict": "replaced", "reasons": ["cut_off"]}
    # With no sentence passed, the no-answer message replaces it.
    cut = shop.finish(planned(shop, turn(MODEL_QUESTION)), "新疆不满299元补20元运费，顺丰",
                      "length")
    assert cut.handoff == "no_answer"


def test_a_json_answer_is_what_a_stream_would_show(layer):
    """Sentences the gate does not show (said twice, the question said back) are not in the
    JSON body either, nor in the cached answer."""
    shop = layer.select("demo-apparel", AnyShop())
    plan = planned(shop, turn(MODEL_QUESTION))
    answer = "新疆也包邮吗，顺丰要加钱吗？" + FAITHFUL + FAITHFUL
    finished = shop.finish(plan, answer, "stop")
    assert finished.text == FAITHFUL and finished.tail is None
    assert finished.service["guard"]["verdict"] == "pass"
    assert planned(shop, turn(MODEL_QUESTION)).reply == FAITHFUL


def tools_turn(text: str, own_tools: str = "tools") -> Turn:
    return Turn([user(text)], None, "text-model", Defaults(), True, ("client", 1),
                own_tools=own_tools)


@pytest.mark.parametrize("own_tools", ["tools", "response_format"])
def test_a_client_with_its_own_tools_gets_the_model_with_persona_and_facts(layer, own_tools):
    shop = layer.select("demo-apparel", AnyShop())
    curated = planned(shop, turn("包郵嗎？"))
    assert curated.reply is not None and curated.decision.service.cache == "faq"
    plan = planned(shop, tools_turn("包郵嗎？", own_tools))
    # The same question: no curated answer, no cache, the model with the shop's facts.
    assert plan.reply is None and plan.cache_key is None and plan.own_tools == own_tools
    assert plan.decision.service.cache == f"bypass_{own_tools}"
    assert "faq/shipping-fee" in plan.messages[0]["content"]
    assert [s.id for s in plan.decision.service.sources][:1] == ["faq/shipping-fee"]
    # A question the shop's facts do not cover still goes to the model (the client's tools
    # may answer it), not to the no-answer message.
    question = "quantum zeppelin xylophone"
    assert planned(shop, turn(question)).decision.service.handoff.reason == "no_answer"
    uncovered = planned(shop, tools_turn(question, own_tools))
    assert uncovered.reply is None and uncovered.decision.service.handoff is None


def test_with_its_own_tools_hand_off_rules_still_apply_and_answers_are_not_rewritten(layer):
    shop = layer.select("demo-apparel", AnyShop())
    handoff = planned(shop, tools_turn("转人工"))
    assert handoff.reply is not None and handoff.decision.service.handoff.reason == "requested"
    plan = planned(shop, tools_turn(MODEL_QUESTION))
    assert shop.gate(plan) is None  # a call or JSON is the backend's, not held for the guard
    for answer in (INVENTED, "", '{"fee": 99}'):
        finished = shop.finish(plan, answer, "stop")
        assert finished.text is None and finished.tail is None and finished.guard is None
        assert finished.service["cache"] == "bypass_tools"
    assert layer.cache_stats().entries == 0


def test_a_forced_shape_reports_the_hand_off_beside_the_models_answer(layer):
    shop = layer.select("demo-apparel", AnyShop())
    forced = Turn([user("转人工")], None, "text-model", Defaults(), True, ("client", 1),
                  own_tools="response_format", answer_forced=True)
    plan = planned(shop, forced)
    # JSON (or a required call) is what the client's code parses: the hand-off is in service.
    assert plan.reply is None and plan.messages
    assert plan.decision.service.handoff.reason == "requested"
    finished = shop.finish(plan, '{"wish": "human"}', "stop")
    assert finished.text is None and finished.service["handoff"]["reason"] == "requested"
