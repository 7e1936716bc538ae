"""The reference order service's demo data (order_service/seed.py) and the local config agree:
every demo shopper the chat page offers has orders, and every seeded shopper can sign in."""

from __future__ import annotations

from collections import defaultdict

from order_service.seed import ORDERS, seed_rows


def test_the_local_configs_demo_shoppers_are_exactly_the_seeded_ones(local_config):
    seeded = defaultdict(set)
    for order in ORDERS:
        seeded[order["shop"]].add(order["shopper"])
    listed = {shop.id: set(shop.identity.demo_shoppers) for shop in local_config.shops.catalog
              if shop.identity is not None}
    assert listed == dict(seeded)


def test_the_seed_covers_every_status_and_refund_state():
    from typing import get_args

    from shop.orders.contract import OrderStatus, RefundState

    rows = seed_rows()
    assert {o["status"] for o in rows["orders"]} == set(get_args(OrderStatus))
    assert {r["state"] for r in rows["refunds"]} == set(get_args(RefundState))
