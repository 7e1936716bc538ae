"""A shop's vocabulary, and a shopper's message rewritten into it before it is searched.

Shoppers write "retrun", "tuihuo", "退或" and "咋整"; the knowledge base says "return", "退货" and
"怎么办". BM25 only meets words it knows, so the latest message is rewritten, conservatively, into
the knowledge base's own words first (`Vocabulary.rewrite`):

1. colloquial Chinese to standard (`COLLOQUIAL_ZH`: 咋 -> 怎么, 木有 -> 没有, 啥 -> 什么): a short
   shared table of spellings that mean exactly the standard word;
2. a Latin word the knowledge base does not use that is the toneless pinyin of a Chinese word it
   does use ("tuihuo" -> 退货, "baoyou" -> 包邮);
3. an English word the knowledge base does not use, one edit (two for words of 8+ letters) from
   one it does ("retrun" -> "return", "warrenty" -> "warranty"); short words are left alone;
4. a run of 2-3 Chinese characters that is neither in the knowledge base nor a word of jieba's
   dictionary, with the same pinyin as a word the knowledge base uses ("退或" -> "退货");
5. the shop's own synonyms and product nicknames (`vocabulary.yaml`, docs/design/
   shop-knowledge-base.md): every variant found adds its canonical term.

Steps 1-4 replace the word (a misspelling is noise, and an unknown word would count against
the relevance as meaning the shop lacks); step 5 adds the canonical term and keeps the shopper's.
Each step only acts on what the knowledge base does not know, so a message in the shop's own
words is searched as written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache
from dataclasses import dataclass

from shop.knowledge.entries import KnowledgeEntry
from shop.text import NormalizedText, Tokenizer, normalize

# Spellings that mean exactly the standard word (net slang and dialect spellings shoppers use).
# Longest first at use, so 有木有 is handled before 木有.
COLLOQUIAL_ZH = {
    "有木有": "有没有", "木有": "没有", "米有": "没有", "莫有": "没有", "冇": "没有",
    "肿么": "怎么", "咋整": "怎么办", "咋办": "怎么办", "咋弄": "怎么弄", "咋样": "怎么样",
    "咋": "怎么", "神马": "什么", "啥时候": "什么时候", "啥": "什么", "酱紫": "这样子",
    "童鞋": "同学", "稀饭": "喜欢", "灰常": "非常", "偶们": "我们", "介个": "这个",
    "滴": "的", "伐": "吗", "嘛时候": "什么时候", "多会儿": "什么时候", "几时": "什么时候",
}
_COLLOQUIAL = re.compile("|".join(sorted(map(re.escape, COLLOQUIAL_ZH), key=len, reverse=True)))
_LATIN = re.compile(r"[a-z]+")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]+")
# English words never corrected: function words a shop's texts may lack, and words whose near
# neighbour in a shop's vocabulary means something else.
_KEEP_EN = frozenset(
    "a an the and or but if so to of in on at for from by with about as into than then this that "
    "these those there here what which who when where why how can could would should will shall "
    "may might must do does did done have has had is are was were be been am not no yes you your "
    "me my we our they them their it its he she his her i im its ok okay pls plz thx thanks hi "
    "hello hey just also still only very too some any all one two three get got want need like "
    "know let make made take took see say said tell told give gave".split())


@dataclass(frozen=True)
class SynonymGroup:
    """One canonical term of the shop and the other ways shoppers say it."""

    canonical: str
    variants: tuple[str, ...]


class Vocabulary:
    """The words of one version of a shop's knowledge base, for rewriting messages into them."""

    def __init__(self, entries: Iterable[KnowledgeEntry], tokenizer: Tokenizer,
                 synonyms: Iterable[SynonymGroup] = ()):
        texts = [normalize(text) for entry in entries for text in entry.documents]
        self.english = frozenset(w for text in texts for w in _LATIN.findall(text))
        self._english_by_length: dict[int, list[str]] = {}
        for word in self.english:
            if len(word) >= 3:
                self._english_by_length.setdefault(len(word), []).append(word)
        runs = [run for text in texts for run in _CJK_RUN.findall(text)]
        # Every Chinese run, bigram and trigram the knowledge base writes: what is not a typo.
        self._chinese_grams = frozenset(run[i:i + n] for run in runs for n in (2, 3)
                                        for i in range(len(run) - n + 1)) | frozenset(runs)
        counts: dict[str, int] = {}
        for run in runs:
            for word in tokenizer.segment(run):
                if 2 <= len(word) <= 4:
                    counts[word] = counts.get(word, 0) + 1
        # One word per sound: the one the knowledge base uses most.
        self._by_pinyin: dict[str, str] = {}
        for word in sorted(counts, key=lambda w: (-counts[w], w)):
            self._by_pinyin.setdefault(_pinyin(word), word)
        self._is_word = tokenizer.is_word
        self._synonyms = tuple(
            (normalize(group.canonical), tuple(normalize(v) for v in group.variants))
            for group in synonyms)

    def rewrite(self, text: str) -> NormalizedText:
        """`text` in the knowledge base's words (see the module doc); normalised."""
        rewritten = _COLLOQUIAL.sub(lambda m: COLLOQUIAL_ZH[m.group(0)], normalize(text))
        rewritten = _LATIN.sub(self._latin_word, rewritten)
        rewritten = _CJK_RUN.sub(self._chinese_run, rewritten)
        added = [canonical for canonical, variants in self._synonyms
                 if canonical not in rewritten and any(v in rewritten for v in variants)]
        if added:
            rewritten = rewritten + " " + " ".join(added)
        return NormalizedText(rewritten)

    def _latin_word(self, match: re.Match) -> str:
        word = match.group(0)
        if word in self.english or word in _KEEP_EN or len(word) < 4:
            return word
        chinese = self._by_pinyin.get(word)
        if chinese is not None:
            return chinese
        return self._spelled(word) or word

    def _spelled(self, word: str) -> str | None:
        """The knowledge base's word one edit from `word` (two for 8+ letters), if exactly one
        is nearest."""
        from rapidfuzz.distance import DamerauLevenshtein

        limit = 2 if len(word) >= 8 else 1
        best, best_distance, tied = None, limit + 1, False
        for length in range(len(word) - limit, len(word) + limit + 1):
            for candidate in self._english_by_length.get(length, ()):
                if candidate[0] != word[0] and candidate[:2] != word[:2][::-1]:
                    continue  # shoppers rarely miss the first letter; it keeps this cheap
                distance = DamerauLevenshtein.distance(word, candidate, score_cutoff=limit)
                if distance < best_distance:
                    best, best_distance, tied = candidate, distance, False
                elif distance == best_distance:
                    tied = True
        return None if tied else best

    def _chinese_run(self, match: re.Match) -> str:
        run = match.group(0)
        if len(run) < 2 or run in self._chinese_grams:
            return run
        out, i = [], 0
        while i < len(run):
            for size in (3, 2):
                gram = run[i:i + size]
                if len(gram) < size or gram in self._chinese_grams or self._is_word(gram):
                    continue
                word = self._by_pinyin.get(_pinyin(gram))
                if word is not None and len(word) == size:
                    out.append(word)
                    i += size
                    break
            else:
                out.append(run[i])
                i += 1
        return "".join(out)


def _pinyin(chinese: str) -> str:
    """Toneless pinyin of `chinese`, one reading per character ("退货" -> "tuihuo")."""
    return "".join(_char_pinyin(ch) for ch in chinese)


@lru_cache(maxsize=8192)
def _char_pinyin(ch: str) -> str:
    from pypinyin import lazy_pinyin

    return lazy_pinyin(ch)[0]
