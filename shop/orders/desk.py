"""One shop's order desk: an order question and a verified shopper in, what to tell the shopper
out (shop/orders/intent.py recognises the question; this module finds the order and words the
answer).

Which order:
- a reference in the message: that order of this shopper (by order id, else by tracking number);
- none: the shopper's recent orders. One that fits (the only one, the only one the message's
  words name, the only one with a refund for a refund question, the only open one for a status
  question) is the order; several: the assistant lists them and asks which ("第2个" or the
  number answers it);
- a follow-up right after that list: the one its position or words name.

What is said:
- status and refund questions, and "what did I order": a template filled with the order's
  facts, no model (`reply`);
- anything else about the order ("can I still change the address?"): the model answers with the
  order as a fact (`entry`, source `order/<id>`) beside the knowledge base's.
An order that is not this shopper's gets the same reply as one that does not exist. The order
system failing is `unavailable`: the caller hands the shopper to a person, never guesses.
"""

from __future__ import annotations

import dataclasses
import re
import time
from dataclasses import dataclass
from typing import Literal

from shop.config import OrdersConfig
from shop.knowledge.entries import KnowledgeEntry
from shop.orders import replies
from shop.orders.backend import OrderBackend, OrderSystemUnavailable
from shop.orders.contract import ON_THE_WAY, Order, OrderSummary
from shop.orders.identity import Shopper
from shop.orders.intent import OrderQuestion
from shop.text import Language, normalize

Lookup = Literal["found", "ambiguous", "listed", "not_found", "no_orders", "signed_out",
                 "unavailable"]
# Statuses of an order still on its way to the shopper (a status question most likely means one).
OPEN_STATUSES = ON_THE_WAY | {"unpaid", "paid", "packed"}
_PARCEL = re.compile(r"快递|包裹|物流|运单|到哪|派送|\b(?:parcel|package|tracking|courier|"
                     r"delivery|where)\b")
_ORDINALS = {"第一": 1, "第二": 2, "第三": 3, "第四": 4, "第五": 5, "第1": 1, "第2": 2, "第3": 3,
             "第4": 4, "第5": 5, "first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5,
             "1st": 1, "2nd": 2, "3rd": 3, "4th": 4, "5th": 5, "最后": -1, "last": -1}
_LISTED_ID = re.compile(r"^\d+\. (?:订单|Order) (\S+?)[，,]", re.M)


@dataclass(frozen=True)
class OrderAnswer:
    """What the order desk decided for one question."""

    lookup: Lookup
    reply: str | None = None  # a fixed reply (a template, sign in, not found, which one)
    order: Order | None = None  # the order the answer is about
    entry: KnowledgeEntry | None = None  # the order as the model's fact, when it answers
    failure: str | None = None  # why the order system gave no answer (a metric label)
    seconds: float = 0.0  # time spent calling the order system

    @property
    def source_id(self) -> str | None:
        return None if self.order is None else f"order/{self.order.id}"


class OrderDesk:
    """One shop's order desk; shared by all of the shop's requests on an ingress replica."""

    def __init__(self, config: OrdersConfig, backend: OrderBackend):
        self.config = config
        self.backend = backend

    def signed_out(self, language: Language) -> OrderAnswer:
        return OrderAnswer("signed_out", self.config.sign_in.get(language))

    async def answer(self, question: OrderQuestion, shopper: Shopper, language: Language,
                     message: str, previous_reply: str | None) -> OrderAnswer:
        started = time.perf_counter()
        try:
            answer = await self._answer(question, shopper, language, message, previous_reply)
        except OrderSystemUnavailable as exc:
            answer = OrderAnswer("unavailable", failure=exc.reason)
        return dataclasses.replace(answer, seconds=time.perf_counter() - started)

    async def _answer(self, question: OrderQuestion, shopper: Shopper, language: Language,
                      message: str, previous_reply: str | None) -> OrderAnswer:
        if question.ref is not None:
            order = await self._by_reference(shopper.id, question.ref)
            if order is None:
                return OrderAnswer("not_found", replies.not_found_reply(question.ref, language))
            return self._about(order, question, language)
        recent = await self.backend.recent(shopper.id, self.config.recent_orders)
        if not recent:
            return OrderAnswer("no_orders", replies.not_found_reply(None, language))
        if question.topic == "list":
            return OrderAnswer("listed", replies.list_reply(recent, language))
        chosen = _chosen_from_list(recent, message, previous_reply) or \
            _only_fit(recent, question, message)
        if chosen is None:
            return OrderAnswer("ambiguous", replies.which_order_reply(recent, language))
        order = await self.backend.order(shopper.id, chosen.id)
        if order is None:  # gone between the two calls
            return OrderAnswer("not_found", replies.not_found_reply(chosen.id, language))
        return self._about(order, question, language)

    async def _by_reference(self, shopper_id: str, ref: str) -> Order | None:
        order = await self.backend.order(shopper_id, ref)
        if order is not None:
            return order
        shipped = await self.backend.recent(shopper_id, self.config.recent_orders,
                                            tracking_number=ref)
        if len(shipped) != 1:
            return None
        return await self.backend.order(shopper_id, shipped[0].id)

    def _about(self, order: Order, question: OrderQuestion, language: Language) -> OrderAnswer:
        if question.topic == "refund":
            return OrderAnswer("found", replies.refund_reply(order, language), order)
        if question.topic in ("status", "list"):
            return OrderAnswer("found", replies.status_reply(order, language), order)
        return OrderAnswer("found", None, order, order_entry(order))


def order_entry(order: Order) -> KnowledgeEntry:
    """The order as one fact for the model, in both languages (shop/prompt.py lists it among the
    knowledge base's; the answer guard reads its numbers as given)."""
    text = {lang: replies.order_facts(order, lang) for lang in ("zh", "en")}
    title = {"zh": f"订单 {order.id}", "en": f"Order {order.id}"}
    return KnowledgeEntry(id=f"order/{order.id}", kind="order", title=title, text=text,
                          documents=())


def _only_fit(recent: tuple[OrderSummary, ...], question: OrderQuestion,
              message: str) -> OrderSummary | None:
    """The one recent order the question can mean, or None when several can."""
    if len(recent) == 1:
        return recent[0]
    named = _named_by_words(recent, message)
    if len(named) == 1:
        return named[0]
    candidates = named or list(recent)
    if question.topic == "refund":
        with_refund = [o for o in candidates if o.refund_state is not None]
        if len(with_refund) == 1:
            return with_refund[0]
    else:
        open_orders = [o for o in candidates if o.status in OPEN_STATUSES]
        if len(open_orders) == 1:
            return open_orders[0]
        if _PARCEL.search(normalize(message)):
            # A parcel exists once an order has shipped: "where is my parcel" means that one.
            on_the_way = [o for o in open_orders if o.status in ON_THE_WAY]
            if len(on_the_way) == 1:
                return on_the_way[0]
    return None


def _named_by_words(recent: tuple[OrderSummary, ...], message: str) -> list[OrderSummary]:
    """Orders an item of which the message names: a Chinese title's 2-character piece or an
    English title word of 4+ letters found in the message ("羽绒服", "the hoodie")."""
    text = normalize(message)
    named = []
    for order in recent:
        for title in order.item_titles:
            if any(piece in text for piece in _title_pieces(normalize(title))):
                named.append(order)
                break
    return named


def _title_pieces(title: str) -> set[str]:
    pieces = {w for w in re.findall(r"[a-z]{4,}", title)}
    for run in re.findall(r"[\u4e00-\u9fff]+", title):
        pieces.update(run[i:i + 2] for i in range(len(run) - 1))
    return pieces - _COMMON_PIECES


# Title pieces too common to name an item ("with", "款式").
_COMMON_PIECES = frozenset({"with", "pack", "size", "colour", "color", "款式", "新款", "男款",
                            "女款", "加厚", "套装"})


def _chosen_from_list(recent: tuple[OrderSummary, ...], message: str,
                      previous_reply: str | None) -> OrderSummary | None:
    """The order a reply to the assistant's "which one?" picks by position ("第二个", "the
    2nd one", "2")."""
    if not previous_reply or not any(m in previous_reply for m in replies.WHICH_ORDER):
        return None
    listed = _LISTED_ID.findall(previous_reply)
    text = normalize(message).strip()
    position = None
    for word, number in _ORDINALS.items():
        if word in text:
            position = number
            break
    digit = re.fullmatch(r"[#第]?\s*(\d)\s*[个号单]?[。.!！]?", text)
    if position is None and digit:
        position = int(digit.group(1))
    if position is None or not listed:
        return None
    try:
        chosen_id = listed[position - 1] if position > 0 else listed[-1]
    except IndexError:
        return None
    return next((o for o in recent if o.id == chosen_id), None)
