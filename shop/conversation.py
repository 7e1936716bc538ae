"""What the shop layer reads from a conversation: the shopper's latest message, the turns before
it, the language to reply in, and whether the message is small talk that needs no facts.

Messages arrive in the OpenAI shape as plain dicts (role + string or list of parts), so this
module depends on no request schema."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shop.text import Language, NormalizedText, language_of, normalize

CLIENT_INSTRUCTION_ROLES = ("system", "developer")


@dataclass(frozen=True)
class Conversation:
    """A request's messages, split the way the shop layer uses them."""

    latest: str  # text of the last user message ("" when it is only an image)
    earlier_user_turns: tuple[str, ...]  # oldest first
    assistant_turns: tuple[str, ...]  # oldest first
    client_instructions: tuple[str, ...]  # texts of client system/developer messages
    turns: tuple[dict[str, Any], ...]  # user/assistant messages, as sent, in order
    has_images: bool
    # `latest` normalised once for every rule, the index and the cache key (shop/text.py).
    normalized_latest: NormalizedText = NormalizedText("")

    @classmethod
    def from_messages(cls, messages: list[dict[str, Any]]) -> Conversation:
        turns = tuple(m for m in messages if m["role"] not in CLIENT_INSTRUCTION_ROLES)
        user = [text_of(m) for m in turns if m["role"] == "user"]
        latest = user[-1] if user else ""
        return cls(
            latest=latest,
            earlier_user_turns=tuple(user[:-1]),
            assistant_turns=tuple(text_of(m) for m in turns if m["role"] == "assistant"),
            client_instructions=tuple(text_of(m) for m in messages
                                      if m["role"] in CLIENT_INSTRUCTION_ROLES),
            turns=turns,
            has_images=any(isinstance(m.get("content"), list) and any(
                p.get("type") == "image_url" for p in m["content"]) for m in turns),
            normalized_latest=normalize(latest),
        )

    @property
    def last_reply(self) -> str | None:
        """The assistant's last turn (what a short follow-up answers), None before any."""
        return self.assistant_turns[-1] if self.assistant_turns else None

    @property
    def texts(self) -> tuple[str, ...]:
        """Every text of the conversation: the client's instructions and both sides' turns."""
        return (*self.client_instructions, *self.earlier_user_turns, self.latest,
                *self.assistant_turns)

    def reply_language(self, languages: tuple[Language, ...], default: Language) -> Language:
        """The language of the shopper's latest message, if the shop speaks it; else the
        latest earlier turn that shows one; else the shop's default."""
        for text in (self.normalized_latest, *reversed(self.earlier_user_turns)):
            if _has_letters(text):
                language = language_of(text, default)
                return language if language in languages else default
        return default


def text_of(message: dict[str, Any]) -> str:
    content = message.get("content")  # absent: an assistant turn that only called tools
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


# Small talk is a message made only of these (after punctuation and emoji are dropped): a
# vocabulary, not sentence patterns, so "早上好呀～" and "awesome, thanks a lot!!!" need no
# pattern of their own. Longest phrases first, so "thank you" goes before "thank".
_SMALL_TALK_EN = sorted((
    "hi", "hello", "hey", "hiya", "yo", "good morning", "good afternoon", "good evening",
    "good night", "morning", "thanks", "thank you", "thank", "thx", "ty", "ok", "okay", "k",
    "cool", "great", "awesome", "perfect", "nice", "got it", "understood", "sure", "alright",
    "all right", "bye", "goodbye", "see you", "see ya", "cheers", "no problem", "that's all",
    "thats all", "that's great", "that's helpful", "helpful", "you're great", "you're the best",
    "appreciate it", "appreciated", "have a nice day", "have a good day", "love it", "amazing",
    "brilliant", "wonderful", "fantastic", "yes", "no", "yep", "yeah", "nope", "sounds good",
    "so much", "very much", "a lot", "lots", "again", "really", "super", "much", "so", "very",
    "you", "guys", "folks", "there", "lol", "haha", "oh", "ah", "wow", "yay", "fine", "good",
    "noted", "will do", "for your help", "for the help", "for helping", "help", "you rock",
    "rock", "legend", "hehe", "haha", "hahaha", "lmao", "xd", "morning all", "gn",
), key=len, reverse=True)
_SMALL_TALK_ZH = sorted((
    "你好", "您好", "哈喽", "嗨", "在吗", "在不在", "在么", "早上好", "早安", "晚上好", "晚安",
    "下午好", "中午好", "谢谢", "多谢", "感谢", "谢啦", "好的", "好滴", "好嘞", "好吧", "好",
    "嗯", "哦", "噢", "收到", "明白", "知道", "懂了", "拜拜", "再见", "没事", "没问题", "太好",
    "太棒", "棒", "赞", "辛苦", "麻烦", "亲", "哈", "可以", "行", "没有了", "不用了", "非常",
    "太", "你", "您", "了", "啦", "呀", "啊", "呢", "哈哈", "嘻嘻", "ok", "客服", "小姐姐",
    "宝", "耶", "真", "的", "很", "有用", "帮助", "帮忙", "嘿嘿", "呵呵", "哈哈哈", "早", "早呀",
    "开心", "好开心", "嗨", "哟", "么么哒", "爱你", "棒棒哒", "给力",
), key=len, reverse=True)
_SMALL_TALK_EN_RE = re.compile(r"\b(?:" + "|".join(map(re.escape, _SMALL_TALK_EN)) + r")\b")
# Punctuation and emoji (with their variation selectors and joiners: "☀️" is two code points).
_DROP = re.compile(r"[\s,，.。!！?？~～:：;；)(）（\-_*'\"“”‘’…、]+"
                   r"|[\U0001F300-\U0001FAFF\u2600-\u27BF\ufe0e\ufe0f\u200d]")


def is_small_talk(text: str, names: tuple[str, ...] = ()) -> bool:
    """Greetings, thanks, goodbyes and acknowledgements: answered by the persona without facts,
    and never a reason to say "I need to check that". `names`: the assistant's own names
    ("thanks Volt", "早呀小枫"), which count as small talk too."""
    rest = normalize(text)
    if not _DROP.sub("", rest):
        return False
    for name in names:
        rest = rest.replace(normalize(name), " ")
    # One pass per round over all phrases (longest first), repeated while it removes something:
    # the same result as one substitution per phrase, at a fraction of the cost on every
    # request (issue 22's profile: 6 % of the ingress's CPU).
    while True:
        removed = _SMALL_TALK_EN_RE.sub(" ", rest)
        if removed == rest:
            break
        rest = removed
    for phrase in _SMALL_TALK_ZH:
        rest = rest.replace(phrase, " ")
    return not _DROP.sub("", rest)
