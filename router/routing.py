"""Which model answers a request: a pure function of the parsed request and the model catalogue.

Rule: any image part in any message (earlier turns included, since the vision model must see the
whole conversation to resolve "this item") -> the vision model; otherwise the text model. A client
may name a model explicitly; naming one that cannot take the content is a 400, naming one that does
not exist a 404. No Ray, FastAPI or vLLM here, so the rule is tested table-driven without servers.
"""

from __future__ import annotations

from dataclasses import dataclass

from configs.schema import Modality
from router.api.errors import APIError, ErrorCode, printable
from router.api.protocol import ChatCompletionRequest

AUTO_MODEL = "auto"


@dataclass(frozen=True)
class CatalogEntry:
    """What routing needs to know of a served model."""

    name: str
    modality: Modality


@dataclass(frozen=True)
class RouteDecision:
    """The chosen model: `modality` is the route label used in logs and metrics."""

    model: str
    modality: Modality


def route_for_request(
    request: ChatCompletionRequest, catalog: tuple[CatalogEntry, ...]
) -> RouteDecision:
    """Pick the model for `request` from `catalog` (one text model, at most one vision model)."""
    needs_vision = request.has_images()
    requested = request.model
    if requested is None or requested == AUTO_MODEL:
        wanted: Modality = "vision" if needs_vision else "text"
        entry = next((e for e in catalog if e.modality == wanted), None)
        if entry is None:
            raise APIError.invalid_request(
                "This request carries an image, but this deployment serves no vision model. "
                "Send text only.",
                param="messages",
                code=ErrorCode.NO_VISION_MODEL,
            )
        return RouteDecision(model=entry.name, modality=entry.modality)

    entry = next((e for e in catalog if e.name == requested), None)
    if entry is None:
        available = ", ".join([AUTO_MODEL] + [e.name for e in catalog])
        raise APIError.model_not_found(
            f"The model '{printable(requested)}' does not exist. Available models: {available}."
        )
    if needs_vision and entry.modality != "vision":
        vision = next((e.name for e in catalog if e.modality == "vision"), None)
        hint = f" Use '{vision}' or 'auto'." if vision else ""
        raise APIError.invalid_request(
            f"The model '{entry.name}' takes text only, but the request carries an image.{hint}",
            param="model",
            code=ErrorCode.MODEL_CANNOT_TAKE_IMAGES,
        )
    return RouteDecision(model=entry.name, modality=entry.modality)
