"""The OpenAPI description of the API, for client developers (/docs when `api_docs` is on) and
for the schema-driven API tests.

The chat route reads its body itself (size-capped, parsed off the loop for large bodies, errors in
OpenAI's envelope), so FastAPI cannot see its schema; it is added here from the same pydantic
models that validate requests, so the document cannot drift from what the server accepts.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from configs.schema import AppConfig
from router.api.protocol import ChatCompletionRequest, ChatCompletionResponse

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "Invalid request (the error's `param` names the field).",
    "401": "Missing or unknown API key, or an X-Shopper-Token that does not verify.",
    "403": "The key may not use this shop, or may not send system/developer messages.",
    "404": "Unknown model or shop.",
    "408": "The request body did not arrive in time.",
    "413": "The body is larger than the server accepts.",
    "415": "The body is not JSON.",
    "429": "A per-key limit or the model's queue is full (see Retry-After).",
    "503": "No replica could take the request in time (see Retry-After).",
    "504": "The answer did not finish in time.",
}

CHAT_COMPLETIONS_OPENAPI: dict[str, Any] = {
    "parameters": [{
        "name": "X-Shop-Id", "in": "header", "required": False,
        "description": "The shop to answer for (GET /v1/shops); optional when the key serves "
        "one shop, or for the default shop.",
        "schema": {"type": "string"},
    }, {
        "name": "X-Shopper-Token", "in": "header", "required": False,
        "description": "The signed-in shopper: an HS256 JWT the shop's servers sign (aud = "
        "shop id, sub = shopper id, iat, exp). Order questions are answered from that "
        "shopper's orders; without it the shopper is anonymous; one that does not verify is a "
        "401 (shopper_token_invalid, shopper_token_expired, shopper_token_wrong_shop).",
        "schema": {"type": "string"},
    }],
    "requestBody": {
        "required": True,
        "content": {"application/json": {
            "schema": {"$ref": REF_TEMPLATE.format(model="ChatCompletionRequest")}}},
    },
    "responses": {
        "200": {"description": "A completion, or an SSE stream of chunks when `stream` is "
                "true.", "content": {
                    "application/json": {"schema": {
                        "$ref": REF_TEMPLATE.format(model="ChatCompletionResponse")}},
                    "text/event-stream": {"schema": {"type": "string"}}}},
        **{status: {"description": text} for status, text in ERROR_STATUSES.items()},
    },
}


def install_openapi(api: FastAPI, config: AppConfig) -> None:
    """Make `api.openapi()` include the chat schemas, this deployment's limits and choices
    (model ids, shop ids, bounds from `config.limits`) and the bearer-key security scheme."""

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is None:
            schema = get_openapi(title=api.title, version="1", description=api.description,
                                 routes=api.routes)
            components = schema.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for model in (ChatCompletionRequest, ChatCompletionResponse):
                generated = model.model_json_schema(ref_template=REF_TEMPLATE)
                schemas.update(generated.pop("$defs", {}))
                schemas[model.__name__] = generated
            _document_limits(schemas, config)
            shops = [shop.id for shop in config.shops.catalog] if config.shops else []
            operation = schema["paths"]["/v1/chat/completions"]["post"]
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "X-Shop-Id" and shops:
                    parameter["schema"] = {"type": "string", "enum": shops}
            components["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"apiKey": []}]
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi


def _document_limits(schemas: dict[str, Any], config: AppConfig) -> None:
    """The bounds router/api/validation.py enforces after parsing (they depend on the config, so
    they are not in the pydantic models), written into the document."""
    limits = config.limits
    request = schemas["ChatCompletionRequest"]["properties"]
    _bound(request["messages"], minItems=1, maxItems=limits.max_messages)
    _bound(request["model"], enum=[m.name for m in config.models] + ["auto"])
    _bound(request["n"], minimum=1, maximum=1)
    _bound(request["temperature"], minimum=0, maximum=2)
    _bound(request["top_p"], exclusiveMinimum=0, maximum=1)
    _bound(request["seed"], minimum=-(2**63), maximum=2**63 - 1)
    for name in ("max_tokens", "max_completion_tokens"):
        _bound(request[name], minimum=1, maximum=limits.max_completion_tokens)
    for member in request["stop"].get("anyOf", []):
        if member.get("type") == "string":
            _bound(member, minLength=1, maxLength=limits.max_stop_chars)
        elif member.get("type") == "array":
            _bound(member, maxItems=limits.max_stop_sequences)
            _bound(member["items"], minLength=1, maxLength=limits.max_stop_chars)
    _bound(request["tools"], maxItems=limits.max_tools)
    content = schemas["ChatMessage"]["properties"]["content"]
    for member in content.get("anyOf", []):
        _bound(member, **({"minLength": 1} if member.get("type") == "string"
                          else {"minItems": 1}))


def _bound(prop: dict[str, Any], **bounds: Any) -> None:
    """Add `bounds` to a property, or to the non-null members of its anyOf."""
    members = [m for m in prop.get("anyOf", []) if m.get("type") != "null"] or [prop]
    for member in members:
        member.update(bounds)
