"""Which model answers a request: a pure function of the parsed request and the model catalogue.

Rule: any image part in any message (earlier turns included, since the vision model must see the
whole conversation to resolve "this item") -> the vision model; otherwise the text model. A client
may name a model explicitly; naming one that cannot take the content is a 400, naming one that does
not exist a 404. A request with tools or a JSON response format (or asking for the model's
reasoning) must land on a model whose config serves them, else a 400 (`tools_not_supported`):
with an image that is the vision model, which serves tools only where its config says so. No
Ray, FastAPI or vLLM here, so the rule is tested table-driven without servers.
"""

from __future__ import annotations

from dataclasses import dataclass

from configs.schema import Modality
from router.api.errors import APIError, ErrorKind
from router.api.protocol import ChatCompletionRequest

AUTO_MODEL = "auto"


@dataclass(frozen=True)
class CatalogEntry:
    """What routing needs to know of a served model."""

    name: str
    modality: Modality
    tools: bool = False  # serves tools and response formats (config `tool_parser`)
    reasoning: bool = False  # separates its reasoning (config `reasoning_parser`)


@dataclass(frozen=True)
class RouteDecision:
    """The chosen model: `modality` is the route label used in logs and metrics."""

    model: str
    modality: Modality


def route_for_request(
    request: ChatCompletionRequest, catalog: tuple[CatalogEntry, ...]
) -> RouteDecision:
    """Pick the model for `request` from `catalog` (one text model, at most one vision model)."""
    entry = _model_for_content(request, catalog)
    if request.structured and not entry.tools:
        tool_model = next((e.name for e in catalog if e.tools), None)
        if request.has_images():
            why = (" with images (requests that carry an image go to it); send the tools without"
                   " the image" if tool_model else " with images")
        else:
            why = f"; send them to '{tool_model}'" if tool_model else ""
        raise APIError.of(ErrorKind.MODEL_WITHOUT_TOOLS, model=entry.name, why=why,
                          param="tools" if request.tools else "response_format")
    if request.return_reasoning and not entry.reasoning:
        raise APIError.of(ErrorKind.MODEL_WITHOUT_REASONING, model=entry.name)
    return RouteDecision(model=entry.name, modality=entry.modality)


def _model_for_content(request: ChatCompletionRequest,
                       catalog: tuple[CatalogEntry, ...]) -> CatalogEntry:
    needs_vision = request.has_images()
    requested = request.model
    if requested is None or requested == AUTO_MODEL:
        wanted: Modality = "vision" if needs_vision else "text"
        entry = next((e for e in catalog if e.modality == wanted), None)
        if entry is None:
            raise APIError.of(ErrorKind.NO_VISION_MODEL)
        return entry

    entry = next((e for e in catalog if e.name == requested), None)
    if entry is None:
        raise APIError.of(ErrorKind.MODEL_NOT_FOUND, model=requested,
                          available=", ".join([AUTO_MODEL] + [e.name for e in catalog]))
    if needs_vision and entry.modality != "vision":
        vision = next((e.name for e in catalog if e.modality == "vision"), None)
        if vision is None:
            raise APIError.of(ErrorKind.TEXT_MODEL_GIVEN_IMAGE_NO_VISION, model=entry.name)
        raise APIError.of(ErrorKind.TEXT_MODEL_GIVEN_IMAGE, model=entry.name, vision_model=vision)
    return entry
