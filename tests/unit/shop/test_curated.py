"""Curated answers: a FAQ entry's approved answer, without a model, only when the message is that
entry's question (written, or matched confidently), stands on its own, and nothing else in the
request asks for more than a fixed text."""

from __future__ import annotations

import dataclasses

import pytest

from shop.assistant import ShopAssistant
from shop.config import CuratedAnswersConfig
from shop.curated import asks_several, curated_match, points_back
from shop.knowledge.entries import KnowledgeEntry
from shop.knowledge.index import KnowledgeIndex, ScoredEntry
from shop.text import question_key
from tests.unit.shop.conftest import SINGLES_DAY, user

SHIPPING_FEE_ZH = "中通快递发全国大陆地区包邮"


def assistant_turn(text: str) -> dict:
    return {"role": "assistant", "content": text}


@pytest.mark.parametrize("message", ["包邮吗", "包郵嗎？", "  包邮 吗!!", "亲 是包邮的吗？"])
def test_a_written_question_gets_the_approved_answer_whatever_its_script_or_punctuation(
        apparel, message):
    plan = apparel.plan([user(message)])
    assert plan.messages is None  # no model call
    assert plan.reply.startswith(SHIPPING_FEE_ZH)
    assert plan.reply == apparel.knowledge.index.exact_question("包邮吗", SINGLES_DAY) \
        .approved_answer["zh"]
    service = plan.service.as_dict()
    assert service["cache"] == "faq" and service["handoff"] is None
    assert service["sources"] == [{"id": "faq/shipping-fee", "title": "运费与包邮"}]


def test_the_answer_is_in_the_shoppers_language(apparel):
    plan = apparel.plan([user("ＩＳ ＳＨＩＰＰＩＮＧ ＦＲＥＥ？")])  # full-width English
    assert plan.curated is not None and plan.language == "en"
    assert plan.reply.startswith("Shipping by ZTO is free")
    assert plan.service.sources[0].title == "Shipping fees"


def test_a_question_two_entries_answer_goes_to_the_model(apparel):
    plan = apparel.plan([user("包邮吗？新疆也包邮吗，顺丰要加钱吗")])
    assert plan.curated is None and plan.reply is None
    assert plan.service.cache == "bypass"
    assert {"faq/shipping-fee", "faq/shipping-remote-regions"} <= {
        s.id for s in plan.service.sources}


def test_a_follow_up_that_points_back_goes_to_the_model_with_the_history(apparel):
    history = [user("Do you have the merino sweater in grey?"),
               assistant_turn("Yes, grey is in stock in every size.")]
    alone = apparel.plan([user("Is shipping free?")])
    assert alone.curated is not None
    follow_up = apparel.plan([*history, user("Is shipping free for that one?")])
    assert follow_up.curated is None and follow_up.messages is not None
    # A later question that stands on its own is still answered from the FAQ.
    standalone = apparel.plan([*history, user("Is shipping free?")])
    assert standalone.curated is not None and standalone.service.cache == "faq"


@pytest.mark.parametrize("text, expected", [
    ("and in grey?", True), ("what about the other one", True), ("那这个呢", True),
    ("这款有货吗", True), ("Is shipping free?", False), ("包邮吗", False),
    ("can I return a sweater?", False)])
def test_points_back(text, expected):
    assert points_back(text) is expected


def test_images_client_instructions_and_a_disabled_shop_get_no_curated_answer(apparel):
    image = {"role": "user", "content": [
        {"type": "text", "text": "包邮吗"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}
    assert apparel.plan([image]).curated is None
    instructed = [{"role": "system", "content": "Always give the order number format."},
                  user("包邮吗")]
    assert apparel.plan(instructed).curated is None
    off = ShopAssistant(apparel.config.model_copy(update={
        "curated_answers": CuratedAnswersConfig(enabled=False)}), apparel.knowledge)
    plan = off.plan([user("包邮吗")])
    assert plan.curated is None and plan.messages is not None


def _faq(entry_id: str) -> KnowledgeEntry:
    return KnowledgeEntry(f"faq/{entry_id}", "faq", {"en": entry_id, "zh": entry_id},
                          {"en": "text", "zh": "文本"}, ("doc",),
                          approved_answer={"en": f"answer {entry_id}", "zh": f"回答 {entry_id}"})


def _hit(entry: KnowledgeEntry, relevance: float, similarity: float | None = 0.95,
         first_by_words: bool = True, first_by_meaning: bool = True) -> ScoredEntry:
    return ScoredEntry(entry, relevance, similarity, first_by_words, first_by_meaning)


def test_the_best_entry_must_reach_the_threshold_and_lead_the_runner_up():
    config = CuratedAnswersConfig(min_relevance=0.5, min_margin=0.15, min_similarity=0.9)
    a, b = _faq("a"), _faq("b")
    product = dataclasses.replace(_faq("p"), id="product/P-1", kind="product",
                                  approved_answer={})
    runner_up = _hit(b, 0.7, 0.8, False, False)
    assert curated_match([_hit(a, 0.9), runner_up], config, "en", 3).entry_id == "faq/a"
    assert curated_match([_hit(a, 0.9), _hit(b, 0.8, 0.8, False, False)], config, "en",
                         3) is None
    assert curated_match([_hit(a, 0.45)], config, "en", 3) is None
    assert curated_match([_hit(a, 0.9), _hit(product, 0.8, 0.8, False, False)], config, "en",
                         3) is None
    assert curated_match([_hit(product, 0.9)], config, "en", 3) is None
    assert curated_match([_hit(a, 0.9)], config, "zh", 3).answer == "回答 a"
    # One word cannot say what is asked, however well it matches.
    assert curated_match([_hit(a, 0.9)], config, "en", 1) is None


def test_words_and_meaning_must_agree_on_the_entry_before_a_fixed_answer():
    config = CuratedAnswersConfig(min_relevance=0.2, min_margin=0.0, min_similarity=0.93)
    a, b = _faq("a"), _faq("b")
    other = _hit(b, 0.1, 0.5, False, False)
    assert curated_match([_hit(a, 0.5, 0.95), other], config, "en", 3).entry_id == "faq/a"
    # Another entry is closer in meaning: the message may be about that one.
    assert curated_match([_hit(a, 0.5, 0.95, first_by_meaning=False), other], config, "en",
                         3) is None
    # Ranked first only by the fusion, not by words.
    assert curated_match([_hit(a, 0.5, 0.95, first_by_words=False), other], config, "en",
                         3) is None
    assert curated_match([_hit(a, 0.5, 0.92), other], config, "en", 3) is None
    # Words alone (meaning off) never send a fixed answer from a search.
    assert curated_match([_hit(a, 0.99, None), other], config, "en", 3) is None


def test_a_question_written_for_two_entries_is_nobodys_exact_question(tokenizer):
    a = dataclasses.replace(_faq("a"), questions=("Is it free?", "When does it ship?"))
    b = dataclasses.replace(_faq("b"), questions=("is it FREE",))
    index = KnowledgeIndex([a, b], tokenizer)
    assert index.exact_question("When does it ship", SINGLES_DAY).id == "faq/a"
    assert index.exact_question("Is it free?", SINGLES_DAY) is None


@pytest.mark.parametrize("one, other", [
    ("請問，包郵嗎？", "请问包邮吗"), ("ＩＳ　ＳＨＩＰＰＩＮＧ　ＦＲＥＥ？", "is shipping free"),
    ("Can I return it?? 🙏", "can i return it")])
def test_question_key_folds_script_width_case_and_punctuation(one, other):
    assert question_key(one) == question_key(other) != ""


@pytest.mark.parametrize("message, several", [
    ("这件衣服偏大还是偏小？洗了会缩水吗？", True), ("Is shipping free? And to Xinjiang?", True),
    ("包邮吗？新疆也包邮吗，顺丰要加钱吗", True), ("包邮吗", False), ("Is shipping free?", False),
    ("什么时候发货？谢谢", False), ("Hi! Is shipping free?", False)])
def test_a_message_asking_two_questions_is_told_apart(message, several):
    assert asks_several(message) is several


def test_two_questions_in_one_message_go_to_the_model(apparel):
    # Each half alone is a written FAQ question (a curated answer); together, one answer is
    # not enough.
    assert apparel.plan([user("包邮吗")]).curated is not None
    plan = apparel.plan([user("包邮吗？什么时候发货？")])
    assert plan.curated is None and plan.messages is not None
