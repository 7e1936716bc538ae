"""Text handling shared by retrieval, hand-off rules and replies: normalisation, the shopper's
language, and word tokens for Chinese and English.

Chinese has no spaces: jieba (search mode) segments it into words, and overlapping character
bigrams are added so that a segmentation that differs between a question and an entry
("还有/货" against "有货") still shares terms. English is lower-cased, split on letters and
digits, stop words dropped and Snowball-stemmed ("shipping" and "shipped" meet at "ship").
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections.abc import Iterable
from typing import Literal

_to_simplified = None  # opencc.OpenCC("t2s"), made on first use

Language = Literal["zh", "en"]
LANGUAGES: tuple[Language, ...] = ("zh", "en")

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_RUNS = re.compile(r"([\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+)|([a-z0-9]+(?:['’][a-z]+)?)")

# Words that carry no topic: particles and pronouns (Chinese), function words (English).
# Kept short on purpose: "有" (have/in stock), "不" (not) and "how"/"when" carry meaning here.
_ZH_STOP = frozenset(
    "的 了 吗 呢 吧 啊 呀 哦 嘛 么 我 你 您 他 她 它 我们 你们 是 在 这 那 这个 那个 就 也 都 还 "
    "和 与 请问 请 一下 可以 能 能不能 可不可以 会 要 想 问 亲 哈 呗 个 一个 下".split()
)
# Single characters that make a bigram noise ("货吗", "我的").
_ZH_STOP_CHARS = frozenset("的了吗呢吧啊呀哦嘛么我你您他她它们是这那就也都和与请个亲哈呗")
_EN_STOP = frozenset(
    "a an the i me my we our you your he she it its they them their is are was were be been "
    "am do does did doing have has had having to of in on at for from by with about as into "
    "and or but if so than too very can could would should will shall may might must please "
    "this that these those there here what which who whom hi hello hey thanks thank just "
    "any some get got im i'm it's don't dont".split()
)


class NormalizedText(str):
    """A text already in `normalize`d form. The shopper's latest message is normalised once per
    request (shop/conversation.py) and passed on as this type; every rule, the index and the
    cache key call `normalize` on what they get, which returns a NormalizedText as it is."""

    __slots__ = ()


def normalize(text: str) -> NormalizedText:
    """NFKC (full-width letters and digits become ASCII, compatibility forms fold), lower case
    and traditional Chinese as simplified: the form every rule and the index compare, so a
    shopper writing 退貨 is understood as one writing 退货."""
    if isinstance(text, NormalizedText):
        return text
    global _to_simplified
    if _to_simplified is None:
        import opencc

        _to_simplified = opencc.OpenCC("t2s")  # reads its dictionaries once
    return NormalizedText(_to_simplified.convert(unicodedata.normalize("NFKC", text).lower()))


def question_key(text: str) -> str:
    """The form in which two messages count as the same question (curated exact matches, the
    response cache): `normalize`d, then only letters and digits kept (punctuation, symbols,
    emoji and whitespace dropped). "請問，包郵嗎？" and "请问包邮吗" have the same key."""
    return "".join(ch for ch in normalize(text) if unicodedata.category(ch)[0] in "LN")


def language_of(text: str, default: Language = "en") -> Language:
    """'zh' when Chinese characters make up a fair share of the letters, else 'en'."""
    normalized = normalize(text)
    cjk = len(_CJK.findall(normalized))
    latin = sum(1 for ch in normalized if "a" <= ch <= "z")
    if cjk == 0 and latin == 0:
        return default
    # A Chinese character carries about as much as a short English word.
    return "zh" if cjk * 3 >= latin else "en"


class Tokenizer:
    """Turns text into index terms. One instance per process is enough; it is thread-safe
    after `warm_up` (jieba builds its dictionary on first use, about 1 s)."""

    def __init__(self, extra_words: Iterable[str] = ()):
        import jieba
        import Stemmer

        jieba.setLogLevel(60)  # no start-up chatter on every replica
        self._jieba = jieba.Tokenizer()
        self._stemmer = Stemmer.Stemmer("english")
        self._lock = threading.Lock()
        self._extra_words = tuple(extra_words)
        self._ready = False

    def warm_up(self) -> None:
        with self._lock:
            if not self._ready:
                self._jieba.initialize()
                for word in self._extra_words:
                    self._jieba.add_word(word, freq=50_000)
                self._ready = True

    def segment(self, chinese: str) -> list[str]:
        """jieba's words of a run of Chinese text (no HMM: known words only)."""
        self.warm_up()
        return list(self._jieba.cut(chinese, HMM=False))

    def is_word(self, text: str) -> bool:
        """Whether `text` is a word of jieba's dictionary (the shop words included)."""
        self.warm_up()
        return bool(self._jieba.FREQ.get(text))

    def char_grams(self, text: str) -> list[str]:
        """Character n-grams of `text` as index terms, which meet where words do not (a
        misspelling, a segmentation that differs, a word inside a compound): for Chinese, the
        characters, bigrams and trigrams of a run; for an English word, its trigrams with the
        word's edges marked ("#re", "ret", ..., "rn#"), so "retrun" still shares most of
        "return". Grams with a Chinese stop character carry no topic and are left out; English
        function words stay, since "how long" and "can i" say what is asked."""
        grams: list[str] = []
        for match in _RUNS.finditer(normalize(text)):
            chinese, word = match.groups()
            if word:
                marked = f"#{word}#"
                grams.extend(marked[i:i + 3] for i in range(len(marked) - 2))
                continue
            for size in (1, 2, 3):
                grams.extend(gram for i in range(len(chinese) - size + 1)
                             if not _ZH_STOP_CHARS.intersection(gram := chinese[i:i + size]))
        return grams

    def words(self, text: str) -> list[str]:
        """The words of `text`, stop words out: jieba's dictionary words for Chinese (no
        search-mode sub-words, no HMM: a third of `words_and_bigrams`' cost), stems for English.
        What the answer guard compares an answer's words with its facts' on."""
        return self._words(text, for_index=False)[0]

    def tokens(self, text: str) -> list[str]:
        """Index terms of `text`, in order (duplicates kept: BM25 counts them)."""
        words, bigrams = self.words_and_bigrams(text)
        return words + bigrams

    def words_and_bigrams(self, text: str) -> tuple[list[str], list[str]]:
        """(words, Chinese character bigrams) of `text`. The bigrams only help matching across
        segmentation differences; they carry no meaning of their own (a relevance measure
        must not count an unknown bigram as unknown meaning)."""
        return self._words(text, for_index=True)

    def _words(self, text: str, for_index: bool) -> tuple[list[str], list[str]]:
        """(words, bigrams); for the index, Chinese is cut in search mode with HMM (sub-words
        too, "七天无理由" and "无理由") and its bigrams are added."""
        self.warm_up()
        words: list[str] = []
        bigrams: list[str] = []
        english: list[str] = []
        for match in _RUNS.finditer(normalize(text)):
            chinese, word = match.groups()
            if word:
                if word not in _EN_STOP:
                    english.append(word.replace("’", "'"))
                continue
            cut = self._jieba.cut_for_search(chinese, HMM=True) if for_index \
                else self._jieba.cut(chinese, HMM=False)
            words.extend(w for w in cut if w not in _ZH_STOP and w.strip())
            if for_index:
                bigrams.extend(chinese[i:i + 2] for i in range(len(chinese) - 1)
                               if chinese[i] not in _ZH_STOP_CHARS
                               and chinese[i + 1] not in _ZH_STOP_CHARS)
        words.extend(self._stemmer.stemWords(english))
        return words, bigrams


# Shop vocabulary jieba's general dictionary splits wrongly; added to every Tokenizer.
COMMERCE_WORDS = (
    "有货 没货 缺货 补货 到货 发货 退货 换货 退款 退换 运费险 七天无理由 转人工 人工客服 "
    "快充 双11 双十一 双12 双十二 黑五 价保 保价 预售 定金 尾款 尺码 偏大 偏小 起球 缩水 掉色 "
    "褪色 开发票 专票 普票 电子发票 顺丰 中通 包邮 花呗 分期 优惠券 满减 会员 积分 保修 质保 "
    "充电宝 充电器 数据线 蓝牙 耳机 手表 手环 扩展坞"
).split()
