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

With a meaning index (shop/knowledge/meaning.py), each entry's similarity in meaning to each
query is added: score = relevance + MEANING_WEIGHT * sum(weight * similarity), so an entry the
shopper describes in other words (a typo, slang, the other language) ranks with the ones that
share words. `relevance` and `similarity` stay separate in the results, for the thresholds.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from shop.knowledge.entries import KnowledgeEntry
from shop.knowledge.meaning import Embedder, MeaningIndex
from shop.knowledge.vocabulary import SynonymGroup, Vocabulary
from shop.text import Tokenizer, question_key

# Weight of an entry's summed document scores next to its best one (chosen on the development
# data of scripts/tune_retrieval.py: held-out FAQ phrasings found in the top 3 rose from 0.86 to
# 0.89 (apparel) and 0.89 to 0.94 (electronics) with per-language phrasing documents and 0.1).
SUM_WEIGHT = 0.1
# Weight of the character n-gram relevance next to the word relevance (dev halves of both
# labelled sets: scripts/tune_retrieval.py).
GRAM_WEIGHT = 0.5
# Weight of meaning next to words (dev halves of both labelled sets, 267 answerable cases:
# hit@1 0.775 -> 0.816, hit@3 0.929 -> 0.951 at 2.0; 0.5: 0.783/0.936, 1: 0.805/0.940,
# 3: 0.805/0.955; reciprocal-rank fusion and z-scored sums did no better).
MEANING_WEIGHT = 2.0


@dataclass(frozen=True)
class ScoredEntry:
    entry: KnowledgeEntry
    relevance: float  # by words: the share of the query's information the entry covers
    # By meaning, to the first (latest) query: cosine similarity, None without a meaning index.
    similarity: float | None = None
    # Whether no other valid entry beats this one by words, and by meaning (the curated rule
    # sends a fixed answer only when both agree).
    first_by_words: bool = False
    first_by_meaning: bool = False


@dataclass(frozen=True)
class WeightedQuery:
    """Text to search for and its weight (the latest turn 1, earlier turns less)."""

    text: str
    weight: float = 1.0


class _Field:
    """One BM25 view of every entry's documents (words, or character n-grams): the entries'
    scores for a query's terms, and the IDF that measures a query's information."""

    def __init__(self, documents: list[list[str]], starts: np.ndarray):
        import bm25s

        self._starts = starts
        self._retriever = bm25s.BM25()
        self.empty = not documents
        if not self.empty:
            self._retriever.index(documents, show_progress=False)
        # IDF as bm25s's default (Lucene) computes it, for the query-information denominator.
        n = len(documents)
        frequency = Counter(term for doc in documents for term in set(doc))
        self.idf = {term: math.log(1 + (n - df + 0.5) / (df + 0.5))
                    for term, df in frequency.items()}
        self.unknown_idf = math.log(1 + (n + 0.5) / 0.5)

    def entry_scores(self, terms: list[str]) -> np.ndarray | None:
        """Each entry's score: its best document plus SUM_WEIGHT of all of them."""
        known = [t for t in terms if t in self.idf]
        if not known:
            return None
        scores = self._retriever.get_scores(known)
        return (np.maximum.reduceat(scores, self._starts)
                + SUM_WEIGHT * np.add.reduceat(scores, self._starts))


class KnowledgeIndex:
    """An immutable index of one version of a knowledge base."""

    def __init__(self, entries: list[KnowledgeEntry], tokenizer: Tokenizer,
                 synonyms: Iterable[SynonymGroup] = (), embedder: Embedder | None = None):
        self.entries = tuple(entries)
        self.meaning = MeaningIndex(self.entries, embedder) if embedder is not None else None
        self._tokenizer = tokenizer
        self.vocabulary = Vocabulary(self.entries, tokenizer, synonyms)
        words: list[list[str]] = []
        grams: list[list[str]] = []
        starts: list[int] = []
        for entry in self.entries:
            starts.append(len(words))
            for text in entry.documents:
                words.append(tokenizer.tokens(text))
                grams.append(tokenizer.char_grams(text))
        starts_array = np.array(starts, dtype=np.int64)
        self._words = _Field(words, starts_array)
        self._grams = _Field(grams, starts_array)
        self._empty = self._words.empty
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
        """The best `limit` entries valid at `now`, best score first (score > 0).

        Relevance is the words' share of the query's information an entry covers (see the module
        doc) plus GRAM_WEIGHT times the same share in character n-grams, which meet where words
        do not: a misspelling, a segmentation that differs, a word inside a compound."""
        if self._empty or not self.entries:
            return []
        combined = np.zeros(len(self.entries), dtype=np.float64)
        information = gram_information = 0.0
        by_grams = np.zeros(len(self.entries), dtype=np.float64)
        for query in queries:
            text = self.vocabulary.rewrite(query.text)
            words, bigrams = self._tokenizer.words_and_bigrams(text)
            if not (words or bigrams) or query.weight <= 0:
                continue
            idf = self._words.idf
            # An unknown word is meaning the knowledge base lacks (a product it does not sell);
            # an unknown bigram is only a segmentation alternative, so it adds nothing.
            information += query.weight * (
                sum(idf.get(t, self._words.unknown_idf) for t in words)
                + sum(idf.get(t, 0.0) for t in bigrams))
            scores = self._words.entry_scores(words + bigrams)
            if scores is not None:
                combined += query.weight * scores
            grams = self._tokenizer.char_grams(text)
            gram_information += query.weight * sum(self._grams.idf.get(t, 0.0) for t in grams)
            scores = self._grams.entry_scores(grams)
            if scores is not None:
                by_grams += query.weight * scores
        if information == 0.0 and self.meaning is None:
            return []
        relevance = combined / information if information else combined
        if gram_information > 0.0:
            relevance += GRAM_WEIGHT * by_grams / gram_information
        score = relevance.copy()
        similarity = None
        if self.meaning is not None:
            meant = [(query.weight, self.meaning.similarities(query.text)) for query in queries
                     if query.weight > 0 and query.text.strip()]
            # A message whose vector is not at hand (the embedder's budget) goes by words alone.
            if meant and all(similarities is not None for _, similarities in meant):
                similarity = meant[0][1]
                for weight, similarities in meant:
                    score += MEANING_WEIGHT * weight * np.maximum(similarities, 0.0)
        valid = np.ones(len(self.entries), dtype=bool)
        if self._dated.any():
            for i in np.flatnonzero(self._dated):
                valid[i] = self.entries[i].valid_at(now)
        if not valid.any():
            return []
        score[~valid] = 0.0
        count = min(limit, len(score))
        best = np.argpartition(-score, count - 1)[:count]
        best = best[np.argsort(-score[best], kind="stable")]
        first_by_words = int(np.argmax(np.where(valid, relevance, -np.inf)))
        first_by_meaning = (int(np.argmax(np.where(valid, similarity, -np.inf)))
                            if similarity is not None else -1)
        return [ScoredEntry(self.entries[i], float(relevance[i]),
                            None if similarity is None else float(similarity[i]),
                            i == first_by_words and relevance[i] > 0, i == first_by_meaning)
                for i in best if score[i] > 0]
