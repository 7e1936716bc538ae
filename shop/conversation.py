"""What the shop layer reads from a conversation: the shopper's latest message, the turns before
it, the language to reply in, and whether the message is small talk that needs no facts.

Messages arrive in the OpenAI shape as plain dicts (role + string or list of parts), so this
module depends on no request schema."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from shop.text import Language, language_of, normalize

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

    @classmethod
    def from_messages(cls, messages: list[dict[str, Any]]) -> Conversation:
        turns = tuple(m for m in messages if m["role"] not in CLIENT_INSTRUCTION_ROLES)
        user = [text_of(m) for m in turns if m["role"] == "user"]
        return cls(
            latest=user[-1] if user else "",
            earlier_user_turns=tuple(user[:-1]),
            assistant_turns=tuple(text_of(m) for m in turns if m["role"] == "assistant"),
            client_instructions=tuple(text_of(m) for m in messages
                                      if m["role"] in CLIENT_INSTRUCTION_ROLES),
            turns=turns,
            has_images=any(isinstance(m["content"], list) and any(
                p.get("type") == "image_url" for p in m["content"]) for m in turns),
        )

    def reply_language(self, languages: tuple[Language, ...], default: Language) -> Language:
        """The language of the shopper's latest message, if the shop speaks it; else the
        latest earlier turn that shows one; else the shop's default."""
        for text in (self.latest, *reversed(self.earlier_user_turns)):
            if _has_letters(text):
                language = language_of(text, default)
                return language if language in languages else default
        return default


def text_of(message: dict[str, Any]) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "\n".join(p["text"] for p in content if p.get("type") == "text")


def _has_letters(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


_SMALL_TALK = {
    "en": re.compile(
        r"^(?:(?:hi|hello|hey|hiya|yo|good (?:morning|afternoon|evening|night)|thanks?|"
        r"thank you(?: (?:so|very) much)?|thx|ty|ok(?:ay)?|k|cool|great|awesome|perfect|nice|"
        r"got it|understood|sure|alright|all right|bye|goodbye|see you|cheers|no problem|"
        r"that'?s (?:all|great|helpful|perfect)|you'?re (?:great|the best)|appreciate it|"
        r"have a nice day|love it|amazing|brilliant|wonderful|yes|no|yep|nope|sounds good)"
        r"[\s,.!?~:)(\-]*)+$"),
    "zh": re.compile(
        r"^(?:(?:你好|您好|哈喽|嗨|在吗|在不在|在么|早上好|晚上好|下午好|谢谢|多谢|感谢|谢啦|"
        r"好的|好滴|好嘞|好吧|好|嗯嗯?|哦+|噢|ok|收到|明白了?|知道了|懂了|拜拜|再见|没事了|"
        r"没问题|太好了|太棒了|棒|赞|辛苦了|麻烦了|亲|哈哈+|可以|行|没有了|不用了|"
        r"(?:非常|太)?感谢|谢谢(?:你|您|亲)?(?:啦|了)?)"
        r"[\s,，.。!！?？~～:：)(）（\-]*)+$"),
}


def is_small_talk(text: str) -> bool:
    """Greetings, thanks, goodbyes and acknowledgements: answered by the persona without facts,
    and never a reason to say "I need to check that"."""
    normalized = normalize(text).strip()
    normalized = re.sub(r"[\U0001F300-\U0001FAFF\u2600-\u27BF]", "", normalized).strip()
    if not normalized:
        return False
    return any(pattern.match(normalized) for pattern in _SMALL_TALK.values())
