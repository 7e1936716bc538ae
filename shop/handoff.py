"""When a conversation goes to a human, decided by rules on the conversation.

Reasons, checked in this order (the first that fires wins):
- `sensitive`: legal threats, payment disputes, safety incidents that happened;
- `complaint`: a complaint or anger (投诉, a regulator hotline such as 12315, abuse, "!!!");
- `requested`: the shopper asks for a person (转人工, "talk to a human");
- `repeated_failure`: the assistant's last replies were all the shop's no-answer message.
(`no_answer`, nothing relevant in the knowledge base, is decided by retrieval: shop/assistant.py.)

Rules are regular expressions per language on the normalised latest message (NFKC, lower case),
with exceptions that keep them from firing on what only looks alike: a calm question about the
complaint procedure ("how do I file a complaint?", "投诉流程是什么") is answered from the
knowledge base; "Great, thanks!!!" is enthusiasm, not anger; "no need for a human" is not a
request; a question about safety rules ("can I take it on a plane?") is not an incident.
Shops add patterns in config (`handoff.extra_patterns`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from shop.config import HandoffConfig
from shop.no_answer import NoAnswerMessages
from shop.text import Language, normalize

# order_system_unavailable: an order question the shop's order system could not answer
# (shop/orders/backend.py): a person looks the order up rather than the assistant guessing.
HandoffReason = Literal["requested", "complaint", "sensitive", "no_answer", "repeated_failure",
                        "order_system_unavailable"]
RULE_REASONS: tuple[HandoffReason, ...] = ("sensitive", "complaint", "requested")


@dataclass(frozen=True)
class HandoffDecision:
    """The conversation goes to a human; `message` is what the shopper is told."""

    reason: HandoffReason
    message: str


_EN_PERSON = (r"(?:a |an |the |some |real |live |actual )*(?:human|person|agent|representative|"
              r"rep|someone|somebody|manager|supervisor|staff|operator|people|customer service)")

PATTERNS: dict[str, dict[Language, tuple[str, ...]]] = {
    "requested": {
        "zh": (r"转人工", r"人工客服", r"人工服务", r"(找|要|接|转|叫|换)(个)?(人工|真人|客服)",
               r"人工(?!智能)", r"真人", r"活人", r"客服(人员|小姐姐|经理)",
               r"(叫|找|让)(你们)?(经理|主管|负责人|老板)", r"(不要|别用|不想跟)机器人"),
        "en": (rf"(talk|speak|chat|connect|transfer|put|get|escalate)\b.{{0,20}}\b(to|with|me)\b"
               rf".{{0,12}}{_EN_PERSON}\b",
               r"\b(human|live|real) (agent|person|being|support)\b",
               r"\b(want|need|give me|get me)\b.{0,12}\b(human|real person|agent)\b",
               r"\btransfer me\b", r"\bnot (a|talking to a) (bot|robot)\b",
               r"\b(can|could|will|would) (a|an|some|any) (human|real person|live agent|"
               r"(real |live )?person|(real |live )?agent)\b",
               r"\b(stop|enough of) (the|this) (bot|robot|ai)\b", r"\bhuman please\b"),
    },
    "complaint": {
        # The hotlines as whole numbers: an order number such as 2026123456 is not a threat.
        "zh": (r"投诉", r"(?<!\d)12315(?!\d)", r"(?<!\d)12345(?!\d)", r"消协", r"消费者协会", r"市场监[管督]", r"工商局?",
               r"举报", r"曝光", r"维权", r"差评", r"垃圾", r"骗子", r"骗人", r"坑人", r"黑店",
               r"太差", r"什么破", r"气死", r"离谱", r"忍无可忍", r"无语", r"恶心", r"滚",
               r"有病", r"态度(太|真|极其|非常)?差", r"再也不(买|来)", r"退钱", r"搞什么",
               # Frustration without a keyword: nobody helps, asked again and again.
               r"没(有)?人(管|理|处理|回复?|负责|搭理)", r"心累", r"太过分", r"坑爹",
               r"第[二三四五六七八九十几\d]+次(问|找|联系|催|说|反映)",
               r"(好几|几|这么多)天(了)?(都|也|还)?(没人|没有人|没回|不回|不理|没处理)",
               r"(一直|始终|到现在)(都)?(没人|没有人|没回|不回|不理|没处理|没解决)"),
        "en": (r"\bcomplain(t|ts|ing|ed)?\b", r"\b12315\b", r"\breport (you|this shop|your)\b",
               r"\breport(ing|ed)?\b.{0,25}\bto (the )?(platform|taobao|tmall|jd|12315|"
               r"authorit\w*|regulators?|consumer)",
               r"\bridiculous\b", r"\bunacceptable\b", r"\bterrible\b", r"\bworst\b",
               r"\bscam(mer|mers|s)?\b", r"\bfraud(ulent)?\b", r"\brip[- ]?off\b",
               r"\bdisgust(ing|ed)\b", r"\bpathetic\b", r"\buseless\b", r"\bfed up\b",
               r"\bsick (and tired )?of\b", r"\bwtf\b", r"\bbull ?shit\b", r"\bcrap\b",
               r"\bshit(ty)?\b", r"\bdamn\b", r"\bfuck", r"\bnever (buy|order|shop)\w*\b.{0,20}"
               r"\bagain\b", r"\b(bad|negative|1[- ]star|one[- ]star) review\b",
               r"\bwhat a joke\b", r"\bfurious\b", r"\bangry\b", r"\bincompetent\b",
               r"\bjoke of a\b", r"\bliars?\b",
               # Frustration without a keyword: asked again and again, nobody helps.
               r"\b(second|third|fourth|fifth|\d+(nd|rd|th)) time (i'?m |i am |i'?ve )?"
               r"(asking|asked|writing|contacting|chasing|messaging|telling)\b",
               # "still no update" is how shoppers ask about tracking: not here.
               r"\bstill (nothing|no (reply|answer|response))\b",
               r"^(?=.*\b(still|nothing|again|nobody|no one|never|waited|waiting|days|weeks)\b)"
               r".*\bunbelievabl[ey]\b",
               r"\bi'?m (so )?done\b", r"\b(round|around) in circles\b", r"\b(are|is) a joke\b",
               r"\b(no ?one|nobody) (is )?(helping|helps|cares|replies|responds|answers|gets back)",
               r"\bwaste of (my )?time\b", r"\bhad enough\b"),
    },
    "sensitive": {
        "zh": (r"律师", r"起诉", r"法院", r"诉讼", r"打官司", r"法律(责任|途径|手段|程序)",
               r"报警", r"警察", r"重复扣款", r"扣了两次", r"扣(了)?两次(钱|款)", r"多扣",
               r"扣了?我?两(次|遍|笔)", r"(付|支付|扣)了?两(次|遍|笔)(钱|款)",
               r"重复(支付|付款|扣费|收费)", r"两笔(扣款|付款|支付|钱)",
               r"乱扣", r"盗刷", r"被盗", r"冒用", r"拒付", r"银行卡被", r"支付纠纷",
               r"(鼓包|冒烟|着火|起火|爆炸|炸了|漏液|烧焦|烧坏|过敏|起疹子?|红疹|皮疹|受伤|烫伤|"
               r"烧伤|割伤|划伤|触电|电到|流血|中毒|发炎)(了|啦|的)",
               r"(起|长)了?(疹子|红疹|包)", r"被(烫|烧|割|划|电)", r"误吞|吞(下|了)",
               r"(孩子|宝宝|小孩|儿子|女儿).{0,8}(受伤|过敏|吞|割|烫|出血|流血)",
               r"差点(着火|烧|炸)", r"(冒|打|出|迸)(火花|火星)", r"焦味|烧焦|熔化|融化了"),
        "en": (r"\blawyers?\b", r"\battorney\b", r"\bsu(e|ing)\b", r"\blawsuit\b",
               r"\bcourt\b", r"\blegal action\b", r"\bsolicitor\b", r"\bpolice\b",
               r"\bcharge ?back\b", r"\bdispute (the|this|a) (charge|payment|transaction)\b",
               r"\b(charged|billed|deducted|paid)\b.{0,15}\b(twice|two times|double)\b",
               r"\bdouble[- ](charged|billed|charge)\b",
               r"\b(two|2|duplicate|double|identical|repeated) (identical )?(charges|payments|"
               r"transactions|debits|deductions)\b",
               r"\bunauthori[sz]ed (charge|payment|transaction)s?\b", r"\bstolen card\b",
               r"\b(injur(ed|y|ies)|got hurt|was hurt|hurt (my|his|her|their))\b",
               r"\b(burn(ed|t)|scald(ed)?|cut) (my|his|her|their|me|him)\b",
               r"\b(gave|giving|got|get|broke out in|have|has) (me |him |her |my \w+ )?"
               r"(a )?(rash|hives|blisters?)\b", r"\ballergic reaction\b",
               r"\bskin (reaction|irritation|rash)\b",
               r"\b(caught|catching|on) fire\b", r"\b(started|is|was|were|kept) (smoking|"
               r"sparking|melting)\b", r"\bexplod(ed|ing)\b", r"\bblew up\b",
               r"\b(swell(ed|ing)|swollen|bulg(ed|ing))\b", r"\belectric(al)? shock\b",
               r"\bshocked (me|him|her|my)\b", r"\bchok(ed|ing)\b", r"\bswallowed\b",
               r"\bbleeding\b", r"\bsmoke (came|coming)\b", r"\bspark(ed|ing|s)\b",
               r"\bmelt(ed|ing)\b", r"\bburn(t|ed)? marks?\b", r"\bscorch(ed|ing)?\b"),
    },
}

# Look-alikes that must not fire: a calm question about the procedure, or a negation.
EXCEPTIONS: dict[str, dict[Language, tuple[str, ...]]] = {
    "complaint": {
        "zh": (r"(怎么|如何|在哪|哪里|怎样|可以|能不能|能否|去哪)(里)?投诉",
               r"投诉(的)?(流程|渠道|方式|电话|入口|政策|规则|处理|多久|时效|途径|步骤)",
               r"投诉(之后|以后|后).{0,4}(多久|多长时间|怎么|会|有人)",
               r"(不是|不想|不要|没有|不用|并非)(要)?投诉",
               # A calm question about complaining ("能不能直接打12315投诉？") asks about the
               # procedure; a threat carries a condition or urgency and is not excepted.
               r"^(?!.*(再不|如果不|不处理|不给|马上|立刻|赶紧|[!！]))"
               r"(?=.*(能不能|可不可以|可以|能否|是否|会不会|怎么|如何|要不要|哪里|在哪))"
               r".*(投诉|12315).*([吗呢?？]|会怎样|会怎么样)"),
        "en": (r"\bhow (do|can|would|should) (i|we)\b.{0,25}\bcomplain",
               r"\bcomplaints? (process|procedure|policy|form|department|channel|handling)\b", r"\bwhere (do|can) i (complain|file|send)\b",
               r"\b(not|don't|do not|no need to|never) (want to |trying to |going to )?"
               r"complain", r"\bwhat happens (after|when|if) i complain\b",
               r"\bhow long (does|do) (a )?complaints?\b"),
    },
    # "What if it swells?": a question about a case, not a report of one.
    "sensitive": {
        "zh": (r"(万一|如果|要是|假如|假设|一旦).{0,12}(鼓包|冒烟|着火|起火|爆炸|漏液|过敏|受伤)",),
        "en": (r"\b(what if|in case|if (it|the \w+|they) ever)\b",),
    },
    "requested": {
        "zh": (r"(不用|不要|不需要|无需|别)(转)?(人工|真人)", r"人工智能"),
        "en": (r"\b(no need|don't need|do not need|don't want|do not want)\b.{0,20}\b"
               r"(human|agent|person)\b",),
    },
}

# Anger without a keyword: shouting punctuation, unless the message is plainly positive.
_SHOUTING = re.compile(r"[!！]{3,}|[?？!！]{4,}")
_POSITIVE = re.compile(
    r"thank|thx|\bty\b|great|awesome|love|perfect|amazing|\bnice\b|\bcool\b|excellent|"
    r"\bgood\b|happy|wonderful|fantastic|yay|谢谢|感谢|多谢|太好了|太棒了|好棒|喜欢|爱了|完美|"
    r"不错|赞|开心|满意|好开心|哈哈|辛苦")


class HandoffRules:
    """The rules of one shop, compiled once."""

    def __init__(self, config: HandoffConfig, no_answer: NoAnswerMessages):
        def with_extra(reason: str, lang: Language) -> list[str]:
            extra = config.extra_patterns.get(reason)
            return [*PATTERNS[reason].get(lang, ()), *(extra.get(lang) if extra else ())]

        self._patterns = {reason: {lang: _compile(with_extra(reason, lang))
                                   for lang in ("zh", "en")} for reason in PATTERNS}
        self._exceptions = {reason: {lang: _compile(by_lang.get(lang, ()))
                                     for lang in ("zh", "en")}
                            for reason, by_lang in EXCEPTIONS.items()}
        self._no_answer = no_answer
        self._failure_turns = config.repeated_failure_turns

    def reason_for(self, latest: str, assistant_turns: list[str]) -> HandoffReason | None:
        """The hand-off reason for a conversation whose latest shopper message is `latest` (a
        NormalizedText costs no second normalisation) and whose earlier assistant replies are
        `assistant_turns` (oldest first); None to answer."""
        text = normalize(latest)
        for reason in RULE_REASONS:
            if self._fires(reason, text):
                return reason
        if _SHOUTING.search(text) and not _POSITIVE.search(text):
            return "complaint"
        recent = assistant_turns[-self._failure_turns:]
        if len(recent) == self._failure_turns and all(
                self._no_answer.said_in(turn) for turn in recent):
            return "repeated_failure"
        return None

    def _fires(self, reason: str, text: str) -> bool:
        # Both languages' patterns apply: shoppers mix them ("转人工 please", "12315!!").
        if not any(p.search(text) for p in self._patterns[reason].values() if p):
            return False
        exceptions = self._exceptions.get(reason)
        if exceptions and any(p.search(text) for p in exceptions.values() if p):
            return False
        return True


def _compile(patterns: list[str] | tuple[str, ...]) -> re.Pattern | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None
