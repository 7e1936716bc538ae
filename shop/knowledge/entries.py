"""The knowledge base's unit: one entry, with a stable source id, what it says in each language,
and the texts a shopper's question is matched against."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Literal

from shop.text import Language

# "order": one of the shopper's orders, given to the model for one request (shop/orders/desk.py);
# never in a knowledge base.
EntryKind = Literal["faq", "policy", "product", "promo", "order"]


@dataclass(frozen=True)
class KnowledgeEntry:
    """One fact the assistant may use: a FAQ answer, a policy section, a product, a promotion."""

    id: str  # "<kind>/<id>", e.g. "faq/returns-7-days": the source id in prompts and responses
    kind: EntryKind
    title: dict[Language, str]
    text: dict[Language, str]  # what the model is given, per language
    # What a question is matched against, each indexed as its own BM25 document: for a FAQ
    # entry, its phrasings and title in one document per language (a question resembles its
    # sibling phrasings more than any single one) and its answer per language; for the other
    # kinds, their name or title and text.
    documents: tuple[str, ...]
    # FAQ entries: the questions the shop wrote for it, every language. A message that is one of
    # them (shop.text.question_key) is that entry's question exactly.
    questions: tuple[str, ...] = ()
    valid_from: datetime | None = None  # promotions: retrieved only while valid
    valid_until: datetime | None = None
    # Issue 14's curated answers read this: FAQ answers are approved by the shop as written.
    approved_answer: dict[Language, str] = field(default_factory=dict)

    @cached_property
    def digest(self) -> str:
        """Hash of what the entry says (not of how it is matched): two versions of a knowledge
        base whose entry has the same digest give the model the same fact."""
        said = [self.kind, self.title, self.text, self.approved_answer,
                self.valid_from and self.valid_from.isoformat(),
                self.valid_until and self.valid_until.isoformat()]
        return hashlib.sha256(json.dumps(said, sort_keys=True, ensure_ascii=False)
                              .encode()).hexdigest()[:16]

    def valid_at(self, now: datetime) -> bool:
        if self.valid_from is not None and now < self.valid_from:
            return False
        return self.valid_until is None or now < self.valid_until
