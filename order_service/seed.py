"""Demo orders for the demo shops, dated relative to the moment they are seeded (so "shipped two
days ago" stays true whenever the local stack starts), across every status of the contract.

The demo shoppers (their ids are what the chat page's "Sign in as" and scripts/shopper_token.py
mint tokens for; configs/local-cpu.yaml lists them per shop):

| shop | shopper | writes | orders |
| --- | --- | --- | --- |
| demo-apparel | u1001 | zh | in transit; delivered and refunded; cancelled |
| demo-apparel | u1002 | en | out for delivery; delivered with a refund requested; packed |
| demo-apparel | u1003 | zh | delivery exception; shipped; unpaid |
| demo-electronics | e2001 | zh | in transit; delivered, refund rejected; delivered |
| demo-electronics | e2002 | en | shipped; refund approved; paid; cancelled |
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

SHANGHAI = timezone(timedelta(hours=8))

# (shop, shopper, serial, status, days ago placed, items [(sku, title, qty, price)], extras)
_APPAREL_ZH_ADDRESS = ("李伟", "13812341234", "上海市", "浦东新区张杨路 500 号 12 楼")
_APPAREL_EN_ADDRESS = ("Emma Clarke", "+852 6123 4567", "Hong Kong", "18 Harbour Road, Wan Chai")
_APPAREL_ZH_ADDRESS_2 = ("王芳", "13698765432", "成都市", "锦江区春熙路 88 号")
_ELECTRONICS_ZH_ADDRESS = ("张强", "15011112222", "北京市", "海淀区中关村大街 1 号")
_ELECTRONICS_EN_ADDRESS = ("Sam Lee", "13555556666", "Shenzhen", "Nanshan, Keyuan Road 9")

ORDERS = [
    # demo-apparel, u1001 (zh)
    dict(shop="demo-apparel", shopper="u1001", serial=1, status="in_transit", days=3,
         items=[("AP-KNT-001", "美利奴羊毛圆领毛衣 灰色 L", 1, "459.00")],
         carrier="顺丰速运", tracking="SF1428730095621", shipped_days=2, promised_in=2,
         events=[("picked_up", "杭州"), ("departed", "杭州转运中心"), ("arrived", "上海转运中心"),
                 ("in_transit", "上海")], address=_APPAREL_ZH_ADDRESS),
    dict(shop="demo-apparel", shopper="u1001", serial=2, status="delivered", days=12,
         items=[("AP-TEE-001", "经典纯棉圆领T恤 白色 M", 2, "99.00")],
         carrier="中通快递", tracking="73519204816337", shipped_days=11,
         events=[("picked_up", "杭州"), ("in_transit", "上海"), ("out_for_delivery", "上海浦东"),
                 ("delivered", "上海浦东")], delivered_days=9,
         refund=("refunded", "99.00", 7, 5, "尺码偏小，退一件"), address=_APPAREL_ZH_ADDRESS),
    dict(shop="demo-apparel", shopper="u1001", serial=3, status="cancelled", days=30,
         items=[("AP-KNT-002", "山羊绒高领毛衣 燕麦色 M", 1, "899.00")],
         cancel_reason="买家付款前取消", address=_APPAREL_ZH_ADDRESS),
    # demo-apparel, u1002 (en)
    dict(shop="demo-apparel", shopper="u1002", serial=4, status="out_for_delivery", days=4,
         items=[("AP-SHT-002", "Women's linen-blend relaxed shirt, white, M", 1, "329.00"),
                ("AP-TEE-003", "Women's slim-fit ribbed long-sleeve tee, black, S", 1, "159.00")],
         carrier="SF Express", tracking="SF1428730099034", shipped_days=3, promised_in=0,
         events=[("picked_up", "Hangzhou"), ("departed", "Hangzhou hub"),
                 ("arrived", "Hong Kong hub"), ("out_for_delivery", "Wan Chai")],
         address=_APPAREL_EN_ADDRESS),
    dict(shop="demo-apparel", shopper="u1002", serial=5, status="delivered", days=10,
         items=[("AP-KNT-003", "Chunky cable-knit cardigan, cream, M", 1, "499.00")],
         carrier="SF Express", tracking="SF1428730087712", shipped_days=9,
         events=[("picked_up", "Hangzhou"), ("delivered", "Wan Chai")], delivered_days=7,
         refund=("requested", "499.00", 1, None, "Too large"), address=_APPAREL_EN_ADDRESS),
    dict(shop="demo-apparel", shopper="u1002", serial=6, status="packed", days=1,
         items=[("AP-TEE-004", "Breton striped long-sleeve top, navy stripe, S", 1, "189.00")],
         promised_in=4, address=_APPAREL_EN_ADDRESS),
    # demo-apparel, u1003 (zh)
    dict(shop="demo-apparel", shopper="u1003", serial=7, status="delivery_exception", days=6,
         items=[("AP-SHT-004", "法兰绒格纹衬衫外套 红格 XL", 1, "369.00")],
         carrier="圆通速递", tracking="YT7392018463251", shipped_days=5, promised_in=-1,
         events=[("picked_up", "杭州"), ("arrived", "成都转运中心"),
                 ("exception", "成都锦江")], address=_APPAREL_ZH_ADDRESS_2),
    dict(shop="demo-apparel", shopper="u1003", serial=8, status="shipped", days=1,
         items=[("AP-TEE-002", "重磅落肩宽松T恤 奶白色 L", 1, "139.00")],
         carrier="中通快递", tracking="73519204820941", shipped_days=0, promised_in=3,
         events=[("picked_up", "杭州")], address=_APPAREL_ZH_ADDRESS_2),
    dict(shop="demo-apparel", shopper="u1003", serial=9, status="unpaid", days=0,
         items=[("AP-SHT-001", "男款牛津纺扣领衬衫 浅蓝 L", 1, "269.00")],
         address=_APPAREL_ZH_ADDRESS_2),
    # demo-electronics, e2001 (zh)
    dict(shop="demo-electronics", shopper="e2001", serial=1, status="in_transit", days=2,
         items=[("EL-PWB-20K", "伏特路20000mAh 65W笔记本充电宝 黑色", 1, "299.00")],
         carrier="京东快递", tracking="JDX018274650321", shipped_days=1, promised_in=1,
         events=[("picked_up", "深圳"), ("departed", "深圳分拣中心"), ("arrived", "北京分拣中心")],
         address=_ELECTRONICS_ZH_ADDRESS),
    dict(shop="demo-electronics", shopper="e2001", serial=2, status="delivered", days=20,
         items=[("EL-CHG-065", "伏特路65W三口氮化镓充电器（2C1A） 白色", 1, "199.00")],
         carrier="京东快递", tracking="JDX018274611190", shipped_days=19,
         events=[("picked_up", "深圳"), ("delivered", "北京海淀")], delivered_days=17,
         refund=("rejected", "199.00", 3, 2, "已超过7天无理由退货期"),
         address=_ELECTRONICS_ZH_ADDRESS),
    dict(shop="demo-electronics", shopper="e2001", serial=3, status="delivered", days=40,
         items=[("EL-CBL-060", "伏特路双USB-C 60W编织快充线 黑色 1m", 2, "49.00")],
         carrier="京东快递", tracking="JDX018274500872", shipped_days=39,
         events=[("picked_up", "深圳"), ("delivered", "北京海淀")], delivered_days=37,
         address=_ELECTRONICS_ZH_ADDRESS),
    # demo-electronics, e2002 (en)
    dict(shop="demo-electronics", shopper="e2002", serial=4, status="shipped", days=1,
         items=[("EL-CHG-035", "Voltway 35W dual USB-C GaN charger, white", 1, "129.00")],
         carrier="SF Express", tracking="SF1428730102286", shipped_days=0, promised_in=2,
         events=[("picked_up", "Shenzhen")], address=_ELECTRONICS_EN_ADDRESS),
    dict(shop="demo-electronics", shopper="e2002", serial=5, status="delivered", days=9,
         items=[("EL-PWB-MAG", "Voltway 5000mAh Qi2 magnetic power bank, titanium grey", 1,
                 "239.00")],
         carrier="SF Express", tracking="SF1428730080145", shipped_days=8,
         events=[("picked_up", "Shenzhen"), ("delivered", "Shenzhen Nanshan")], delivered_days=7,
         refund=("approved", "239.00", 2, 1, "Does not hold charge"),
         address=_ELECTRONICS_EN_ADDRESS),
    dict(shop="demo-electronics", shopper="e2002", serial=6, status="paid", days=0,
         items=[("EL-CBL-240", "Voltway 240W USB-C cable with e-marker, black, 2m", 1, "89.00")],
         promised_in=3, address=_ELECTRONICS_EN_ADDRESS),
    dict(shop="demo-electronics", shopper="e2002", serial=7, status="cancelled", days=15,
         items=[("EL-CHG-W15", "Voltway Qi2 15W magnetic wireless charging pad, white", 1,
                 "159.00")],
         cancel_reason="Out of stock in the chosen colour", address=_ELECTRONICS_EN_ADDRESS),
]
_PREFIX = {"demo-apparel": "MT", "demo-electronics": "VW"}


def order_id(shop: str, placed: datetime, serial: int) -> str:
    return f"{_PREFIX[shop]}{placed:%Y%m%d}-{serial:04d}"


def seed_rows(now: datetime | None = None) -> dict[str, list[dict]]:
    """Every table's rows for the demo orders, dated relative to `now`."""
    now = (now or datetime.now(SHANGHAI)).astimezone(SHANGHAI).replace(microsecond=0)
    rows: dict[str, list[dict]] = {t: [] for t in
                                   ("orders", "items", "shipments", "tracking_events", "refunds")}
    for spec in ORDERS:
        shop = spec["shop"]
        placed = now - timedelta(days=spec["days"], hours=2)
        oid = order_id(shop, placed, spec["serial"])
        total = sum(Decimal(price) * qty for _, _, qty, price in spec["items"])
        name, phone, city, line = spec["address"]
        promised = spec.get("promised_in")
        delivered = spec.get("delivered_days")
        rows["orders"].append(dict(
            shop=shop, id=oid, shopper=spec["shopper"], placed_at=placed.isoformat(),
            status=spec["status"], total_amount=f"{total:.2f}", currency="CNY",
            promised_delivery=None if promised is None else
            (now + timedelta(days=promised)).date().isoformat(),
            delivered_at=None if delivered is None else
            (now - timedelta(days=delivered, hours=5)).isoformat(),
            cancel_reason=spec.get("cancel_reason"), address_name=name, address_phone=phone,
            address_city=city, address_line=line))
        for position, (sku, title, qty, price) in enumerate(spec["items"]):
            rows["items"].append(dict(shop=shop, order_id=oid, position=position, sku=sku,
                                      title=title, quantity=qty, price=price))
        if "tracking" in spec:
            rows["shipments"].append(dict(shop=shop, order_id=oid, carrier=spec["carrier"],
                                          tracking_number=spec["tracking"]))
            shipped = now - timedelta(days=spec["shipped_days"], hours=6)
            events = spec["events"]
            end = now - timedelta(hours=1) if delivered is None else \
                now - timedelta(days=delivered, hours=5)
            step = (end - shipped) / max(1, len(events) - 1)
            for position, (code, location) in enumerate(events):
                rows["tracking_events"].append(dict(
                    shop=shop, order_id=oid, position=position,
                    time=(shipped + step * position).isoformat(), code=code, location=location,
                    description=None))
        if "refund" in spec:
            state, amount, requested_days, updated_days, reason = spec["refund"]
            rows["refunds"].append(dict(
                shop=shop, order_id=oid, state=state, amount=amount,
                requested_at=(now - timedelta(days=requested_days)).isoformat(),
                updated_at=None if updated_days is None else
                (now - timedelta(days=updated_days)).isoformat(), reason=reason))
    return rows
