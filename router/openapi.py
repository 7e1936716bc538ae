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

from router.protocol import ChatCompletionRequest, ChatCompletionResponse

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_STATUSES = {
    "400": "Invalid request (the error's `param` names the field).",
    "401": "Missing or unknown API key.",
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


def install_openapi(api: FastAPI) -> None:
    """Make `api.openapi()` include the chat schemas and the bearer-key security scheme."""

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
            components["securitySchemes"] = {"apiKey": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"apiKey": []}]
            api.openapi_schema = schema
        return api.openapi_schema

    api.openapi = openapi
