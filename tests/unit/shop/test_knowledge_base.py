"""The knowledge base: the shipped demo shops load with the sizes a fair test needs, retrieval
finds entries in Chinese and English, promotions only inside their window, edits are picked up
with a new version, and broken files are refused with the file and entry named."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from datetime import datetime

import pytest

from configs.schema import PROJECT_ROOT
from shop.knowledge.base import KnowledgeBase
from shop.knowledge.files import KnowledgeBaseError, load_entries
from shop.knowledge.index import KnowledgeIndex, WeightedQuery
from tests.unit.shop.conftest import CST, SINGLES_DAY

APPAREL = PROJECT_ROOT / "configs" / "shops" / "demo-apparel"


def top_ids(knowledge, text: str, now=SINGLES_DAY, history: str | None = None) -> list[str]:
    queries = [WeightedQuery(text)] + ([WeightedQuery(history, 0.5)] if history else [])
    _, found = knowledge.search(queries, now, 3)
    return [hit.entry.id for hit in found]


def test_demo_apparel_is_big_enough_for_a_fair_test():
    kinds = Counter(entry.kind for entry in load_entries(APPAREL))
    assert kinds["faq"] >= 60 and kinds["product"] >= 30 and kinds["promo"] >= 3


def test_every_entry_speaks_both_languages(knowledge):
    for kb in knowledge.values():
        for entry in kb.entries:
            assert entry.title["en"] and entry.title["zh"], entry.id
            assert entry.text["en"] and entry.text["zh"], entry.id


@pytest.mark.parametrize(
    ("shop", "question", "expected"),
    [
        ("demo-apparel", "我的订单什么时候发货？", "faq/shipping-cutoff"),
        ("demo-apparel", "When will my order ship?", "faq/shipping-cutoff"),
        ("demo-apparel", "包邮吗", "faq/shipping-fee"),
        ("demo-apparel", "Is shipping free?", "faq/shipping-fee"),
        ("demo-apparel", "双11有什么优惠", "promo/singles-day-2026"),
        ("demo-apparel", "Classic cotton crew-neck T-shirt price", "product/AP-TEE-001"),
        ("demo-electronics", "能开专票吗", "faq/invoice-vat-special"),
        ("demo-electronics", "how long is the warranty on a power bank", "faq/warranty-length"),
    ],
)
def test_retrieval_finds_the_entry_in_both_languages(knowledge, shop, question, expected):
    assert expected in top_ids(knowledge[shop], question)


def test_a_follow_up_is_resolved_with_the_previous_turn(knowledge):
    kb = knowledge["demo-apparel"]
    alone = top_ids(kb, "那灰色的呢")
    followed = top_ids(kb, "那灰色的呢", history="经典纯棉圆领T恤有哪些颜色")
    assert "product/AP-TEE-001" in followed
    assert alone != followed


@pytest.mark.parametrize(
    ("when", "active"),
    [
        (datetime(2026, 10, 31, 23, 59, tzinfo=CST), False),  # before it starts
        (datetime(2026, 11, 1, 0, 0, tzinfo=CST), True),  # starts is inclusive
        (SINGLES_DAY, True),
        (datetime(2026, 11, 12, 0, 0, tzinfo=CST), False),  # ends is exclusive
        (datetime(2026, 11, 26, 12, 0, tzinfo=CST), False),  # expired
    ],
)
def test_promotions_are_retrieved_only_inside_their_window(knowledge, when, active):
    found = top_ids(knowledge["demo-apparel"], "双11狂欢节 满300减40", now=when)
    assert ("promo/singles-day-2026" in found) == active


def test_an_edit_is_picked_up_with_a_new_version(tmp_path, tokenizer):
    folder = tmp_path / "kb"
    shutil.copytree(APPAREL, folder)
    kb = KnowledgeBase(folder, tokenizer)
    before = kb.version
    assert kb.refresh_if_changed() is False  # nothing changed: no rebuild
    assert "faq/alpaca-wool" not in top_ids(kb, "Do you sell alpaca wool socks?")
    faq = folder / "faq.yaml"
    faq.write_text(faq.read_text(encoding="utf-8") + """
  - id: alpaca-wool
    title: {en: "Alpaca wool socks", zh: "羊驼毛袜子"}
    questions:
      en: ["Do you sell alpaca wool socks?"]
      zh: ["有羊驼毛袜子吗"]
    answer:
      en: "Yes, from December."
      zh: "有的，12月上架。"
""", encoding="utf-8")
    assert kb.refresh_if_changed() is True
    assert kb.version != before
    assert top_ids(kb, "Do you sell alpaca wool socks?")[0] == "faq/alpaca-wool"
    assert top_ids(kb, "有羊驼毛袜子吗")[0] == "faq/alpaca-wool"


def test_a_broken_edit_keeps_the_last_good_version_serving(tmp_path, tokenizer):
    folder = tmp_path / "kb"
    shutil.copytree(APPAREL, folder)
    kb = KnowledgeBase(folder, tokenizer)
    version = kb.version
    time.sleep(0.01)
    (folder / "promotions.yaml").write_text("promotions:\n  - id: Bad Id\n", encoding="utf-8")
    assert kb.refresh_if_changed() is False
    assert kb.version == version and "promotions.yaml" in kb.last_error
    assert top_ids(kb, "包邮吗")[0] == "faq/shipping-fee"


@pytest.mark.parametrize(
    ("file", "content", "named"),
    [
        ("policies.md", "## Shipping\nNo id in this heading.\n", "heading"),
        ("policies.md", "## shipping: Shipping / 发货\nOnly English here.\n", "English and Chinese"),
        ("promotions.yaml", "promotions:\n  - id: sale\n    title: {en: a, zh: b}\n"
         "    starts: '2026-11-01T00:00:00'\n    ends: '2026-11-02T00:00:00+08:00'\n"
         "    details: {en: a, zh: b}\n", "UTC offset"),
        ("products.json", '[{"sku": "X-1", "name": {"en": "a", "zh": "b"}, "category": '
         '{"en": "a", "zh": "b"}, "sizes": ["M"], "colours": [{"en": "red", "zh": "红"}], '
         '"stock": {"blue/M": 1}, "price": 1, "description": {"en": "a", "zh": "b"}}]',
         "stock key"),
        ("faq.yaml", "entries:\n  - id: a\n    title: {en: a}\n", "faq.yaml"),
    ],
)
def test_broken_files_are_refused_naming_the_problem(tmp_path, file, content, named):
    (tmp_path / file).write_text(content, encoding="utf-8")
    with pytest.raises(KnowledgeBaseError) as error:
        load_entries(tmp_path)
    assert named in str(error.value)


def test_relevance_is_low_for_what_the_knowledge_base_never_mentions(tokenizer):
    index = KnowledgeIndex(load_entries(APPAREL), tokenizer)
    known = index.search([WeightedQuery("Is shipping free?")], SINGLES_DAY, 1)[0].relevance
    unknown = index.search([WeightedQuery("quantum zeppelin xylophone")], SINGLES_DAY, 1)
    assert not unknown or unknown[0].relevance < known / 4
