"""BM25 retrieval over a shop's entries (bm25s), with a relevance that can be compared to a
threshold.

Each of an entry's documents (its FAQ phrasings per language, its answer, a product's name and
description: shop/knowledge/entries.py) is a BM25 document, and an entry scores as its best
document plus a tenth of the sum of all of them: the best match decides, and an entry that
matches in several places (question and answer) wins a tie. BM25 scores grow with the query's
length, so the score is divided by the query's information, the sum of its terms' IDF: `relevance` is then
about the share of the question's meaning that the entry covers, comparable across short and
long questions, and a term the knowledge base never uses (a product the shop does not sell)
lowers it, which is what makes "nothing relevant" detectable.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from shop.knowledge.entries import KnowledgeEntry
from shop.text import Tokenizer, question_key

# Weight of an entry's summed document scores next to its best one (chosen on the development
# data of scripts/tune_retrieval.py: held-out FAQ phrasings found in the top 3 rose from 0.86 to
# 0.89 (apparel) and 0.89 to 0.94 (electronics) with per-language phrasing documents and 0.1).
SUM_WEIGHT = 0.1


@dataclass(frozen=True)
class ScoredEntry:
    entry: KnowledgeEntry
    relevance: float


@dataclass(frozen=True)
class WeightedQuery:
    """Text to search for and its weight (the latest turn 1, earlier turns less)."""

    text: str
    weight: float = 1.0


class KnowledgeIndex:
    """An immutable index of one version of a knowledge base."""

    def __init__(self, entries: list[KnowledgeEntry], tokenizer: Tokenizer):
        import bm25s

        self.entries = tuple(entries)
        self._tokenizer = tokenizer
        documents: list[list[str]] = []
        starts: list[int] = []
        for entry in self.entries:
            starts.append(len(documents))
            documents.extend(tokenizer.tokens(text) for text in entry.documents)
        self._starts = np.array(starts, dtype=np.int64)
        self._retriever = bm25s.BM25()
        self._empty = not documents
        if not self._empty:
            self._retriever.index(documents, show_progress=False)
        # IDF as bm25s's default (Lucene) computes it, for the query-information denominator.
        n = len(documents)
        frequency = Counter(term for doc in documents for term in set(doc))
        self._idf = {term: math.log(1 + (n - df + 0.5) / (df + 0.5))
                     for term, df in frequency.items()}
        self._unknown_idf = math.log(1 + (n + 0.5) / 0.5)
        # A question written for two entries names neither: it is left out.
        by_key: dict[str, int | None] = {}
        for i, entry in enumerate(self.entries):
            for key in {question_key(q) for q in entry.questions} - {""}:
                by_key[key] = i if key not in by_key else None
        self._by_question = {key: i for key, i in by_key.items() if i is not None}
        self._dated = np.array([e.valid_from is not None or e.valid_until is not None
                                for e in self.entries], dtype=bool)

    def exact_question(self, text: str, now: datetime) -> KnowledgeEntry | None:
        """The entry one of whose written questions `text` is (same question_key), if valid."""
        i = self._by_question.get(question_key(text))
        if i is None or not self.entries[i].valid_at(now):
            return None
        return self.entries[i]

    def search(self, queries: list[WeightedQuery], now: datetime, limit: int) -> list[ScoredEntry]:
        """The best `limit` entries valid at `now`, most relevant first (relevance > 0)."""
        if self._empty or not self.entries:
            return []
        combined = np.zeros(len(self.entries), dtype=np.float64)
        information = 0.0
        for query in queries:
            words, bigrams = self._tokenizer.words_and_bigrams(query.text)
            if not (words or bigrams) or query.weight <= 0:
                continue
            # An unknown word is meaning the knowledge base lacks (a product it does not sell);
            # an unknown bigram is only a segmentation alternative, so it adds nothing.
            information += query.weight * (
                sum(self._idf.get(t, self._unknown_idf) for t in words)
                + sum(self._idf.get(t, 0.0) for t in bigrams))
            known = [t for t in words + bigrams if t in self._idf]
            if known:
                scores = self._retriever.get_scores(known)
                entry_scores = (np.maximum.reduceat(scores, self._starts)
                                + SUM_WEIGHT * np.add.reduceat(scores, self._starts))
                combined += query.weight * entry_scores
        if information == 0.0:
            return []
        if self._dated.any():
            for i in np.flatnonzero(self._dated):
                if not self.entries[i].valid_at(now):
                    combined[i] = 0.0
        relevance = combined / information
        count = min(limit, len(relevance))
        best = np.argpartition(-relevance, count - 1)[:count]
        best = best[np.argsort(-relevance[best], kind="stable")]
        return [ScoredEntry(self.entries[i], float(relevance[i])) for i in best
                if relevance[i] > 0]
