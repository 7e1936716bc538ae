"""Retrieval by meaning (shop/knowledge/meaning.py): the bundled embedding model on the demo
shops, its worker's batching and errors, the query-vector LRU and the on-disk entry vectors."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime, timezone

import numpy as np
import pytest

from shop.knowledge.index import WeightedQuery
from shop.knowledge.meaning import MAX_BATCH, Embedder, MeaningIndex

NOW = datetime(2026, 11, 5, tzinfo=timezone.utc)


class CountingModel:
    """Stands in for the C model where the worker's logic is tested: counts calls, can hold the
    first call until released, and can fail."""

    dim = 4

    def __init__(self, hold_first: bool = False, fail: bool = False):
        self.calls: list[list[str]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self._hold = hold_first
        self._fail = fail

    def encode(self, texts, is_query):
        self.calls.append(list(texts))
        if self._hold and len(self.calls) == 1:
            self.entered.set()
            self.release.wait(10)
        if self._fail:
            raise RuntimeError("engine broke")
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            out[i, len(text) % self.dim] = 1.0
        return out


def embedder_with(model: CountingModel, **kwargs) -> Embedder:
    embedder = Embedder(**kwargs)
    embedder._model = model
    embedder.dim = model.dim
    return embedder


@pytest.mark.parametrize("shop_id, message, entry", [
    # The examples: Chinese without the FAQ's words, and an English typo.
    ("demo-apparel", "衣服尺码不合适的话可以退吗？", "faq/returns-7-days"),
    ("demo-apparel", "can i retrun a jacket if i dont like it", "faq/returns-7-days"),
])
def test_a_paraphrase_finds_its_entry_among_the_facts(knowledge, shop_id, message, entry):
    found = knowledge[shop_id].index.search([WeightedQuery(message)], NOW, 3)
    assert entry in [hit.entry.id for hit in found]


def test_the_same_question_in_the_other_language_is_closest_to_the_same_entry(knowledge):
    meaning = knowledge["demo-apparel"].index.meaning
    entries = knowledge["demo-apparel"].entries
    english = entries[int(np.argmax(meaning.similarities("how long do I have to return it")))]
    chinese = entries[int(np.argmax(meaning.similarities("多久之内可以退货")))]
    assert english.id == chinese.id


def test_waiting_messages_are_embedded_together_up_to_the_batch_bound():
    model = CountingModel(hold_first=True)
    embedder = embedder_with(model)
    first = embedder._submit(["first"], True)
    assert model.entered.wait(10)
    waiting = [embedder._submit([f"message {i}"], True) for i in range(MAX_BATCH + 1)]
    model.release.set()
    assert first.result(10).shape == (1, 4)
    assert [len(f.result(10)) for f in waiting] == [1] * (MAX_BATCH + 1)
    assert [len(call) for call in model.calls] == [1, MAX_BATCH, 1]


def test_a_repeated_message_is_not_embedded_again_and_the_cache_is_bounded():
    model = CountingModel()
    embedder = embedder_with(model, query_cache_entries=2)
    asyncio.run(embedder.prefetch(["a", "bb"]))
    assert embedder.cached("a") is not None and len(model.calls) == 1
    embedder.query_vectors(["a", "bb"])
    assert len(model.calls) == 1  # both cached
    embedder.query_vectors(["ccc"])  # evicts the least recently used ("a")
    assert embedder.cached("a") is None and embedder.cached("ccc") is not None


def test_an_engine_error_reaches_every_blocking_waiter():
    embedder = embedder_with(CountingModel(fail=True))
    with pytest.raises(RuntimeError, match="engine broke"):
        embedder.query_vectors(["x"])
    with pytest.raises(RuntimeError, match="engine broke"):
        embedder.entry_vectors(["y"])


def test_entry_vectors_are_read_back_from_the_store_after_a_restart(tmp_path):
    store = tmp_path / "vectors.sqlite"
    first_model = CountingModel()
    first = embedder_with(first_model, store_path=store)
    texts = ["退货要多久", "is shipping free", "退货要多久"]
    vectors = first.entry_vectors(texts)
    assert vectors.shape == (3, 4) and sum(len(c) for c in first_model.calls) == 2
    restarted_model = CountingModel()
    restarted = embedder_with(restarted_model, store_path=store)
    assert np.array_equal(restarted.entry_vectors(texts), vectors)
    assert restarted_model.calls == []
    # Answers and descriptions are passages: another vector, stored apart.
    restarted.entry_vectors(["is shipping free"], passages=True)
    assert restarted_model.calls == [["is shipping free"]]


def test_an_unwritable_store_costs_time_not_answers(tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    model = CountingModel()
    embedder = embedder_with(model, store_path=blocked / "vectors.sqlite")
    assert embedder.entry_vectors(["a", "b"]).shape == (2, 4)


def test_each_entry_scores_as_its_closest_view():
    class Entry:
        def __init__(self, kind, questions, title, text=None):
            self.kind, self.questions, self.title = kind, questions, title
            self.text = text or {}

    model = CountingModel()
    embedder = embedder_with(model)
    entries = [Entry("faq", ("ab", "abcd"), {"en": "abc"}),
               Entry("product", (), {"en": "x"}, {"en": "a"})]
    index = MeaningIndex(entries, embedder)
    # "abcd" (len 4 -> axis 0) is one of the FAQ's views; the product has "x" and "a" (axis 1).
    assert list(index.similarities("wxyz")) == [1.0, 0.0]
    assert list(index.similarities("   ")) == [-1.0, -1.0]


def test_a_message_stuck_behind_a_busy_worker_goes_by_words_after_its_wait():
    model = CountingModel(hold_first=True)
    embedder = embedder_with(model, max_wait_s=0.05)
    assert asyncio.run(embedder.prefetch(["slow"])) is False and embedder.skipped == 1
    model.release.set()
    # The vector still arrives, and the next try of the same question finds it.
    for _ in range(100):
        if embedder.cached("slow") is not None:
            break
        threading.Event().wait(0.05)
    assert embedder.cached("slow") is not None
    assert asyncio.run(embedder.prefetch(["slow"])) is True


def test_a_burst_beyond_the_queue_bound_is_not_queued():
    model = CountingModel(hold_first=True)
    embedder = embedder_with(model, max_wait_s=5, max_queued=2)

    async def burst():
        first = asyncio.ensure_future(embedder.prefetch(["a", "b"]))
        await asyncio.sleep(0.05)
        refused = await embedder.prefetch(["c"])
        model.release.set()
        return refused, await first

    assert asyncio.run(burst()) == (False, True)
    assert embedder.cached("c") is None and embedder.skipped == 1


def test_on_the_event_loop_a_vector_not_prefetched_is_not_computed():
    model = CountingModel()
    embedder = embedder_with(model)
    index = MeaningIndex([], embedder)

    async def search_on_the_loop():
        return embedder.query_vector("never prefetched"), index.similarities("x")

    vector, _ = asyncio.run(search_on_the_loop())
    assert vector is None and model.calls == []
    assert embedder.query_vector("never prefetched") is not None  # off the loop: computed


def test_a_broken_embedder_leaves_the_message_to_words_not_to_an_error():
    embedder = embedder_with(CountingModel(fail=True))
    assert asyncio.run(embedder.prefetch(["x"])) is False and embedder.skipped == 1


def test_only_messages_the_plan_searches_are_embedded(apparel):
    # A written FAQ question is answered as written, a hand-off without search: no vector.
    assert apparel.meaning_queries([{"role": "user", "content": "包邮吗"}]) == []
    assert apparel.meaning_queries([{"role": "user", "content": "转人工"}]) == []
    # The latest message as the plan searches it: normalised (full-width marks folded).
    assert apparel.meaning_queries([{"role": "user", "content": "衣服尺码不合适的话可以退吗？"}]) \
        == ["衣服尺码不合适的话可以退吗?"]
    follow_up = [{"role": "user", "content": "包邮吗"}, {"role": "assistant", "content": "包邮。"},
                 {"role": "user", "content": "那新疆呢？"}]
    assert apparel.meaning_queries(follow_up) == ["那新疆呢?", "包邮吗"]
