"""The reference order service's SQLite database: the tables, and reading an order back in the
contract's shape (shop/orders/contract.py).

One connection per call (SQLite opens in microseconds; the service is a reference, not a
high-volume system), WAL so reads never wait on the seeding writer.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shop.orders.contract import Order, OrderSummary

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    shop TEXT NOT NULL, id TEXT NOT NULL, shopper TEXT NOT NULL, placed_at TEXT NOT NULL,
    status TEXT NOT NULL, total_amount TEXT NOT NULL, currency TEXT NOT NULL,
    promised_delivery TEXT, delivered_at TEXT, cancel_reason TEXT,
    address_name TEXT, address_phone TEXT, address_city TEXT, address_line TEXT,
    PRIMARY KEY (shop, id));
CREATE INDEX IF NOT EXISTS orders_by_shopper ON orders (shop, shopper, placed_at);
CREATE TABLE IF NOT EXISTS items (
    shop TEXT NOT NULL, order_id TEXT NOT NULL, position INTEGER NOT NULL, sku TEXT NOT NULL,
    title TEXT NOT NULL, quantity INTEGER NOT NULL, price TEXT NOT NULL,
    PRIMARY KEY (shop, order_id, position));
CREATE TABLE IF NOT EXISTS shipments (
    shop TEXT NOT NULL, order_id TEXT NOT NULL, carrier TEXT NOT NULL,
    tracking_number TEXT NOT NULL, PRIMARY KEY (shop, order_id));
CREATE INDEX IF NOT EXISTS shipments_by_number ON shipments (shop, tracking_number);
CREATE TABLE IF NOT EXISTS tracking_events (
    shop TEXT NOT NULL, order_id TEXT NOT NULL, position INTEGER NOT NULL, time TEXT NOT NULL,
    code TEXT NOT NULL, location TEXT, description TEXT,
    PRIMARY KEY (shop, order_id, position));
CREATE TABLE IF NOT EXISTS refunds (
    shop TEXT NOT NULL, order_id TEXT NOT NULL, state TEXT NOT NULL, amount TEXT NOT NULL,
    requested_at TEXT NOT NULL, updated_at TEXT, reason TEXT, PRIMARY KEY (shop, order_id));
"""
TABLES = ("orders", "items", "shipments", "tracking_events", "refunds")


class OrderStore:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=5)
        db.row_factory = sqlite3.Row
        try:
            with db:
                yield db
        finally:
            db.close()

    def is_empty(self) -> bool:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM orders").fetchone()[0] == 0

    def replace_all(self, rows: dict[str, list[dict]]) -> None:
        """Every table's rows at once (the seed), in one transaction."""
        with self._connect() as db:
            for table in TABLES:
                db.execute(f"DELETE FROM {table}")
            for table, table_rows in rows.items():
                for row in table_rows:
                    columns = ", ".join(row)
                    marks = ", ".join("?" for _ in row)
                    db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                               tuple(row.values()))

    def recent(self, shop: str, shopper: str, limit: int,
               tracking_number: str | None = None) -> list[OrderSummary]:
        query = ("SELECT o.*, s.tracking_number, r.state AS refund_state FROM orders o "
                 "LEFT JOIN shipments s ON s.shop = o.shop AND s.order_id = o.id "
                 "LEFT JOIN refunds r ON r.shop = o.shop AND r.order_id = o.id "
                 "WHERE o.shop = ? AND o.shopper = ?")
        params: list = [shop, shopper]
        if tracking_number is not None:
            query += " AND s.tracking_number = ?"
            params.append(tracking_number)
        query += " ORDER BY o.placed_at DESC LIMIT ?"
        params.append(limit)
        with self._connect() as db:
            rows = db.execute(query, params).fetchall()
            return [OrderSummary(
                id=row["id"], placed_at=row["placed_at"], status=row["status"],
                item_titles=[r["title"] for r in db.execute(
                    "SELECT title FROM items WHERE shop = ? AND order_id = ? ORDER BY position",
                    (shop, row["id"]))],
                total={"amount": row["total_amount"], "currency": row["currency"]},
                tracking_number=row["tracking_number"], refund_state=row["refund_state"])
                for row in rows]

    def order(self, shop: str, shopper: str, order_id: str) -> Order | None:
        """The order, only if it is this shopper's in this shop."""
        with self._connect() as db:
            row = db.execute("SELECT * FROM orders WHERE shop = ? AND id = ? AND shopper = ?",
                             (shop, order_id, shopper)).fetchone()
            if row is None:
                return None
            key = (shop, order_id)
            items = db.execute("SELECT * FROM items WHERE shop = ? AND order_id = ? "
                               "ORDER BY position", key).fetchall()
            shipment = db.execute("SELECT * FROM shipments WHERE shop = ? AND order_id = ?",
                                  key).fetchone()
            events = db.execute("SELECT * FROM tracking_events WHERE shop = ? AND order_id = ? "
                                "ORDER BY position", key).fetchall()
            refund = db.execute("SELECT * FROM refunds WHERE shop = ? AND order_id = ?",
                                key).fetchone()
        currency = row["currency"]
        return Order(
            id=row["id"], placed_at=row["placed_at"], status=row["status"],
            items=[{"sku": i["sku"], "title": i["title"], "quantity": i["quantity"],
                    "price": {"amount": i["price"], "currency": currency}} for i in items],
            total={"amount": row["total_amount"], "currency": currency},
            shipment=None if shipment is None else {
                "carrier": shipment["carrier"], "tracking_number": shipment["tracking_number"],
                "events": [{"time": e["time"], "code": e["code"], "location": e["location"],
                            "description": e["description"]} for e in events]},
            promised_delivery=row["promised_delivery"], delivered_at=row["delivered_at"],
            refund=None if refund is None else {
                "state": refund["state"], "amount": {"amount": refund["amount"],
                                                     "currency": currency},
                "requested_at": refund["requested_at"], "updated_at": refund["updated_at"],
                "reason": refund["reason"]},
            cancel_reason=row["cancel_reason"],
            address=None if row["address_name"] is None else {
                "name": row["address_name"], "phone": row["address_phone"],
                "city": row["address_city"], "line": row["address_line"]})
