"""The order system's contract: what the shop's order API returns (docs/order-api.md, its
OpenAPI document docs/order-api.openapi.json generated from these models).

Two calls, both scoped to one shopper, so the order system itself refuses another shopper's
order:
- `GET {base_url}/shoppers/{shopper_id}/orders?limit=N[&tracking_number=T]`: `OrderList`, the
  shopper's orders newest first (summaries);
- `GET {base_url}/shoppers/{shopper_id}/orders/{order_id}`: one `Order`, or 404.

The client (shop/orders/backend.py) parses every reply with these models, strictly: a reply that
does not fit is a failure of the order system, never a guess at a status. The reference service
(order_service/) serves them.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OrderStatus = Literal[
    "unpaid", "paid", "packed", "shipped", "in_transit", "out_for_delivery", "delivered",
    "delivery_exception", "cancelled"]
RefundState = Literal["requested", "approved", "refunded", "rejected"]
TrackingCode = Literal[
    "picked_up", "in_transit", "arrived", "departed", "out_for_delivery", "delivered",
    "exception"]
# Statuses of an order with the carrier and not yet delivered: a parcel exists and is moving.
ON_THE_WAY: frozenset[str] = frozenset(
    {"shipped", "in_transit", "out_for_delivery", "delivery_exception"})


class ContractModel(BaseModel):
    # Unknown fields are ignored (an order system may send more than the contract names);
    # missing or mistyped ones are errors.
    model_config = ConfigDict(extra="ignore", frozen=True)


class Money(ContractModel):
    amount: Decimal = Field(..., ge=0, description="Decimal amount, e.g. 299.00.")
    currency: str = Field(..., pattern=r"^[A-Z]{3}$", description="ISO 4217, e.g. CNY.")


class OrderItem(ContractModel):
    sku: str
    title: str = Field(..., min_length=1, description="As the shopper saw it when ordering.")
    quantity: int = Field(..., ge=1)
    price: Money = Field(..., description="Unit price paid.")


class TrackingEvent(ContractModel):
    time: datetime = Field(..., description="With its UTC offset.")
    code: TrackingCode = Field(..., description="What happened, as a code the assistant words "
                               "in the shopper's language.")
    location: str | None = Field(None, description="Where, as the carrier gives it.")
    description: str | None = Field(None, description="The carrier's own text (not shown to "
                                    "shoppers verbatim in templates).")


class Shipment(ContractModel):
    carrier: str = Field(..., min_length=1, description="e.g. SF Express / 顺丰速运.")
    tracking_number: str = Field(..., min_length=4)
    events: tuple[TrackingEvent, ...] = Field((), description="Oldest first.")


class Refund(ContractModel):
    state: RefundState
    amount: Money
    requested_at: datetime
    updated_at: datetime | None = None
    reason: str | None = None


class Address(ContractModel):
    name: str
    phone: str
    city: str
    line: str = Field(..., description="Street address (never shown to shoppers or the model).")


class Order(ContractModel):
    id: str = Field(..., min_length=1, max_length=64)
    placed_at: datetime
    status: OrderStatus
    items: tuple[OrderItem, ...] = Field(..., min_length=1)
    total: Money
    shipment: Shipment | None = Field(None, description="Once shipped.")
    promised_delivery: date | None = Field(None, description="The date the shop promised at "
                                           "checkout, if any.")
    delivered_at: datetime | None = None
    refund: Refund | None = None
    cancel_reason: str | None = None
    address: Address | None = None


class OrderSummary(ContractModel):
    id: str = Field(..., min_length=1, max_length=64)
    placed_at: datetime
    status: OrderStatus
    item_titles: tuple[str, ...] = Field(..., min_length=1)
    total: Money
    tracking_number: str | None = None
    refund_state: RefundState | None = None


class OrderList(ContractModel):
    orders: tuple[OrderSummary, ...] = Field(..., description="Newest first.")


class ErrorBody(ContractModel):
    error: str = Field(..., description="not_found, invalid_request or unauthorized.")
