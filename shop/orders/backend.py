"""The client of one shop's order system (the contract: shop/orders/contract.py).

Every call is bounded three ways, so a slow or broken order system costs a shopper at most
`timeout_s` and never slows another shop:
- a deadline of `timeout_s` over the whole call, waiting for a free slot included;
- at most `max_concurrent` calls in flight per ingress replica;
- a circuit breaker per shop (purgatory): after `breaker_failures` failures in a row calls fail
  at once for `breaker_open_s`, then one is tried again.
A timeout, a refused connection, a 5xx (or any status but 200/404), and a reply that does not
fit the contract are all `OrderSystemUnavailable`: the caller hands the shopper to a person,
never guesses a status. A 404 is an answer (no such order for this shopper), not a failure.

Paths are built from the configured base URL and URL-quoted ids only: nothing a shopper types
can change the host or the path's shape.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError
from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import OpenedState

from shop.config import OrderBackendConfig
from shop.orders.contract import Order, OrderList, OrderSummary

Model = TypeVar("Model", bound=BaseModel)
# httpx logs every request's URL at INFO ("HTTP Request: GET .../shoppers/u1001/orders/MT..."),
# and httpcore its traffic at DEBUG: a shopper's id and order numbers in every replica's log.
# Order data is never logged, so neither logs below WARNING in a process that looks orders up.
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).setLevel(logging.WARNING)
# (shop, state): the breaker of a shop's order system opened, half-opened or closed.
BreakerListener = Callable[[str, str], None]


class OrderSystemUnavailable(Exception):
    """The order system gave no usable answer; `reason` is a metric label."""

    REASONS = ("timeout", "connection", "bad_status", "malformed", "breaker_open")

    def __init__(self, reason: str, detail: str = ""):
        assert reason in self.REASONS, reason
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


class _NotFound(Exception):
    """A 404: counts as a success for the breaker (the order system answered)."""


class OrderBackend:
    """One shop's order system, shared by all of the shop's requests on an ingress replica."""

    def __init__(self, shop_id: str, config: OrderBackendConfig,
                 on_breaker: BreakerListener | None = None,
                 transport: httpx.AsyncBaseTransport | None = None):
        self.shop_id = shop_id
        self.config = config
        self._base = config.base_url.rstrip("/")
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._breakers = AsyncCircuitBreakerFactory(
            default_threshold=config.breaker_failures, default_ttl=config.breaker_open_s,
            exclude=[_NotFound])
        if on_breaker is not None:
            self._breakers.add_listener(
                lambda name, kind, event: on_breaker(shop_id, event.state)
                if kind == "state_changed" else None)

    async def recent(self, shopper_id: str, limit: int,
                     tracking_number: str | None = None) -> tuple[OrderSummary, ...]:
        """The shopper's orders, newest first (only those shipped under `tracking_number` when
        given)."""
        params: dict[str, str | int] = {"limit": limit}
        if tracking_number is not None:
            params["tracking_number"] = tracking_number
        found = await self._call(f"/shoppers/{_segment(shopper_id)}/orders", params, OrderList)
        return () if found is None else found.orders

    async def order(self, shopper_id: str, order_id: str) -> Order | None:
        """One of the shopper's orders; None when the shopper has no order of that id."""
        return await self._call(
            f"/shoppers/{_segment(shopper_id)}/orders/{_segment(order_id)}", {}, Order)

    async def _call(self, path: str, params: dict, model: type[Model]) -> Model | None:
        try:
            async with asyncio.timeout(self.config.timeout_s):
                breaker = await self._breakers.get_breaker(self.shop_id)
                async with breaker:
                    return await self._get(path, params, model)
        except _NotFound:
            return None
        except OpenedState:
            raise OrderSystemUnavailable("breaker_open") from None
        except TimeoutError:
            # The breaker saw a CancelledError leave its block, which it counts as a failure.
            raise OrderSystemUnavailable("timeout", f"no answer within "
                                                    f"{self.config.timeout_s} s") from None

    async def _get(self, path: str, params: dict, model: type[Model]) -> Model:
        client = self._http()
        async with self._slots:
            try:
                response = await client.get(self._base + path, params=params)
            except httpx.TimeoutException:
                raise OrderSystemUnavailable("timeout") from None
            except httpx.HTTPError as exc:
                raise OrderSystemUnavailable("connection", type(exc).__name__) from None
        if response.status_code == 404:
            raise _NotFound
        if response.status_code != 200:
            raise OrderSystemUnavailable("bad_status", str(response.status_code))
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise OrderSystemUnavailable("malformed", f"{exc.error_count()} errors") from None

    def _http(self) -> httpx.AsyncClient:
        """The HTTP client, made on first use inside the serving event loop (and again if the
        loop changes: its connections and the semaphore belong to one loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._loop = loop
            headers = {"Accept": "application/json"}
            token = os.environ.get(self.config.token_env, "") if self.config.token_env else ""
            if token:
                headers["Authorization"] = f"Bearer {token}"
            limit = self.config.max_concurrent
            self._client = httpx.AsyncClient(
                headers=headers, timeout=self.config.timeout_s, transport=self._transport,
                follow_redirects=False, trust_env=False,
                limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit))
            self._slots = asyncio.Semaphore(limit)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _segment(value: str) -> str:
    """One path segment: every character but unreserved ones quoted ("../x" stays one segment).
    A segment that is only dots is percent-encoded too: httpx removes "." and ".." segments
    from a URL's path (RFC 3986 dot-segment removal), which would call another path."""
    if value in (".", ".."):
        return value.replace(".", "%2E")
    return quote(value, safe="")
