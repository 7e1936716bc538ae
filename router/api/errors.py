"""The OpenAI error envelope, every error code the API answers with, and the one place every
exception becomes an HTTP status.

`{"error": {"message", "type", "param", "code"}}` is what OpenAI SDKs parse. Client errors (4xx)
carry a message the client developer can act on. Server errors (5xx) never carry exception text or
tracebacks (they may hold internal addresses or paths, CVE-2026-22778); they carry the request id,
and the full exception goes to the server log under the same id.

`ErrorCode` is the single table of codes: every raise names a member, `APIError` refuses any other
string, and the metric `reason` label set is derived from it (router/observability/metrics.py), so a new code is
counted the moment it is added here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import StrEnum

from model_server.engine_protocol import (
    ContextLengthError,
    EngineInputError,
    EngineUnavailableError,
)
from router.api.protocol import sse_data

logger = logging.getLogger("cs_assistant.router")

# Retry-After for a dead engine reported past the admission layer. Requests through Serve never
# get it: router/replica_client.py retries them or answers with the model's measured
# `replica_wait.replacement_s`. This is the fallback for a streamer without that layer.
ENGINE_RESTART_RETRY_AFTER_S = 15


class ErrorCode(StrEnum):
    """Every `error.code` this API sends, and every `reason` label of the failure metrics."""

    # Request body and schema (400, 413, 415)
    INVALID_REQUEST = "invalid_request"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    # Images (400)
    INVALID_IMAGE = "invalid_image"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_TOO_SMALL = "image_too_small"
    IMAGE_URL_NOT_ALLOWED = "image_url_not_allowed"
    IMAGE_ADDRESS_BLOCKED = "image_address_blocked"
    IMAGE_FETCH_FAILED = "image_fetch_failed"
    IMAGE_FETCH_TIMEOUT = "image_fetch_timeout"
    IMAGE_TOO_MANY_REDIRECTS = "image_too_many_redirects"
    IMAGE_WRONG_CONTENT_TYPE = "image_wrong_content_type"
    TOO_MANY_IMAGES = "too_many_images"
    # Routing (400, 404)
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_CANNOT_TAKE_IMAGES = "model_cannot_take_images"
    NO_VISION_MODEL = "no_vision_model"
    # Shops (404, 400)
    SHOP_NOT_FOUND = "shop_not_found"
    SHOP_REQUIRED = "shop_required"
    # Access (401, 403, 429, 408)
    INVALID_API_KEY = "invalid_api_key"
    SHOP_NOT_ALLOWED = "shop_not_allowed"
    MESSAGE_ROLE_NOT_ALLOWED = "message_role_not_allowed"
    RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"
    BODY_TIMEOUT = "body_timeout"
    INVALID_REQUEST_ID = "invalid_request_id"
    # HTTP-level errors outside the chat route (404 unknown path, 405, other Starlette errors)
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    HTTP_ERROR = "http_error"
    # Admission and serving (429, 503, 504, 500)
    QUEUE_FULL = "queue_full"
    NO_REPLICA_AVAILABLE = "no_replica_available"
    MODEL_UNAVAILABLE = "model_unavailable"
    REQUEST_TIMEOUT = "request_timeout"
    INTERNAL_ERROR = "internal_error"
    # Not sent (the client is gone): the reason label of a 499 in the metrics.
    CLIENT_DISCONNECT = "client_disconnect"


@dataclass
class APIError(Exception):
    """An error with a status code and an OpenAI error body."""

    status: int
    message: str
    type: str
    code: ErrorCode
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Refuse codes outside the table: a typo fails where it is raised, in tests, instead of
        # reaching clients and dashboards as an unknown label.
        self.code = ErrorCode(self.code)
        super().__init__(self.message)

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code.value,
            }
        }

    # Constructors name the situation, so call sites read as intent and the status lives here.
    @classmethod
    def invalid_request(
        cls, message: str, *, param: str | None = None,
        code: ErrorCode = ErrorCode.INVALID_REQUEST,
    ) -> APIError:
        return cls(400, message, "invalid_request_error", code, param)

    @classmethod
    def model_not_found(cls, message: str) -> APIError:
        return cls(404, message, "invalid_request_error", ErrorCode.MODEL_NOT_FOUND, "model")

    @classmethod
    def shop_not_found(cls, shop_id: str) -> APIError:
        return cls(404, f"The shop '{printable(shop_id)}' does not exist. GET /v1/shops lists "
                   "the shops; send one of their ids as the X-Shop-Id header, or none for the "
                   "default shop.", "invalid_request_error", ErrorCode.SHOP_NOT_FOUND,
                   "X-Shop-Id")

    @classmethod
    def shop_required(cls, shops: list[str]) -> APIError:
        return cls(400, "This API key serves several shops and the default shop is not one of "
                   f"them; send the X-Shop-Id header (one of {shops}).",
                   "invalid_request_error", ErrorCode.SHOP_REQUIRED, "X-Shop-Id")

    @classmethod
    def invalid_api_key(cls, message: str) -> APIError:
        return cls(401, message, "invalid_request_error", ErrorCode.INVALID_API_KEY,
                   headers={"WWW-Authenticate": "Bearer"})

    @classmethod
    def shop_not_allowed(cls, shop_id: str) -> APIError:
        return cls(403, f"This API key may not use the shop '{printable(shop_id)}'.",
                   "permission_error", ErrorCode.SHOP_NOT_ALLOWED, "X-Shop-Id")

    @classmethod
    def forbidden_role(cls, role: str) -> APIError:
        return cls(403, f"This API key is for a public client and may not send '{role}' "
                   "messages; only the shop's backend key may set instructions.",
                   "permission_error", ErrorCode.MESSAGE_ROLE_NOT_ALLOWED, "messages")

    @classmethod
    def rate_limited(cls, limit: str, retry_after_s: int, headers: dict[str, str]) -> APIError:
        return cls(429, f"Rate limit reached for this API key ({limit}). Retry after "
                   f"{retry_after_s} s.", "rate_limit_error", ErrorCode.RATE_LIMIT_EXCEEDED,
                   headers={**headers, "Retry-After": str(retry_after_s)})

    @classmethod
    def body_timeout(cls, seconds: float) -> APIError:
        return cls(408, f"The request body did not arrive within {seconds:g} s.",
                   "invalid_request_error", ErrorCode.BODY_TIMEOUT)

    @classmethod
    def payload_too_large(cls, message: str) -> APIError:
        return cls(413, message, "invalid_request_error", ErrorCode.PAYLOAD_TOO_LARGE)

    @classmethod
    def unsupported_media_type(cls, message: str) -> APIError:
        return cls(415, message, "invalid_request_error", ErrorCode.UNSUPPORTED_MEDIA_TYPE)

    @classmethod
    def http_error(cls, status: int) -> APIError:
        """Starlette's own errors (unknown path, wrong method), in the OpenAI envelope."""
        code, message = _HTTP_ERRORS.get(status, (ErrorCode.HTTP_ERROR, "HTTP error."))
        return cls(status, message, "invalid_request_error", code)

    @classmethod
    def timeout(cls, request_id: str) -> APIError:
        return cls(
            504,
            f"The request did not finish within the server's time limit (request id "
            f"{request_id}). Retry, or ask for fewer tokens.",
            "timeout_error",
            ErrorCode.REQUEST_TIMEOUT,
        )

    @classmethod
    def unavailable(cls, message: str, retry_after_s: int) -> APIError:
        return cls(
            503, message, "service_unavailable", ErrorCode.MODEL_UNAVAILABLE,
            headers={"Retry-After": str(retry_after_s)},
        )

    @classmethod
    def overloaded(cls, model: str, status: int, retry_after_s: int) -> APIError:
        """The model's queue is full (Serve's `max_queued_requests`): refused at once, before
        any generation, so a client can back off instead of waiting for a timeout."""
        return cls(
            status,
            f"The model '{model}' is at capacity. Retry after {retry_after_s} s.",
            "rate_limit_error" if status == 429 else "service_unavailable",
            ErrorCode.QUEUE_FULL,
            headers={"Retry-After": str(retry_after_s)},
        )

    @classmethod
    def no_replica(cls, model: str, waited_s: float, retry_after_s: int) -> APIError:
        """No replica took the request within the model's `replica_wait.timeout_s` (a cold
        start from zero replicas, or a saturated pool still scaling up)."""
        return cls(
            503,
            f"No replica of the model '{model}' could take this request within "
            f"{waited_s:g} s; more replicas are starting. Retry after {retry_after_s} s.",
            "service_unavailable",
            ErrorCode.NO_REPLICA_AVAILABLE,
            headers={"Retry-After": str(retry_after_s)},
        )

    @classmethod
    def internal(cls, request_id: str) -> APIError:
        return cls(
            500,
            f"The server failed to answer this request (request id {request_id}). "
            "It has been logged; retrying may succeed.",
            "internal_error",
            ErrorCode.INTERNAL_ERROR,
        )


_HTTP_ERRORS = {
    404: (ErrorCode.NOT_FOUND, "No such route."),
    405: (ErrorCode.METHOD_NOT_ALLOWED, "Method not allowed on this route."),
}


def printable(value: str, limit: int = 80) -> str:
    """A client-supplied string made safe to echo in an error message (short, no controls)."""
    cleaned = "".join(ch if ch.isprintable() else "?" for ch in value[:limit])
    return cleaned + ("..." if len(value) > limit else "")


def api_error_for(exc: BaseException, request_id: str) -> APIError:
    """Map any exception raised while serving a request to the APIError the client receives.

    Engine-side input errors cross the Ray boundary wrapped in a RayTaskError that is also an
    instance of the original class (Ray's `as_instanceof_cause`), so `isinstance` sees them.
    """
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, EngineInputError):
        code = (ErrorCode.CONTEXT_LENGTH_EXCEEDED if isinstance(exc, ContextLengthError)
                else ErrorCode.INVALID_REQUEST)
        return APIError.invalid_request(exc.client_message, param=exc.param, code=code)
    if isinstance(exc, TimeoutError):
        return APIError.timeout(request_id)
    if isinstance(exc, EngineUnavailableError):
        logger.warning("request %s hit a dead engine: %s", request_id, exc)
        return APIError.unavailable(
            f"The model replica serving this request is restarting (request id {request_id}). "
            "Retry shortly.",
            ENGINE_RESTART_RETRY_AFTER_S,
        )
    logger.error("request %s failed", request_id, exc_info=exc)
    return APIError.internal(request_id)


def sse_error_event(error: APIError) -> str:
    """An in-band SSE error for a stream whose 200 status is already sent (vLLM's convention)."""
    return sse_data(error.body())
