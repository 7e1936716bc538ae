"""A shopper's message rewritten into the shop's own words before it is searched
(shop/knowledge/vocabulary.py), the character n-grams that meet where words do not, and the
shop's vocabulary file."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from shop.knowledge.files import KnowledgeBaseError, load_synonyms
from shop.knowledge.index import KnowledgeIndex, WeightedQuery


@pytest.fixture(scope="module")
def apparel_words(knowledge):
    return knowledge["demo-apparel"].index.vocabulary


@pytest.fixture(scope="module")
def electronics_words(knowledge):
    return knowledge["demo-electronics"].index.vocabulary


@pytest.mark.parametrize(("message", "rewritten"), [
    ("tuihuo 要几天内申请", "退货 要几天内申请"),  # pinyin of a word the shop uses
    ("fahuo了没", "发货了没"),
    ("退或怎么弄", "退货怎么弄"),  # same-sounding typo of the shop's word
    ("how long is the retrun window?", "how long is the return window?"),  # one edit
    ("refnd still not here", "refund still not here"),
    ("衣服起球咋整", "衣服起球怎么办"),  # colloquial spelling
    ("有木有M码", "有没有m码"),
])
def test_misspellings_pinyin_and_slang_become_the_shops_words(apparel_words, message, rewritten):
    assert apparel_words.rewrite(message) == rewritten


@pytest.mark.parametrize("message", [
    "how long is the return window?",  # the shop's own words
    "do you ship to mars",  # not a word of the shop, and nothing one edit away
    "can i pay with bitcoin",
    "do u do it in a diff colour",  # short words are never corrected
    "我还在读大学",  # dictionary words are not typos of the shop's words
])
def test_words_already_right_or_unknown_to_the_shop_are_left_alone(apparel_words, message):
    assert apparel_words.rewrite(message) == message


def test_longer_words_may_be_two_edits_away(electronics_words):
    assert electronics_words.rewrite("warrenty on the watch?") == "warranty on the watch?"
    assert electronics_words.rewrite("is it waterprof") == "is it waterproof"


def test_a_synonym_adds_the_shops_term_and_keeps_the_shoppers(electronics_words):
    rewritten = electronics_words.rewrite("does the portable charger fit in a pocket")
    assert rewritten.startswith("does the portable charger fit in a pocket")
    assert rewritten.endswith(" power bank")
    assert electronics_words.rewrite("power bank size") == "power bank size"


def test_character_grams_skip_stop_characters_and_mark_word_edges(tokenizer):
    grams = tokenizer.char_grams("我的订单 Return")
    assert "订单" in grams and "订" in grams
    assert not [g for g in grams if "我" in g or "的" in g]
    assert ["#re", "ret", "etu", "tur", "urn", "rn#"] == [g for g in grams if g.isascii()]


def test_a_misspelt_question_finds_what_the_spelt_one_finds(knowledge, tokenizer):
    """Through the index by words (meaning reads the raw text and is another test's matter):
    the rewrite comes before both the words and the grams."""
    served = knowledge["demo-apparel"]
    index = KnowledgeIndex(served.entries, tokenizer, load_synonyms(served.folder))
    now = datetime(2026, 11, 5, tzinfo=timezone.utc)

    def top3(text: str) -> list[tuple[str, float]]:
        return [(hit.entry.id, round(hit.relevance, 6))
                for hit in index.search([WeightedQuery(text)], now, 3)]

    assert top3("can i retrun a jacket i dont like") == top3("can i return a jacket i dont like")
    assert top3("tuihuo运费谁出") == top3("退货运费谁出") != []


def test_the_vocabulary_file_is_checked_like_the_others(tmp_path):
    (tmp_path / "vocabulary.yaml").write_text("synonyms:\n  - canonical: hoodie\n")
    with pytest.raises(KnowledgeBaseError, match="vocabulary.yaml: synonyms.0.variants"):
        load_synonyms(tmp_path)
    (tmp_path / "vocabulary.yaml").write_text(
        "synonyms:\n  - {canonical: hoodie, variants: [hoody]}\n")
    assert [(g.canonical, g.variants) for g in load_synonyms(tmp_path)] == [("hoodie", ("hoody",))]
    (tmp_path / "vocabulary.yaml").unlink()
    assert load_synonyms(tmp_path) == []
