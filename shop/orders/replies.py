"""What the assistant says about an order, in each language: bilingual templates filled with the
order's facts (exact, no model), and the same facts as a block for the model when the question
needs more than a template.

Personal data is masked wherever it is written: a phone number keeps its first three and last
four digits (138****1234), an address its city only. A reply names its order as "订单 <id>" /
"order <id>", which shop/orders/intent.py reads back for a follow-up ("那退款呢？").
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal

from shop.orders.contract import Money, Order, OrderSummary, Refund, TrackingEvent
from shop.text import Language

STATUS = {
    "unpaid": ("待付款", "awaiting payment"),
    "paid": ("已付款，待打包", "paid, waiting to be packed"),
    "packed": ("已打包，待揽收", "packed, waiting for the courier"),
    "shipped": ("已发货", "shipped"),
    "in_transit": ("运输中", "in transit"),
    "out_for_delivery": ("派送中", "out for delivery"),
    "delivered": ("已签收", "delivered"),
    "delivery_exception": ("物流异常", "delivery problem"),
    "cancelled": ("已取消", "cancelled"),
}
TRACKING = {
    "picked_up": ("快递已揽收", "picked up by the courier"),
    "in_transit": ("运输中", "in transit"),
    "arrived": ("到达", "arrived at"),
    "departed": ("已离开", "left"),
    "out_for_delivery": ("正在派送", "out for delivery"),
    "delivered": ("已签收", "delivered"),
    "exception": ("物流异常", "delivery problem"),
}
REFUND = {
    "requested": ("退款申请已提交，正在审核", "the refund request is being reviewed"),
    "approved": ("退款已审核通过，正在退回原支付账户", "the refund is approved and on its way back to "
                 "the original payment method"),
    "refunded": ("退款已退回原支付账户", "the refund has been paid back to the original payment method"),
    "rejected": ("退款申请未通过", "the refund request was not approved"),
}
ZH, EN = 0, 1
# How the "which order?" list asks (shop/orders/intent.py and desk.py read a reply to it).
WHICH_ORDER = ("请问您问的是哪一个", "which one do you mean")
# Phone numbers in free text: a mainland mobile, or digits in groups ("+86 138 0013 8000",
# "010-6552-1234"); never a run inside an order or tracking number.
_PHONE_IN_TEXT = re.compile(
    r"(?<![A-Za-z0-9-])(?:1[3-9]\d{9}|\+?\d{1,4}(?:[ -]\d{2,4}){2,4})(?![A-Za-z0-9-])")


def _i(language: Language) -> int:
    return ZH if language == "zh" else EN


def mask_phone(phone: str) -> str:
    digits = re.sub(r"\D", "", phone)
    if len(digits) < 7:
        return "****"
    return f"{digits[:3]}****{digits[-4:]}"


def mask_digits(text: str) -> str:
    """Phone numbers in free text the order system wrote (a location, a reason), masked."""
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)) if len(
        re.sub(r"\D", "", m.group(0))) >= 7 else m.group(0), text)


def money(value: Money) -> str:
    amount = value.amount.quantize(Decimal("0.01"))
    return f"¥{amount}" if value.currency == "CNY" else f"{amount} {value.currency}"


def day(value: date | datetime, language: Language) -> str:
    if language == "zh":
        return f"{value.month}月{value.day}日"
    return f"{value.day} {value.strftime('%b')}"


def moment(value: datetime, language: Language) -> str:
    return f"{day(value, language)} {value.strftime('%H:%M')}"


def items(titles: list[str], language: Language) -> str:
    shown = titles[:2]
    if language == "zh":
        text = "、".join(shown)
        return text + (f"等{len(titles)}件" if len(titles) > 2 else "")
    text = " + ".join(shown)  # titles may hold commas ("shirt, white, M")
    return text + (f" and {len(titles) - 2} more" if len(titles) > 2 else "")


def _titles(order: Order) -> list[str]:
    return [f"{i.title}×{i.quantity}" if i.quantity > 1 else i.title for i in order.items]


def _event(event: TrackingEvent, language: Language) -> str:
    phrase = TRACKING[event.code][_i(language)]
    where = mask_digits(event.location) if event.location else None
    if where and event.code in ("arrived", "departed"):
        text = f"{phrase}{where}" if language == "zh" else f"{phrase} {where}"
    elif where:
        text = f"{where} {phrase}" if language == "zh" else f"{phrase} ({where})"
    else:
        text = phrase
    return f"{moment(event.time, language)} {text}"


def status_reply(order: Order, language: Language) -> str:
    """Where the order is: its status, the latest tracking event, the promised date."""
    zh = language == "zh"
    head = (f"您的订单 {order.id}（{items(_titles(order), language)}）" if zh
            else f"Your order {order.id} ({items(_titles(order), language)})")
    shipment, status = order.shipment, order.status
    parts: list[str] = []
    if status == "unpaid":
        parts.append(f"{head}还没有付款，付款后我们会安排发货。" if zh else
                     f"{head} has not been paid yet; it will be packed once payment goes through.")
    elif status in ("paid", "packed"):
        parts.append(f"{head}{STATUS[status][ZH]}，还没有发出。" if zh else
                     f"{head} is {STATUS[status][EN]}; it has not left our warehouse yet.")
    elif status == "cancelled":
        reason = mask_digits(order.cancel_reason) if order.cancel_reason else None
        parts.append((f"{head}已取消" + (f"（{reason}）" if reason else "") + "。") if zh else
                     (f"{head} was cancelled" + (f" ({reason})" if reason else "") + "."))
    elif status == "delivered":
        when = order.delivered_at or (shipment.events[-1].time if shipment and shipment.events
                                      else None)
        signed = f"已于 {moment(when, language)} 签收" if zh and when else "已签收"
        parts.append(f"{head}{signed}。" if zh else
                     f"{head} was delivered" + (f" on {moment(when, language)}." if when else "."))
        parts.append("如果您没有收到，请告诉我，我为您转人工客服核实。" if zh else
                     "If you have not received it, tell me and I'll pass you to a colleague "
                     "to check.")
    else:
        carrier = shipment.carrier if shipment else ("快递" if zh else "the courier")
        number = f"，运单号 {shipment.tracking_number}" if zh and shipment else (
            f", tracking number {shipment.tracking_number}" if shipment else "")
        parts.append(f"{head}已由{carrier}发出{number}，当前状态：{STATUS[status][ZH]}。" if zh else
                     f"{head} was shipped with {carrier}{number}; it is now "
                     f"{STATUS[status][EN]}.")
        if shipment and shipment.events:
            latest = _event(shipment.events[-1], language)
            parts.append(f"最新物流：{latest}。" if zh else f"Latest update: {latest}.")
        if status == "delivery_exception":
            parts.append("物流出现异常，我可以为您转人工客服跟进处理。" if zh else
                         "There is a problem with the delivery; I can pass you to a colleague "
                         "who will follow it up.")
    if order.promised_delivery and status not in ("delivered", "cancelled", "unpaid"):
        promised = day(order.promised_delivery, language)
        parts.append(f"下单时承诺 {promised} 前送达。" if zh else
                     f"At checkout we promised delivery by {promised}.")
    if order.refund is not None:
        parts.append(_refund_sentence(order.refund, language))
    return "".join(parts) if zh else " ".join(parts)


def _refund_sentence(refund: Refund, language: Language) -> str:
    state = REFUND[refund.state][_i(language)]
    amount = money(refund.amount)
    if language == "zh":
        when = refund.updated_at or refund.requested_at
        return f"退款 {amount}：{state}（{day(when, language)} 更新）。"
    when = refund.updated_at or refund.requested_at
    return f"Refund of {amount}: {state} (updated {day(when, language)})."


def refund_reply(order: Order, language: Language) -> str:
    zh = language == "zh"
    head = (f"您的订单 {order.id}（{items(_titles(order), language)}）" if zh
            else f"Your order {order.id} ({items(_titles(order), language)})")
    if order.refund is None:
        state = STATUS[order.status][_i(language)]
        return (f"{head}目前没有退款申请，订单状态：{state}。如需申请退款，可以在订单页面提交售后申请。"
                if zh else f"{head} has no refund request; the order is {state}. You can ask "
                "for a refund from the order's page.")
    refund = order.refund
    sentence = _refund_sentence(refund, language)
    tail = ""
    if refund.state == "rejected":
        reason = mask_digits(refund.reason) if refund.reason else None
        tail = (f"原因：{reason}。" if zh and reason else
                f" Reason: {reason}." if reason else "")
        tail += ("如有疑问，我可以为您转人工客服。" if zh else
                 " If you have questions about it, I can pass you to a colleague.")
    return f"{head}：{sentence}{tail}" if zh else f"{head}: {sentence}{tail}"


def summary_line(number: int, order: OrderSummary, language: Language) -> str:
    state = STATUS[order.status][_i(language)]
    what = items(list(order.item_titles), language)
    if language == "zh":
        return f"{number}. 订单 {order.id}，{day(order.placed_at, language)}下单，{what}（{state}）"
    # Item titles hold commas ("shirt, white, M"): the state goes in brackets after them.
    return f"{number}. Order {order.id}, placed {day(order.placed_at, language)}: {what} ({state})"


def which_order_reply(orders: tuple[OrderSummary, ...], language: Language) -> str:
    lines = [summary_line(n, o, language) for n, o in enumerate(orders, 1)]
    if language == "zh":
        return f"您最近有以下订单，{WHICH_ORDER[0]}？回复订单号或序号就可以：\n" + "\n".join(lines)
    return (f"You have these recent orders; {WHICH_ORDER[1]}? Reply with its number or "
            "order number:\n" + "\n".join(lines))


def list_reply(orders: tuple[OrderSummary, ...], language: Language) -> str:
    lines = [summary_line(n, o, language) for n, o in enumerate(orders, 1)]
    if language == "zh":
        return "您最近的订单：\n" + "\n".join(lines) + "\n想了解哪一个，告诉我订单号就可以。"
    return ("Your recent orders:\n" + "\n".join(lines) +
            "\nTell me the order number of the one you'd like to know about.")


def not_found_reply(ref: str | None, language: Language) -> str:
    """The same words whether the order does not exist, is another shopper's or another shop's:
    nothing tells a guesser which."""
    if ref is None:
        return ("您的账号下没有找到订单记录。如果您用其他账号下的单，请登录那个账号后再问我。" if
                language == "zh" else "I can't find any orders on your account. If you ordered "
                "with another account, please sign in with it and ask me again.")
    return (f"您的账号下没有找到 {ref} 这个订单。请核对一下订单号（在“我的订单”里可以看到），"
            "或者直接告诉我您买的是什么。" if language == "zh" else
            f"I can't find {ref} among your orders. Please check the number (it's under "
            "\"My orders\"), or tell me what you bought.")


def order_facts(order: Order, language: Language) -> str:
    """The order as facts for the model: everything a template would say, plus the items'
    prices and the masked delivery address."""
    zh = language == "zh"
    lines = [status_reply(order, language)]
    for item in order.items:
        lines.append(f"商品：{item.title} ×{item.quantity}，单价 {money(item.price)}" if zh else
                     f"Item: {item.title} x{item.quantity}, {money(item.price)} each")
    lines.append(f"订单金额：{money(order.total)}；下单时间：{moment(order.placed_at, language)}"
                 if zh else f"Order total: {money(order.total)}; placed "
                 f"{moment(order.placed_at, language)}")
    if order.address is not None:
        a = order.address
        lines.append(f"收货地址：{a.city}（详细地址已隐藏），电话 {mask_phone(a.phone)}" if zh else
                     f"Delivery address: {a.city} (street hidden), phone {mask_phone(a.phone)}")
    if order.shipment is not None:
        for event in order.shipment.events[:-1][-3:]:
            lines.append(("物流：" if zh else "Tracking: ") + _event(event, language))
    return "\n".join(lines)
