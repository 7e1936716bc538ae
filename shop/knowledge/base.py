"""A shop's knowledge base over time: the index of its folder's current contents, with a version,
rebuilt when the folder changes (no restart).

`refresh_if_changed` is cheap when nothing changed (one stat per file) and is meant to be called
periodically off the event loop; a rebuild happens beside the serving index, which is swapped in
whole, so a request always sees one consistent version. A broken edit keeps the last good version
serving and is reported in `last_error` (a shop owner's typo must not take answers down).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from shop.knowledge.entries import KnowledgeEntry
from shop.knowledge.files import FILES, KnowledgeBaseError, load_entries, load_synonyms
from shop.knowledge.index import KnowledgeIndex, ScoredEntry, WeightedQuery
from shop.knowledge.meaning import Embedder
from shop.text import Tokenizer

logger = logging.getLogger("cs_assistant.shop.knowledge")


@dataclass(frozen=True)
class _Snapshot:
    fingerprint: tuple
    version: str
    index: KnowledgeIndex


class KnowledgeBase:
    """The searchable knowledge of one shop, reloaded when its files change."""

    def __init__(self, folder: Path, tokenizer: Tokenizer, embedder: Embedder | None = None):
        """`embedder`: compare by meaning too (shop/knowledge/meaning.py); None: words only."""
        self.folder = folder
        self._tokenizer = tokenizer
        self.embedder = embedder
        self._lock = threading.Lock()  # one rebuild at a time
        self.last_error: str | None = None
        # Ids of the entries the last reload added, removed or changed (what they say, by
        # KnowledgeEntry.digest): the answers built from them are stale.
        self.last_changed_entries: frozenset[str] = frozenset()
        fingerprint = self._fingerprint()
        self._snapshot = self._build(fingerprint)  # a broken folder at start-up is fatal

    @property
    def version(self) -> str:
        """Content hash of the files: changes exactly when an entry may have changed."""
        return self._snapshot.version

    @property
    def index(self) -> KnowledgeIndex:
        """The index serving now (replaced whole on a reload)."""
        return self._snapshot.index

    @property
    def entries(self):
        return self.index.entries

    def search(self, queries: list[WeightedQuery], now: datetime, limit: int
               ) -> tuple[str, list[ScoredEntry]]:
        """(version searched, best entries): the version names what the answer was built from."""
        snapshot = self._snapshot
        return snapshot.version, snapshot.index.search(queries, now, limit)

    async def prefetch_meaning(self, texts: list[str]) -> bool:
        """Compute the vectors of `texts` off the event loop (retrieval by meaning), so the
        synchronous search that follows finds them cached. False when the embedder's budget
        left them out (the search then goes by words alone)."""
        if self.embedder is None or not texts:
            return True
        return await self.embedder.prefetch(texts)

    def word_count(self, text: str) -> int:
        """Distinct words of `text` as the index sees them (stop words out, no bigrams)."""
        return len(set(self._tokenizer.words_and_bigrams(text)[0]))

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    def exact_question(self, text: str, now: datetime) -> tuple[str, KnowledgeEntry | None]:
        """(version, the FAQ entry whose written question `text` is, or None)."""
        snapshot = self._snapshot
        return snapshot.version, snapshot.index.exact_question(text, now)

    def refresh_if_changed(self) -> bool:
        """Rebuild if a file changed since the last build; True when a new version serves."""
        with self._lock:
            fingerprint = self._fingerprint()
            if fingerprint == self._snapshot.fingerprint:
                return False
            try:
                snapshot = self._build(fingerprint)
            except (KnowledgeBaseError, OSError) as exc:
                if self.last_error != str(exc):
                    logger.error("knowledge base %s not reloaded, still serving version %s: %s",
                                 self.folder, self._snapshot.version, exc)
                self.last_error = str(exc)
                return False
            self.last_error = None
            changed = snapshot.version != self._snapshot.version
            self.last_changed_entries = _changed_entries(self._snapshot.index.entries,
                                                         snapshot.index.entries)
            self._snapshot = snapshot
            if changed:
                logger.info("knowledge base %s reloaded: version %s, %d entries", self.folder,
                            snapshot.version, len(snapshot.index.entries))
            return changed

    def _fingerprint(self) -> tuple:
        parts = []
        for name in FILES:
            try:
                stat = (self.folder / name).stat()
                parts.append((name, stat.st_mtime_ns, stat.st_size))
            except FileNotFoundError:
                parts.append((name, None, None))
        return tuple(parts)

    def _build(self, fingerprint: tuple) -> _Snapshot:
        digest = hashlib.sha256()
        for name in FILES:
            path = self.folder / name
            if path.exists():
                digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        entries = load_entries(self.folder)
        return _Snapshot(fingerprint, digest.hexdigest()[:12],
                         KnowledgeIndex(entries, self._tokenizer, load_synonyms(self.folder),
                                        self.embedder))


def _changed_entries(old, new) -> frozenset[str]:
    before = {entry.id: entry.digest for entry in old}
    after = {entry.id: entry.digest for entry in new}
    return frozenset(entry_id for entry_id in before.keys() | after.keys()
                     if before.get(entry_id) != after.get(entry_id))
