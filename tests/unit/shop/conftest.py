"""Shop-layer fixtures: the demo shops as configured, on the shipped knowledge bases, with a clock
the test sets (promotions depend on it)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from configs.schema import PROJECT_ROOT
from shop.assistant import ShopAssistant
from shop.knowledge.base import KnowledgeBase
from shop.knowledge.meaning import Embedder
from shop.text import COMMERCE_WORDS, Tokenizer

CST = timezone(timedelta(hours=8))
# During the apparel shop's 11.11 sale; before Black Friday and Double 12.
SINGLES_DAY = datetime(2026, 11, 5, 12, tzinfo=CST)


@pytest.fixture(scope="session")
def tokenizer() -> Tokenizer:
    return Tokenizer(COMMERCE_WORDS)


@pytest.fixture(scope="session")
def demo_shops(local_config):
    return {shop.id: shop for shop in local_config.shops.catalog}


@pytest.fixture(scope="session")
def embedder(local_config) -> Embedder:
    """The process's embedding model, as the ingress has it (the demo shops' vectors come from
    the on-disk store after the first run)."""
    meaning = local_config.shops.meaning
    return Embedder.shared(meaning.threads, meaning.query_cache_entries)


@pytest.fixture(scope="session")
def knowledge(demo_shops, tokenizer, embedder):
    return {shop_id: KnowledgeBase(PROJECT_ROOT / shop.knowledge_base, tokenizer, embedder)
            for shop_id, shop in demo_shops.items()}


@pytest.fixture
def apparel(demo_shops, knowledge) -> ShopAssistant:
    return ShopAssistant(demo_shops["demo-apparel"], knowledge["demo-apparel"],
                         clock=lambda: SINGLES_DAY)


@pytest.fixture
def electronics(demo_shops, knowledge) -> ShopAssistant:
    return ShopAssistant(demo_shops["demo-electronics"], knowledge["demo-electronics"],
                         clock=lambda: SINGLES_DAY)


def user(text: str) -> dict:
    return {"role": "user", "content": text}
