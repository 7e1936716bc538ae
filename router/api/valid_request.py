"""The one validation step of a chat request: a body in, a `ValidRequest` out, or an APIError (4xx).

Each check runs once, cheapest and most certain first: the schema (large bodies in a worker
process, router/api/parse_offload.py), the message roles the caller's key allows, the shop (404
unknown, 403 not the key's), the shopper's X-Shopper-Token (401 when it does not verify for that
shop, shop/orders/identity.py), the route (which limits apply depends on the model), every limit
of config (router/api/validation.py), then the images: decoded and checked, remote ones fetched
from the domains the application and the shop allow (router/images/). Nothing after this step checks
the request again: the chat service and the shop layer take a `ValidRequest` as given.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from configs.schema import AppConfig, ModelConfig
from router.access.api_keys import Caller
from router.api.errors import APIError
from router.api.parse_offload import BodyParser
from router.api.protocol import ChatCompletionRequest
from router.api.validation import check_request
from router.images.inputs import ImageInputs, replace_image_urls
from router.images.remote import RemoteImageFetcher
from router.observability.metrics import RequestMetrics
from router.routing import CatalogEntry, RouteDecision, route_for_request
from shop.layer import (
    NoShops,
    PlainPassThrough,
    Shop,
    ShopLayer,
    ShopperTokenError,
    Turn,
    UnknownShopError,
)
from shop.orders.identity import Shopper


@dataclass(frozen=True)
class ValidRequest:
    """A chat request that passed every check, with what the checks decided."""

    request: ChatCompletionRequest
    route: RouteDecision
    model: ModelConfig
    shop: Shop | PlainPassThrough
    messages: list[dict[str, Any]]  # as OpenAI-shaped dicts, images inlined as data URLs
    shopper: Shopper | None = None  # X-Shopper-Token's shopper, verified; None: anonymous

    @property
    def thinking(self) -> bool | None:
        """The request's own enable_thinking (top level or chat_template_kwargs); None when it
        did not say."""
        return self.request.thinking()

    def answer_options(self) -> Hashable:
        """Everything the client set that shapes the answer's text (sampling, template
        switches): part of the response cache's key."""
        r = self.request
        return (r.temperature, r.top_p, r.requested_max_tokens(), tuple(r.stop_list()), r.seed,
                r.presence_penalty, r.frequency_penalty,
                tuple(sorted((r.chat_template_kwargs or {}).items())), r.thinking(),
                r.return_reasoning)

    def turn(self) -> Turn:
        """What the shop layer reads of this request."""
        return Turn(self.messages, self.thinking, self.model.name, self.model.sampling,
                    self.model.sampling.enable_thinking, self.answer_options(), self.shopper,
                    own_tools=self.own_tools, answer_forced=self.request.answer_forced)

    @property
    def own_tools(self) -> str | None:
        """What the client shapes the answer with ("tools", "response_format"), None when
        it does not: the shop then answers with its model only (shop/layer.py)."""
        r = self.request
        return "tools" if r.tools else "response_format" if r.json_format else None


class RequestValidator:
    """Turns request bodies into `ValidRequest`s for one application."""

    def __init__(self, config: AppConfig, shops: ShopLayer | NoShops,
                 images: ImageInputs | None = None):
        self._config = config
        self._limits = config.limits
        self._shops = shops
        self._models = {m.name: m for m in config.models}
        self._catalog = tuple(
            CatalogEntry(m.name, m.modality, m.tool_parser is not None,
                         m.reasoning_parser is not None) for m in config.models)
        self._images = images or ImageInputs(
            config.limits, RemoteImageFetcher(config.remote_images, config.limits.max_image_bytes))
        self.parser = BodyParser(config.limits)

    def shop_for(self, shop_header: str | None, caller: Caller) -> Shop | PlainPassThrough:
        """The shop X-Shop-Id names, if the caller may use it (404 unknown, 403 not the
        key's)."""
        try:
            return self._shops.select(shop_header, caller)
        except UnknownShopError as exc:
            raise APIError.shop_not_found(exc.shop_id) from None

    async def validate(self, body: bytes, caller: Caller, shop_header: str | None,
                       metrics: RequestMetrics, shopper_token: str | None = None
                       ) -> ValidRequest:
        request = await self.parser.parse(body)
        caller.check_roles([m.role for m in request.messages])
        caller.check_fields(request.backend_only_fields())
        shop = self.shop_for(shop_header, caller)
        try:
            shopper = shop.shopper(shopper_token)
        except ShopperTokenError as exc:
            raise APIError.shopper_token(exc.code, exc.message) from None
        route = route_for_request(request, self._catalog)
        metrics.routed(route.model, route.modality, stream=request.stream)
        model = self._models[route.model]
        check_request(request, model, self._limits)
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        if request.images:
            domains = self._config.remote_images.allowed_domains + shop.image_domains
            inline, checked_s = await self._images.inline(request.images, domains,
                                                          metrics.image_fetched)
            metrics.images_checked(len(request.images), checked_s)
            replace_image_urls(messages, inline)
        return ValidRequest(request, route, model, shop, messages, shopper)
