"""The reference order service's HTTP API: the contract's two calls per shop under
/shops/{shop}/ (a shop's `orders.backend.base_url` is http://host:port/shops/<shop-id>), a
health check, and, only when started with --allow-faults, a switch the chaos tests use to make
it slow, failing or malformed.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from order_service.store import OrderStore
from shop.orders.contract import ErrorBody, Order, OrderList

FaultMode = Literal["none", "slow", "error", "garbage"]


class Fault(BaseModel):
    mode: FaultMode = "none"
    delay_s: float = Field(5.0, ge=0, le=120)


@dataclass
class ServiceState:
    store: OrderStore
    token: str | None  # the bearer token callers must send; None: no auth
    allow_faults: bool
    fault: Fault


def create_app(store: OrderStore, token: str | None = None,
               allow_faults: bool = False) -> FastAPI:
    app = FastAPI(title="Reference order service", version="1.0.0",
                  description="The order-system contract of docs/order-api.md.")
    state = ServiceState(store, token, allow_faults, Fault())

    def authorized(request: Request) -> None:
        if state.token is None:
            return
        sent = request.headers.get("authorization", "")
        if not secrets.compare_digest(sent.encode(), f"Bearer {state.token}".encode()):
            raise HTTPException(401, "unauthorized")

    async def faulted() -> Response | None:
        fault = state.fault
        if fault.mode == "slow":
            await asyncio.sleep(fault.delay_s)
        elif fault.mode == "error":
            return JSONResponse({"error": "internal"}, status_code=503)
        elif fault.mode == "garbage":
            return PlainTextResponse('{"orders": [{"id": 12, "status": "teleported"', 200,
                                     media_type="application/json")
        return None

    @app.exception_handler(HTTPException)
    async def _error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.get("/shops/{shop}/shoppers/{shopper_id}/orders", response_model=OrderList,
             responses={401: {"model": ErrorBody}}, dependencies=[Depends(authorized)])
    async def list_orders(shop: str, shopper_id: str,
                          limit: int = Query(5, ge=1, le=50),
                          tracking_number: str | None = Query(None, max_length=64)):
        """The shopper's orders in this shop, newest first (only those shipped under
        `tracking_number` when given)."""
        broken = await faulted()
        if broken is not None:
            return broken
        orders = await asyncio.to_thread(store.recent, shop, shopper_id, limit, tracking_number)
        return OrderList(orders=orders)

    @app.get("/shops/{shop}/shoppers/{shopper_id}/orders/{order_id}", response_model=Order,
             responses={404: {"model": ErrorBody}, 401: {"model": ErrorBody}},
             dependencies=[Depends(authorized)])
    async def get_order(shop: str, shopper_id: str, order_id: str):
        """One order, if it is this shopper's in this shop; 404 otherwise (the same reply for
        an order that does not exist and one that is someone else's)."""
        broken = await faulted()
        if broken is not None:
            return broken
        order = await asyncio.to_thread(store.order, shop, shopper_id, order_id)
        if order is None:
            raise HTTPException(404, "not_found")
        return order

    if allow_faults:
        @app.put("/admin/fault", include_in_schema=False)
        async def set_fault(fault: Fault) -> dict:
            state.fault = fault
            return fault.model_dump()

    return app
