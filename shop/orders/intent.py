"""Order questions: does the shopper's latest message need their own order's data, which order
does it name, and what about it do they ask?

A rule set, not a model: it must be right whatever model answers, cost microseconds at a peak,
and say why. It reads the message in its normalised form (shop/text.py: lower case, simplified
Chinese, half-width), and the references (order and tracking numbers) in the message as written.

An order question is (a) a message that gives an order or tracking number, or (b) a message
about the shopper's own order: a status asked in the perfective ("发货了吗", "到哪了", "has it
shipped", "still hasn't arrived"), or an order word owned by the shopper ("我的订单", "我买的
鞋", "my parcel", "the headphones I ordered") together with a question about its state. Policy
look-alikes ask how things work in general ("一般几天发货", "how long does shipping take", "怎么
申请退款"): without a reference and without ownership they are the knowledge base's.

A short follow-up right after an order reply ("那退款呢？", "and when will it arrive?") is an
order question about the order that reply named.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from shop.orders.replies import WHICH_ORDER
from shop.text import normalize

Topic = Literal["status", "refund", "list", "other"]

# --- references --------------------------------------------------------------------------------
# Carrier tracking numbers by shape (SF Express, YTO, JD, ZTO/STO/Yunda digits, UPS, EMS).
_TRACKING = re.compile(
    r"(?<![A-Za-z0-9])(SF\d{10,15}|YT\d{10,15}|JD[A-Z0-9]{10,18}|JT\d{10,15}|"
    r"1Z[A-Z0-9]{16}|[A-Z]{2}\d{9}[A-Z]{2}|7[358]\d{10,13})(?![A-Za-z0-9])", re.I)
# A number after an order word: "订单号: E20261111-0042", "order #A1B2C3", "单号 123456".
_LABELLED = re.compile(
    r"(?:订单编号|订单号|订单|运单号|快递单号|物流单号|单号|order\s*(?:no\.?|number|id|#)?|"
    r"tracking\s*(?:no\.?|number|#)?|#)\s*[:：#]?\s*([A-Za-z0-9][A-Za-z0-9-]{3,39})", re.I)
# A code that is mostly digits (up to four letters before them, a dash-separated tail): "E20261109-
# 0561", "VW20261110-0063", "2026111100123"; at least 8 digits, 11-digit mobile numbers excluded.
_BARE = re.compile(
    r"(?<![A-Za-z0-9+-])([A-Z]{0,4}-?\d{3,24}(?:-\d{1,8}){0,2})(?![A-Za-z0-9-])", re.I)
# A landline or international phone number is not a reference ("010-6552-1234", "+86 ...").
_PHONE = re.compile(r"^(?:0\d{2,3}-\d{7,8}|0\d{2,3}-\d{3,4}-\d{4}|1[3-9]\d{9})$")
MIN_BARE_DIGITS = 8

# --- the question's parts (on normalised text) ---------------------------------------------------
# What an order question is about.
_ORDER_WORDS = re.compile(
    r"订单|单子|这单|那单|两单|下的单|包裹|快递|物流|运单|货|东西|宝贝|退款|退货|换货|售后|差价|"
    r"发货|发出|寄|签收|到货|送到|"
    r"kuai ?di|wu ?liu|ding ?dan|bao ?guo|"
    # English words by letters, not \\b: "tracking number在哪" has no word boundary in Unicode.
    r"(?<![a-z])(?:orders?|parcels?|packages?|shipments?|deliver(?:y|ies)|tracking|"
    r"refund(?:s|ed|ing)?|"
    r"returns?|returned|"
    r"exchanges?|replacements?|pickups?|purchases?|pkg)(?![a-z])")
# Something the shopper did with the shop ("我双11拍的", "I ordered", "placed an order"): any
# question about it is about their order ("what size did I order?").
_DID = re.compile(
    r"我.{0,8}?(?:买|拍|下单|下的|订|定|付|申请|退|寄|换)(?:的|了|过)|"
    r"(?:双11|双十一|11\.11|昨天|前天|今天|上周|上个月|上次|刚才|刚刚|之前|\d+号|\d+月\d+[号日])"
    r".{0,4}?(?:买|拍|下|订|定|付|申请|退)的|"
    r"\bi (?:ordered|bought|purchased|placed|paid|got|returned|sent|applied|requested|asked for)|"
    r"\bi've (?:ordered|bought|paid|returned|applied|requested)|\bi (?:have|had) (?:ordered|"
    r"bought|paid)|\bwe (?:ordered|bought)|\bi made\b|\bdid i (?:order|buy|purchase|pay|get)\b|"
    r"\bplaced (?:an|my|the|two|2) orders?\b|\b(?:last|yesterday's|today's|this week's|"
    r"last week's|\w+day's|last \w+day's) (?:order|parcel|package|purchase|delivery)")
# A possessive: the shopper's own only when it owns an order word ("my parcel", not "my size").
_OWNED = re.compile(
    r"我的|我们的|俺的|咱的|我这(?:个|单|边|件)|我那(?:个|单|件)|"
    r"\bmy\b|\bmine\b|\bour\b")
# The state of a specific order, asked about: strong enough on its own (Chinese drops the
# pronoun: "快递到哪了"), since policy questions do not ask it this way. One group per kind.
_STATE_PHRASES = (
    # Chinese: where is it, has it shipped / arrived / been refunded (perfective 了/没)
    r"到哪|(?:快递|包裹|订单|货|东西|物流|退款|钱|单子|宝贝)(?:现在)?在哪|哪一步|到了(?:吗|没|么|嘛)|"
    r"到没|没到|到了没|发(?:货)?了(?:吗|没|么|嘛)|发没发|寄了(?:吗|没)|出库了|揽收了|签收了|"
    r"(?:过|好|成功|通过|批)了(?:吗|没|么)|退了(?:吗|没|么)|到账了(?:吗|没|么)|收到没|到了没有|"
    r"(?:发货|发|到|寄|退|签收|到账|赔|退款)了?没(?:有)?(?:[?？!！。~～\s]|$)|[\u4e00-\u9fff]了没|"
    r"审核(?:通过|过)?了(?:吗|没)|原路退回了|退到哪|取消了(?:吗|么)|被取消|"
    # Chinese: it is late, or something went wrong with it
    r"还没|怎么还|咋还|还不(?:发|到|寄|退|送)|几天了|好几天|都.{1,3}天了|礼拜了|星期了|"
    r"没(?:有)?收到|只到了|少了一件|少发|漏发|没发全|被签收|丢件|"
    r"(?:物流|快递|订单|系统|页面|app)上?显示|显示(?:已|在|派送|签收|发货|运输|待)|"
    r"为(?:什么|啥)(?:取消|还没|没|退|被)|"
    # Chinese: when will mine come, look it up for me
    r"(?:寄|发|送)给我|给我(?:发|寄|送)|能到(?:不|吗|么|嘛)|今天能到|哪天能|几号(?:能)?(?:到|发)|多会儿|"
    r"(?:什么|啥)时候(?:能|可以|才|会)?(?:收到|到货|送到|到)|还要(?:多久|几天)|"
    r"钱(?:什么|啥)时候(?:退|到|回)|收到我(?:的|寄回的)?退货|"
    r"帮我(?:查|看|问|催)|帮忙(?:查|看)|查(?:一下|一查|下)(?:我|订单|物流|快递|包裹|退款|单)|"
    r"(?:看|查)(?:下|一下)(?:物流|快递|订单|包裹|退款)|(?:运单号|快递单号|单号|物流单号)(?:是)?多少|"
    r"(?:驿站|丰巢|快递柜)[^。，,.]{0,6}(?:吗|没|么)|取件码|状态|进度|怎么样了|咋样了|如何了|有进展|"
    r"进展如何|dao ?na|"
    # English: where is it, has it shipped / arrived / been refunded
    r"\bwhere(?:'s|s| is| are)\s+(?:my|it|our|the (?:order|parcel|package|delivery|refund|"
    r"return|rest))\b|\bwhere my\b|\bwhen's my\b|\bhow(?:'s| is| are) (?:my|it|things)\b|"
    r"\b(?:has|did|is|was|have) (?:it|they|my \w+|the (?:order|parcel|package|refund|return)) "
    r"(?:been )?(?:ship|sent|arriv|deliver|dispatch|refund|process|cancel|paid|approv|receiv|"
    r"picked|left)|\b(?:shipped|arrived|here|delivered|back|processed|refunded|sent) yet\b|"
    r"\bgone through\b|\bcome through\b|\bhas it left\b|\bleft the warehouse\b|"
    r"\bshipped out\b|\bon (?:the|its|their) way\b|\bout for delivery\b|"
    # English: it is late, or something went wrong with it
    r"\bstill (?:no|not|hasn't|haven't|waiting|nothing)\b|\bstill waiting\b|\bbeen waiting\b|"
    r"\bwaiting (?:for|on) (?:my|the|it)\b|\bit's been (?:\d+|a|two|three|four|five|several|"
    r"many|over) |\bbeen \d+ (?:days|weeks)\b|\buntil now\b|"
    r"\bnever (?:got|received|arrived|came|showed)|\b(?:hasn't|haven't|hasnt|havent|didn't|didnt|"
    r"has not|have not|did not) (?:\w+ )?(?:arrived?|come|came|shipped|ship|received?|got|get|"
    r"moved|updated|gone|been)|\bnot (?:arrived|here|received|shipped|moving|updated|receive|"
    r"arrive|come|get)\b|\bmarked as delivered\b|\bsays? (?:it(?:'s| was| is)? )?(?:delivered|"
    r"shipped|signed)|\bno (?:package|parcel)\b|\bnothing (?:at|in|has|arrived)\b|"
    r"\b(?:came|arrived|got here) but\b|\bis it coming\b|\bmissing (?:an? |one )?(?:item|piece)|"
    r"\blost (?:my )?(?:package|parcel)\b|\bwhy (?:was|is|did|has) (?:my|it|the order)\b|"
    # English: when will mine come, look it up for me
    r"\bwhen (?:will|does|is|do|can|would|should) (?:my|it|they|i|the (?:order|parcel|package|"
    r"delivery|refund|rest))\b.{0,40}\b(?:arriv|ship|deliver|come|get|receiv|refund|dispatch|sent|"
    r"send|here|land|see)|(?<!pay )(?<!check )\bwhen (?:it|they) (?:lands?|arriv|gets?|comes?|"
    r"ships?)|\beta\b|\bany (?:news|update)|\bupdate on\b|\bwhat(?:'s| is) happening\b|"
    r"\bcheck (?:on )?(?:my|it|this|that)\b|\bcheck (?:it )?for me\b|\blook (?:it )?up\b|"
    r"\btrack (?:my|it|the|this)\b|\b(?:give|send|tell) me (?:the|my) (?:tracking|order)|"
    r"\b(?:refund|delivery|order) status\b|\bstatus of (?:my|the|it)\b|\bmy money back\b|"
    r"\bdid you (?:get|receive) my\b|\b(?:did|have|has) (?:you|u|you guys|u guys|they) "
    r"(?:\w+ )?(?:ship|sen[dt]|dispatch|refund|receiv|process)|"
    r"(?:一起|分开|另外|单独|分批)发(?:的)?(?:吗|么|呢)",
)
_STATE = re.compile("|".join(_STATE_PHRASES))
# The same only where the message names an order, a parcel or a refund: on their own these
# words also describe other things ("手表升级卡住了", "the update is stuck", "一直没解决").
_STATE_OF_AN_ORDER = re.compile(
    r"卡(?:在|住)|不动了|没动|丢了|一直(?:没|不)|没(?:有)?(?:更新|动静|消息|物流)|催|派件|快递员|"
    r"在哪(?!里?儿?(?:看|查|找|可以|能|下载|领|买|操作|申请))|"
    r"\bstuck\b|\blost\b|\blate\b|\bstatus\b|\bwhere(?:'s|s| is| are)\b")
# A question about the shopper's own order that the state pattern does not name ("is my order
# paid?", "are my two orders coming in one box?"): owned order words and a question.
_QUESTION = re.compile(r"[?？吗么嘛呢没不]|(?:是不是|有没有|能不能|还是|什么时候|啥时候|几时|哪天|多久|几天|"
                       r"为什么|为啥|怎么回事|\bis\b|\bare\b|\bwill\b|"
                       r"\bdid\b|\bhas\b|\bhave\b|\bcan (?:you|u)\b|\bwhat\b|\bwhen\b|"
                       r"\bwhy\b|\bwhich\b)")
# A message that is nothing but an order word ("物流?", "my order??", "tracking").
_BARE_ASK = re.compile(
    r"^(?:请问|亲|你好|您好|在吗|喂|hi|hello|hey|pls|please)?[\s,，~～!！]*"
    r"(?:我的)?(?:订单|快递|物流|包裹|退款|运单|单号)(?:信息|状态|进度)?[\s?？!！.。~～]*$|"
    r"^(?:my )?(?:order|parcel|package|delivery|refund|tracking)(?: status| update)?"
    r"[\s?!.]*$|^(?:where is it|where's it|order status)[\s?!.]*$|^[📦🚚]+[\s?？!！]*$")
# How things work in general: a policy question even when it names orders.
_POLICY = re.compile(
    r"一般|通常|平时|正常(?:情况)?|流程|规则|政策|运费(?!险)|包邮|支持|是否|"
    r"\bhow (?:long|much)\b|\busually\b|\bnormally\b|\bin general\b|\bpolicy\b|\bdo you\b|"
    r"\bwhat(?:'s| is) your\b|\bwhich (?:courier|carrier)s?\b")
# Asking what is allowed or how to do something: policy even about the shopper's own order
# ("我的单还没发货，还能加一件吗", "how do I return my keyboard").
_PERMISSION = re.compile(
    r"怎么(?:申请|操作|取消|修改|改|退|查询|查看|办|弄|算|收费|样才能)|如何|在哪(?:里|儿)?(?:取消|申请|"
    r"修改|改|退|操作)|可以(?!帮).{0,12}?(?:吗|不|么)|能(?!到|发|收到|送到|帮|不能帮).{0,12}?(?:吗|么)|"
    r"能不能(?!帮)|可不可以(?!帮)|"
    r"\bhow (?:do|does|can|to|i|should)\b|\bcan (?:i|my|we|someone|somebody|anyone)\b|"
    r"\bcould i\b|\bmay i\b|"
    r"\bis it possible\b|\bam i able\b")
# A question about what would happen, not what did: policy whatever else it says.
_HYPOTHETICAL = re.compile(r"如果|万一|要是|假如|假设|的话|怎么办|"
                           r"(?<!tell me )(?<!know )(?<!check )(?<!see )(?<!wondering )\bif\b|"
                           r"\bwhat happens\b|"
                           r"\bin case\b|\bsuppose\b|\bwhere (?:can|do|should|would) i\b|"
                           r"\bhow (?:should|would|will) i\b")
# A policy word that still leaves a complaint about a late order ("我的快递一般到哪了").
_LATE = re.compile(r"到哪|在哪|还没|怎么还|咋还|没更新|帮我(?:查|看)|\bwhere\b|"
                   r"\bstill (?:no|not|hasn't|haven't|waiting|nothing)\b|"
                   r"\bnever\b|\bhasn't\b|\bhaven't\b|\bnot (?:arrived|received)\b")
_REFUND = re.compile(r"退款|退钱|钱(?:退|回|到)|到账|退货|退回|退了|\brefund|\bmoney back\b|"
                     r"\breturn(?:ed)?\b")
_LIST = re.compile(r"我.{0,6}?买(?:了|过)(?:什么|啥|哪些)|我的(?:所有|全部|最近的?)?订单(?:列表)?"
                   r"(?:有哪些|有什么|都有啥)|\bwhat did i (?:order|buy)\b|\bmy (?:recent |last )?"
                   r"orders\b|\ball my orders\b|\border history\b")
# Asking for something to be done to the order, or about it beyond its state: the model answers
# with the order's facts (a template cannot).
_ACTION = re.compile(
    r"改(?:地址|收货|电话|手机|尺码|颜色)|修改|换(?:地址|个|成|货)|取消订单|帮我取消|不要了|加急|催|"
    r"发票|开票|拒收|退货|换货|\bchange\b|\bmodify\b|\bcancel (?:it|my|the|this)|\binvoice\b|"
    r"\burgent|\bhurry\b|\bexchange\b|\bswap\b|\bwrong (?:size|item|colou?r)\b")
# A short follow-up after an order reply ("那退款呢？", "and when?").
_FOLLOW_UP = re.compile(
    r"^(?:那|那么|and|so|ok|好的|嗯)?[，,\s]*(?:退款|物流|快递|到哪|什么时候|啥时候|几时|"
    r"refund|tracking|when|where|status|delivery|the refund)|"
    r"^(?:那|那么|and\b|what about\b|how about\b).{0,16}(?:呢|吗|[?？])")
FOLLOW_UP_MAX_CHARS = 24
# An order reply names its order like this (shop/orders/replies.py writes it so).
# Picking one of a listed set of orders: a position, a number, "this one" ("第二个", "the 2nd one",
# "2", "那件").
_CHOICE = re.compile(
    r"第\s*[一二三四五六七八九十\d]|最后(?:一|那)|(?<![\w.])[#＃]?\d(?![\w.])|"
    r"\b(?:first|second|third|fourth|fifth|last|\d(?:st|nd|rd|th))\b|\bone\b|"
    r"[这那](?:个|件|单|笔|条|双|份)")
_REPLY_ORDER = re.compile(r"(?:订单|[Oo]rder)\s*([A-Za-z0-9][A-Za-z0-9-]{3,39})")


@dataclass(frozen=True)
class OrderQuestion:
    """An order question: the reference it gives (None: the shopper names no order) and what
    it asks about."""

    ref: str | None
    topic: Topic
    why: str  # which rule recognised it (for evaluation and the debug log)


def references(text: str) -> list[str]:
    """Order and tracking numbers in `text` as written (half-width), most certain first."""
    raw = unicodedata.normalize("NFKC", text)
    found: list[str] = []
    for pattern in (_TRACKING, _LABELLED, _BARE):
        for match in pattern.finditer(raw):
            ref = match.group(1).strip("-")
            if not any(c.isdigit() for c in ref) or _PHONE.match(ref) or ref in found:
                continue
            if pattern is _BARE and sum(c.isdigit() for c in ref) < MIN_BARE_DIGITS:
                continue
            found.append(ref)
    return found


def topic_of(text: str) -> Topic:
    """list: which orders; refund: a refund's state; other: anything beyond the order's state
    (a change, an invoice...), for the model; status: where the order is (the default)."""
    if _LIST.search(text):
        return "list"
    if _REFUND.search(text) and not re.search(r"退货.*(?:怎么|如何)|\bhow\b", text):
        return "refund"
    if _ACTION.search(text):
        return "other"
    return "status"


def recognise(latest: str, previous_reply: str | None = None) -> OrderQuestion | None:
    """The order question in `latest` (the shopper's last message, as written), or None.
    `previous_reply`: the assistant's last turn, for follow-ups to an order reply."""
    text = normalize(latest)
    refs = references(latest)
    if refs:
        return OrderQuestion(refs[0], topic_of(text), "reference")
    if _LIST.search(text):
        return OrderQuestion(None, "list", "list")
    if previous_reply and len(text) <= FOLLOW_UP_MAX_CHARS and _CHOICE.search(text) and any(
            marker in previous_reply for marker in WHICH_ORDER):
        # The answer to "which order do you mean?" (desk.py reads the position or the words);
        # anything else after that list is read as the message it is (a change of topic).
        return OrderQuestion(None, topic_of(text), "which-reply")
    if previous_reply and len(text) <= FOLLOW_UP_MAX_CHARS and _FOLLOW_UP.search(text):
        named = set(_REPLY_ORDER.findall(previous_reply))
        if len(named) == 1:  # a reply about one order, not a list of several
            return OrderQuestion(named.pop(), topic_of(text), "follow-up")
    if _BARE_ASK.search(text.strip()):
        return OrderQuestion(None, topic_of(text), "bare")
    if _HYPOTHETICAL.search(text) or _PERMISSION.search(text):
        return None
    if _POLICY.search(text) is not None and _LATE.search(text) is None:
        return None
    if _STATE.search(text) or (_STATE_OF_AN_ORDER.search(text) and _ORDER_WORDS.search(text)):
        return OrderQuestion(None, topic_of(text), "state")
    if _QUESTION.search(text) and (_DID.search(text) or (
            _OWNED.search(text) and _ORDER_WORDS.search(text))):
        return OrderQuestion(None, topic_of(text), "owned")
    return None
