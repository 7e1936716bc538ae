"""The OpenAI error envelope, the one table of every error the API answers with, and the one place
every exception becomes an HTTP status.

`{"error": {"message", "type", "param", "code"}}` is what OpenAI SDKs parse. Client errors (4xx)
carry a message the client developer can act on. Server errors (5xx) never carry exception text or
tracebacks (they may hold internal addresses or paths, CVE-2026-22778); they carry the request id,
and the full exception goes to the server log under the same id.

Every error's code, status and message template is in the table of router/api/error_table.py
(`ErrorCode`, `ErrorKind`); `APIError.of(kind, **values)` builds the error a raise site names, and
the values a client wrote are made `printable()` here, not at each site.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any

from model_server.engine_protocol import (
    ContextLengthError,
    EngineInputError,
    EngineUnavailableError,
)
from router.api.error_table import ErrorCode, ErrorKind, ErrorSpec
from router.api.protocol import sse_data

__all__ = ["APIError", "ErrorCode", "ErrorKind", "ErrorSpec", "api_error_for", "printable",
           "sse_error_event"]

logger = logging.getLogger("cs_assistant.router")

# Retry-After for a dead engine reported past the admission layer. Requests through Serve never
# get it: router/replica_client.py retries them or answers with the model's measured
# `replica_wait.replacement_s`. This is the fallback for a streamer without that layer.
ENGINE_RESTART_RETRY_AFTER_S = 15


@dataclass
class APIError(Exception):
    """An error with a status code and an OpenAI error body; built with `APIError.of(kind, ...)`
    (or a named constructor below, which does the same)."""

    status: int
    message: str
    type: str
    code: ErrorCode
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    kind: ErrorKind | None = None  # the rule, for tests and logs; not sent

    def __post_init__(self) -> None:
        # Refuse codes outside the table: a typo fails where it is raised, in tests, instead of
        # reaching clients and dashboards as an unknown label.
        self.code = ErrorCode(self.code)
        super().__init__(self.message)

    def __reduce__(self):
        # Exception pickles its args (the message) only; the body parser's worker process
        # (router/api/parse_offload.py) sends whole errors back.
        return APIError, (self.status, self.message, self.type, self.code, self.param,
                          dict(self.headers), self.kind)

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code.value,
            }
        }

    @classmethod
    def of(cls, kind: ErrorKind, *, param: str | None = None,
           headers: Mapping[str, str] | None = None, status: int | None = None,
           **values: Any) -> APIError:
        """The error of `kind`, its template filled with `values` (exactly its fields, and
        `retry_after_s` when it is sent with Retry-After). `param` names the field when the rule
        has none of its own (or another); `status` only for a rule whose status is not its own
        (Starlette's errors); `headers` are added to the rule's."""
        spec = kind.spec
        if set(values) != spec.fields:
            raise TypeError(f"ErrorKind.{kind.name} takes {sorted(spec.fields)}, "
                            f"got {sorted(values)}")
        if (status is None) != (spec.status is not None):
            raise TypeError(f"ErrorKind.{kind.name}: pass a status exactly when the table has "
                            "none")
        param = param if param is not None else spec.param
        shown = {name: printable(str(value)) if name in spec.client_values else value
                 for name, value in values.items()}
        if "{param}" in spec.template:
            if param is None:
                raise TypeError(f"ErrorKind.{kind.name} names its param in the message: pass it")
            shown["param"] = param
        all_headers = {**spec.headers, **(headers or {})}
        if spec.retry_after:
            all_headers["Retry-After"] = str(values["retry_after_s"])
        return cls(status or spec.status, spec.template.format(**shown), spec.type, spec.code,
                   param, all_headers, kind)

    # Named constructors, kept for their callers: each builds from its table entry.
    @classmethod
    def invalid_request(
        cls, message: str, *, param: str | None = None,
        code: ErrorCode = ErrorCode.INVALID_REQUEST,
    ) -> APIError:
        """A 400 whose text another layer wrote (the shop layer's, the engine's)."""
        if code == ErrorCode.CONTEXT_LENGTH_EXCEEDED:
            return cls.of(ErrorKind.RELAYED_CONTEXT_LENGTH, param=param, message=message)
        if code == ErrorCode.INVALID_REQUEST:
            return cls.of(ErrorKind.RELAYED_INVALID_REQUEST, param=param, message=message)
        return cls._with_text(_first_400_of(code), message, param=param)

    @classmethod
    def model_not_found(cls, message: str) -> APIError:
        return cls._with_text(ErrorKind.MODEL_NOT_FOUND, message)

    @classmethod
    def shop_not_found(cls, shop_id: str) -> APIError:
        return cls.of(ErrorKind.SHOP_NOT_FOUND, shop_id=shop_id)

    @classmethod
    def shop_required(cls, shops: list[str]) -> APIError:
        return cls.of(ErrorKind.SHOP_REQUIRED, shops=shops)

    @classmethod
    def invalid_api_key(cls, message: str) -> APIError:
        return cls._with_text(ErrorKind.UNKNOWN_API_KEY, message)

    @classmethod
    def shopper_token(cls, code: str, message: str) -> APIError:
        """A 401 for an X-Shopper-Token that does not verify; `code` is the identity check's
        (shop/orders/identity.py), each with its own kind."""
        kind = {"shopper_token_expired": ErrorKind.SHOPPER_TOKEN_EXPIRED,
                "shopper_token_wrong_shop": ErrorKind.SHOPPER_TOKEN_WRONG_SHOP,
                }.get(code, ErrorKind.SHOPPER_TOKEN_INVALID)
        return cls.of(kind, message=message)

    @classmethod
    def shop_not_allowed(cls, shop_id: str) -> APIError:
        return cls.of(ErrorKind.SHOP_NOT_ALLOWED, shop_id=shop_id)

    @classmethod
    def forbidden_role(cls, role: str) -> APIError:
        return cls.of(ErrorKind.ROLE_NOT_ALLOWED, role=role)

    @classmethod
    def rate_limited(cls, limit: str, retry_after_s: int, headers: dict[str, str]) -> APIError:
        return cls.of(ErrorKind.RATE_LIMITED, headers=headers, limit=limit,
                      retry_after_s=retry_after_s)

    @classmethod
    def body_timeout(cls, seconds: float) -> APIError:
        return cls.of(ErrorKind.BODY_TIMEOUT, seconds=seconds)

    @classmethod
    def payload_too_large(cls, message: str) -> APIError:
        return cls._with_text(ErrorKind.BODY_TOO_LARGE, message)

    @classmethod
    def unsupported_media_type(cls, message: str) -> APIError:
        return cls._with_text(ErrorKind.UNSUPPORTED_MEDIA_TYPE, message)

    @classmethod
    def http_error(cls, status: int) -> APIError:
        """Starlette's own errors (unknown path, wrong method), in the OpenAI envelope."""
        if status == 404:
            return cls.of(ErrorKind.ROUTE_NOT_FOUND)
        if status == 405:
            return cls.of(ErrorKind.METHOD_NOT_ALLOWED)
        return cls.of(ErrorKind.HTTP_ERROR, status=status)

    @classmethod
    def timeout(cls, request_id: str) -> APIError:
        return cls.of(ErrorKind.REQUEST_TIMEOUT, request_id=request_id)

    @classmethod
    def overloaded(cls, model: str, status: int, retry_after_s: int) -> APIError:
        """The model's queue is full (Serve's `max_queued_requests`, whose `status_code` is 429
        or 503): refused at once, before any generation, so a client can back off instead of
        waiting for a timeout."""
        kind = ErrorKind.QUEUE_FULL if status == 429 else ErrorKind.QUEUE_FULL_UNAVAILABLE
        return cls.of(kind, model=model, retry_after_s=retry_after_s)

    @classmethod
    def no_replica(cls, model: str, waited_s: float, retry_after_s: int) -> APIError:
        """No replica took the request within the model's `replica_wait.timeout_s` (a cold
        start from zero replicas, or a saturated pool still scaling up)."""
        return cls.of(ErrorKind.NO_REPLICA, model=model, waited_s=waited_s,
                      retry_after_s=retry_after_s)

    @classmethod
    def internal(cls, request_id: str) -> APIError:
        return cls.of(ErrorKind.INTERNAL, request_id=request_id)

    @classmethod
    def _with_text(cls, kind: ErrorKind, message: str, *, param: str | None = None,
                   retry_after_s: int | None = None) -> APIError:
        """`kind`'s status, type, code and headers around a caller's own text."""
        spec = kind.spec
        headers = dict(spec.headers)
        if retry_after_s is not None:
            headers["Retry-After"] = str(retry_after_s)
        return cls(spec.status, message, spec.type, spec.code,
                   param if param is not None else spec.param, headers, kind)


def _first_400_of(code: ErrorCode) -> ErrorKind:
    for kind in ErrorKind:
        if kind.spec.code == code and kind.spec.status == 400:
            return kind
    raise ValueError(f"no 400 is sent with the code {code!r}")


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
        kind = (ErrorKind.RELAYED_CONTEXT_LENGTH if isinstance(exc, ContextLengthError)
                else ErrorKind.RELAYED_INVALID_REQUEST)
        return APIError.of(kind, param=exc.param, message=exc.client_message)
    if isinstance(exc, TimeoutError):
        return APIError.timeout(request_id)
    if isinstance(exc, EngineUnavailableError):
        logger.warning("request %s hit a dead engine: %s", request_id, exc)
        return APIError.of(ErrorKind.ENGINE_RESTARTING, request_id=request_id,
                           retry_after_s=ENGINE_RESTART_RETRY_AFTER_S)
    logger.error("request %s failed", request_id, exc_info=exc)
    return APIError.internal(request_id)


def sse_error_event(error: APIError) -> str:
    """An in-band SSE error for a stream whose 200 status is already sent (vLLM's convention)."""
    return sse_data(error.body())
