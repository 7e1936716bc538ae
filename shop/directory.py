"""All shops of an application: their assistants by id, the public listing, and the periodic
check of their knowledge-base folders."""

from __future__ import annotations

from pathlib import Path

from shop.assistant import Clock, ShopAssistant, utc_now
from shop.config import ShopsConfig
from shop.knowledge.base import KnowledgeBase
from shop.knowledge.meaning import Embedder
from shop.text import COMMERCE_WORDS, Tokenizer


class UnknownShopError(LookupError):
    def __init__(self, shop_id: str):
        super().__init__(shop_id)
        self.shop_id = shop_id


class ShopDirectory:
    """Built once per ingress replica (indexing takes about a second per shop on 2 cores)."""

    def __init__(self, config: ShopsConfig, base_dir: Path, clock: Clock = utc_now):
        self.config = config
        tokenizer = Tokenizer(COMMERCE_WORDS)  # shared: jieba's dictionary is ~50 MB
        meaning = config.meaning
        # Shared too: one embedding model per process, whatever the shops.
        self.embedder = Embedder.shared(meaning.threads, meaning.query_cache_entries,
                                        meaning.max_wait_ms / 1000, meaning.max_queued) \
            if meaning.enabled else None
        self._assistants = {}
        for shop in config.catalog:
            folder = Path(shop.knowledge_base)
            if not folder.is_absolute():
                folder = base_dir / folder
            self._assistants[shop.id] = ShopAssistant(
                shop, KnowledgeBase(folder, tokenizer, self.embedder), clock)

    def get(self, shop_id: str | None) -> ShopAssistant:
        """The shop a request names (X-Shop-Id), or the default one when it names none."""
        assistant = self._assistants.get(self.config.default if shop_id is None else shop_id)
        if assistant is None:
            raise UnknownShopError(shop_id or "")
        return assistant

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._assistants)

    def listing(self) -> list[dict]:
        """GET /v1/shops: ids, names and languages; the demo shoppers where a shop has them
        (the chat page's "Sign in as"), nothing else."""
        return [{"id": s.id, "name": s.name, "languages": list(s.languages),
                 **({"demo_shoppers": list(s.identity.demo_shoppers)}
                    if s.identity is not None and s.identity.demo_shoppers else {})}
                for s in self.config.catalog]

    def refresh(self) -> dict[str, frozenset[str]]:
        """Reload every knowledge base whose files changed (blocking: call off the event
        loop): for each shop now serving a new version, the ids of the entries that changed."""
        return {shop_id: assistant.knowledge.last_changed_entries
                for shop_id, assistant in self._assistants.items()
                if assistant.knowledge.refresh_if_changed()}
