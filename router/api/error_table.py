"""The one table of every error the API answers with (after TGI's `ValidationError`: one
variant per rule, its text in one place).

- `ErrorCode`: the wire `code` values. Clients and dashboards depend on them: the metric `reason`
  label set is derived from it (router/observability/metrics.py), and `APIError` refuses any other
  string. Each carries the "when" of the API docs' error table.
- `ErrorKind`: one entry per rule: its code (several rules share `invalid_request`), HTTP status,
  OpenAI `type`, `param`, headers and message template. A raise site names the rule and passes
  values: `raise APIError.of(ErrorKind.TOO_MANY_MESSAGES, count=n, limit=m)` (router/api/errors.py).
  The values must be exactly the template's fields (a test checks every call site).
docs/api.md's error table is generated from both (scripts/render_error_table.py), and a test
fails when it differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from string import Formatter
from types import MappingProxyType
from typing import Any


class ErrorCode(StrEnum):
    """Every `error.code` this API sends, and every `reason` label of the failure metrics; each
    with when it is sent (the docs' error table)."""

    when: str

    def __new__(cls, value: str, when: str) -> ErrorCode:
        member = str.__new__(cls, value)
        member._value_ = value
        member.when = when
        return member

    # Request body and schema (400, 413, 415)
    INVALID_REQUEST = (
        "invalid_request",
        "the body is not UTF-8, not JSON, not an object, or breaks the schema; a limit of config "
        "is exceeded (messages, text, stop sequences, `max_tokens`, `n`, sampling ranges, "
        "`chat_template_kwargs`); an invalid `Content-Length`; the shop layer or the engine "
        "refused the input (`param` names the field as the client wrote it)")
    PAYLOAD_TOO_LARGE = (
        "payload_too_large",
        "the body is larger than `max_body_bytes` (checked while it arrives, before parsing)")
    UNSUPPORTED_MEDIA_TYPE = ("unsupported_media_type", "`Content-Type` is not `application/json`")
    CONTEXT_LENGTH_EXCEEDED = (
        "context_length_exceeded",
        "`max_tokens` leaves no room for the prompt in the model's context, or the prompt and "
        "`max_tokens` together are longer than it")
    # Images (400)
    INVALID_IMAGE = (
        "invalid_image",
        "an image is not a base64 data URL, cannot be decoded, or is not PNG, JPEG, WebP, GIF or "
        "BMP")
    IMAGE_TOO_LARGE = (
        "image_too_large",
        "an image has more bytes than `max_image_bytes` or more pixels than `max_image_pixels`")
    IMAGE_TOO_SMALL = ("image_too_small", "an image side is shorter than `min_image_side`")
    IMAGE_URL_NOT_ALLOWED = (
        "image_url_not_allowed",
        "a remote image URL is malformed, not `https` (or `http` where allowed), carries "
        "credentials, or is not on the shop's image hosts")
    IMAGE_ADDRESS_BLOCKED = (
        "image_address_blocked", "a remote image's host resolves to an address that is not public")
    IMAGE_FETCH_FAILED = (
        "image_fetch_failed",
        "a remote image's host does not resolve, the connection or TLS fails, or the answer is "
        "not HTTP 200")
    IMAGE_FETCH_TIMEOUT = (
        "image_fetch_timeout", "a remote image did not arrive within the fetch time limits")
    IMAGE_TOO_MANY_REDIRECTS = (
        "image_too_many_redirects", "a remote image URL redirects more than `max_redirects` times")
    IMAGE_WRONG_CONTENT_TYPE = (
        "image_wrong_content_type",
        "a remote image's content type is not an accepted image type, or its bytes are not that "
        "type")
    TOO_MANY_IMAGES = ("too_many_images", "the request carries more than `max_images` images")
    # Routing (400, 404)
    MODEL_NOT_FOUND = ("model_not_found", "the request names a model that is not served")
    MODEL_CANNOT_TAKE_IMAGES = (
        "model_cannot_take_images", "the request names a text model but carries an image")
    NO_VISION_MODEL = (
        "no_vision_model",
        "the request carries an image and this deployment serves no vision model")
    TOOLS_NOT_SUPPORTED = (
        "tools_not_supported",
        "the request sends `tools` or a JSON `response_format` (or `return_reasoning`) to a "
        "model whose config sets no `tool_parser` (`reasoning_parser`): the vision model, when "
        "the request carries an image")
    # Shops (404, 400)
    SHOP_NOT_FOUND = ("shop_not_found", "`X-Shop-Id` names no configured shop")
    DEMO_SHOPPER_NOT_FOUND = (
        "demo_shopper_not_found",
        "`POST /v1/demo/shopper-token`: the shop lists no such demo shopper (production shops "
        "list none)")
    SHOP_REQUIRED = (
        "shop_required",
        "the key serves several shops, the default shop is not one of them, and `X-Shop-Id` is "
        "missing")
    # Access (401, 403, 429, 408)
    INVALID_API_KEY = (
        "invalid_api_key", "no API key, a malformed `Authorization`, or an unknown key")
    SHOP_NOT_ALLOWED = ("shop_not_allowed", "the key may not use the shop `X-Shop-Id` names")
    SHOPPER_TOKEN_INVALID = (
        "shopper_token_invalid",
        "`X-Shopper-Token` is not a JWT signed with the shop's secret (HS256), lacks `sub`, "
        "`aud`, `iat` or `exp`, lives longer than the shop's `max_ttl_s`, or the shop verifies "
        "no shoppers")
    SHOPPER_TOKEN_EXPIRED = ("shopper_token_expired", "`X-Shopper-Token` has expired")
    SHOPPER_TOKEN_WRONG_SHOP = (
        "shopper_token_wrong_shop", "`X-Shopper-Token` was issued for another shop")
    MESSAGE_ROLE_NOT_ALLOWED = (
        "message_role_not_allowed", "a `widget` key sent a `system` or `developer` message")
    BACKEND_ONLY_FIELD = (
        "backend_only_field",
        "a `widget` key sent `tools`, `tool_choice`, `parallel_tool_calls`, `response_format`, "
        "`return_reasoning` or a `tool` message: a browser must not drive tools")
    RATE_LIMIT_EXCEEDED = (
        "rate_limit_exceeded",
        "a per-key limit: requests or tokens per minute, or concurrent requests")
    BODY_TIMEOUT = (
        "body_timeout",
        "the body did not arrive within `body_timeout_s`, or paused for `body_idle_timeout_s`")
    INVALID_REQUEST_ID = (
        "invalid_request_id", "`X-Request-ID` is not 1-128 characters of `A-Za-z0-9._:-`")
    # HTTP-level errors outside the chat route (404 unknown path, 405, other Starlette errors)
    NOT_FOUND = ("not_found", "no such route")
    METHOD_NOT_ALLOWED = ("method_not_allowed", "the route does not take this method")
    HTTP_ERROR = ("http_error", "any other HTTP error raised before a route runs, with its status")
    # Admission and serving (429, 503, 504, 500)
    QUEUE_FULL = (
        "queue_full",
        "the model's queue is full (Serve's `max_queued_requests`); the status is the "
        "deployment's `backpressure_config.status_code`")
    NO_REPLICA_AVAILABLE = (
        "no_replica_available",
        "no replica took the request within the model's `replica_wait.timeout_s` (a cold start, "
        "or a pool still scaling up)")
    MODEL_UNAVAILABLE = (
        "model_unavailable",
        "the replica's engine died, or the replica was lost and no other could answer; Serve is "
        "replacing it")
    REQUEST_TIMEOUT = (
        "request_timeout", "the request did not finish within `request_timeout_s`")
    INTERNAL_ERROR = (
        "internal_error",
        "an internal failure: the body holds only the request id, the log holds the exception")
    # Not sent (the client is gone): the reason label of a 499 in the metrics.
    CLIENT_DISCONNECT = ("client_disconnect", "not sent: the client closed the connection")


# The OpenAI `type` of each status: one rule, so two errors of a status never disagree.
_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_error",
          500: "internal_error", 503: "service_unavailable", 504: "timeout_error"}


@dataclass(frozen=True, eq=False)  # identity equality: two rules with equal text stay two kinds
class ErrorSpec:
    """One rule's error: what `APIError.of` builds from it and the values a raise site passes."""

    code: ErrorCode
    status: int | None  # None: the status of the HTTP error being answered (Starlette's)
    template: str  # str.format fields: the values a raise site passes; `{param}` is the param
    param: str | None = None  # the default param; a raise site may name the field instead
    headers: Mapping[str, str] = field(default_factory=dict)
    retry_after: bool = False  # sent with Retry-After: the raise site passes `retry_after_s`
    client_values: tuple[str, ...] = ()  # values the client wrote: made printable()

    @property
    def type(self) -> str:
        return _TYPES.get(self.status, "invalid_request_error")

    @property
    def fields(self) -> frozenset[str]:
        """The names a raise site must pass: the template's fields, and `retry_after_s`."""
        names = {name for _, name, _, _ in Formatter().parse(self.template) if name}
        return frozenset(names - {"param"} | ({"retry_after_s"} if self.retry_after else set()))


def _e(code: ErrorCode, status: int | None, template: str, param: str | None = None,
       **options: Any) -> ErrorSpec:
    return ErrorSpec(code, status, template, param, **options)


_BEARER = MappingProxyType({"WWW-Authenticate": "Bearer"})
_C = ErrorCode


class ErrorKind(Enum):
    """Every rule that refuses or fails a request, with its code, status and message template.

    Several rules share the code `invalid_request`; the kind names the rule, the code is what
    clients and metrics see. A rule whose text another layer writes (the engine, the shop layer)
    has the template `{message}`.
    """

    # The body and headers, as they arrive (router/api/request_body.py)
    UNSUPPORTED_MEDIA_TYPE = _e(_C.UNSUPPORTED_MEDIA_TYPE, 415, (
        "Send the request body as JSON with the header 'Content-Type: application/json'."))
    INVALID_REQUEST_ID = _e(_C.INVALID_REQUEST_ID, 400, (
        "The x-request-id header must be 1-128 characters of letters, digits and . _ : -"),
        "x-request-id")
    INVALID_CONTENT_LENGTH = _e(_C.INVALID_REQUEST, 400, "Invalid Content-Length header.")
    BODY_TOO_LARGE = _e(_C.PAYLOAD_TOO_LARGE, 413, "The request body is larger than {limit} bytes.")
    BODY_TIMEOUT = _e(_C.BODY_TIMEOUT, 408, "The request body did not arrive within {seconds:g} s.")
    # Parsing (router/api/validation.py)
    BODY_NOT_UTF8 = _e(_C.INVALID_REQUEST, 400, "The request body is not valid UTF-8.")
    BODY_NOT_JSON = _e(_C.INVALID_REQUEST, 400, (
        "The request body is not valid JSON: {reason} at line {line} column {column}."))
    BODY_TOO_DEEP = _e(_C.INVALID_REQUEST, 400, "The request body is nested too deeply.")
    BODY_NOT_OBJECT = _e(_C.INVALID_REQUEST, 400, (
        "The request body must be a JSON object, not a JSON {json_type}."))
    SCHEMA_VIOLATION = _e(_C.INVALID_REQUEST, 400, "Invalid request: {problems}.")
    # Limits of config (router/api/validation.py)
    NO_MESSAGES = _e(_C.INVALID_REQUEST, 400, "messages must contain at least one message.",
                     "messages")
    TOO_MANY_MESSAGES = _e(_C.INVALID_REQUEST, 400, (
        "Too many messages: {count}; at most {limit} are accepted. Trim older turns of the "
        "conversation."), "messages")
    TOO_MUCH_TEXT = _e(_C.INVALID_REQUEST, 400, (
        "The messages hold {count} characters of text; at most {limit} are accepted."),
        "messages")
    TOO_MANY_IMAGES = _e(_C.TOO_MANY_IMAGES, 400, (
        "The request carries {count} images; at most {limit} are accepted."), "messages")
    ONLY_ONE_CHOICE = _e(_C.INVALID_REQUEST, 400, "Only n=1 is supported.", "n")
    # Tools and response formats (router/api/validation.py)
    CONTENT_MISSING = _e(_C.INVALID_REQUEST, 400, (
        "{param} is missing; only an assistant message with tool_calls may leave it out."))
    TOOL_CALLS_NOT_FROM_ASSISTANT = _e(_C.INVALID_REQUEST, 400, (
        "{param}: only 'assistant' messages carry tool_calls."))
    TOOL_CALL_ID_MISSING = _e(_C.INVALID_REQUEST, 400, (
        "{param}: a 'tool' message needs the tool_call_id of the call it answers."))
    TOOL_CALL_ID_NOT_FROM_TOOL = _e(_C.INVALID_REQUEST, 400, (
        "{param}: only 'tool' messages carry a tool_call_id."))
    TOO_MANY_TOOLS = _e(_C.INVALID_REQUEST, 400, (
        "At most {limit} tools are accepted per request; got {count}."), "tools")
    DUPLICATE_TOOL = _e(_C.INVALID_REQUEST, 400, (
        "Two tools are named '{name}'; function names must be unique."), "tools",
        client_values=("name",))
    TOOL_CHOICE_WITHOUT_TOOLS = _e(_C.INVALID_REQUEST, 400, (
        "{param} is set but the request sends no tools."))
    TOOL_CHOICE_UNKNOWN = _e(_C.INVALID_REQUEST, 400, (
        "tool_choice names the function '{name}', which is not among the request's tools."),
        "tool_choice.function.name", client_values=("name",))
    FORMAT_WITH_FORCED_CALL = _e(_C.INVALID_REQUEST, 400, (
        "response_format cannot be combined with tool_choice '{choice}': the answer is a tool "
        "call. Use tool_choice 'auto' or leave response_format out."), "response_format")
    SCHEMA_TOO_LARGE = _e(_C.INVALID_REQUEST, 400, (
        "{param} is {size} bytes as compact JSON; at most {limit} are accepted."))
    SCHEMA_TOO_DEEP = _e(_C.INVALID_REQUEST, 400, (
        "{param} nests objects and arrays {depth} deep; at most {limit} levels are accepted."))
    SCHEMA_LENGTH_TOO_LARGE = _e(_C.INVALID_REQUEST, 400, (
        "{param} bounds a length at {bound} ({where}); at most {limit} is accepted: bounded "
        "lengths make the grammar slow to compile."))
    SCHEMA_TOO_MANY_LENGTHS = _e(_C.INVALID_REQUEST, 400, (
        "The request's schemas bound {count} different lengths (minLength, maxLength, {{m,n}} "
        "in patterns); at most {limit} are accepted: each makes the grammar slower to compile."
        ), "tools")
    SCHEMA_PATTERN_INVALID = _e(_C.INVALID_REQUEST, 400, (
        "{param} has a pattern this server cannot read ({where}): {reason}"))
    THINKING_CONFLICT = _e(_C.INVALID_REQUEST, 400, (
        "enable_thinking and chat_template_kwargs.enable_thinking disagree; send one."),
        "enable_thinking")
    EMPTY_CONTENT = _e(_C.INVALID_REQUEST, 400, "{param} is empty.")
    EMPTY_CONTENT_LIST = _e(_C.INVALID_REQUEST, 400, (
        "{param} is an empty list; send at least one text or image part."))
    IMAGE_NOT_FROM_USER = _e(_C.INVALID_REQUEST, 400, (
        "{where}: image parts are only accepted in 'user' messages, not '{role}'."))
    TOO_MANY_STOPS = _e(_C.INVALID_REQUEST, 400, "At most {limit} stop sequences are accepted.",
                        "stop")
    STOP_LENGTH = _e(_C.INVALID_REQUEST, 400, (
        "Each stop sequence must have 1 to {limit} characters."), "stop")
    TEMPERATURE_RANGE = _e(_C.INVALID_REQUEST, 400, "temperature must be between 0 and 2.",
                           "temperature")
    TOP_P_RANGE = _e(_C.INVALID_REQUEST, 400, "top_p must be greater than 0 and at most 1.",
                     "top_p")
    SEED_RANGE = _e(_C.INVALID_REQUEST, 400, "seed must fit in a signed 64-bit integer.", "seed")
    MAX_TOKENS_BELOW_ONE = _e(_C.INVALID_REQUEST, 400, "{param} must be at least 1.")
    MAX_TOKENS_OVER_LIMIT = _e(_C.INVALID_REQUEST, 400, (
        "{param}={requested} is larger than this server's limit of {limit}."))
    MAX_TOKENS_FILL_CONTEXT = _e(_C.CONTEXT_LENGTH_EXCEEDED, 400, (
        "{param}={requested} leaves no room for the prompt in the model's context of "
        "{context_tokens} tokens."))
    TEMPLATE_KWARGS_NOT_ALLOWED = _e(_C.INVALID_REQUEST, 400, (
        "chat_template_kwargs may only set {allowed}; got {count} other key(s)."),
        "chat_template_kwargs")
    THINKING_NOT_BOOLEAN = _e(_C.INVALID_REQUEST, 400, (
        "chat_template_kwargs.enable_thinking must be a boolean."), "chat_template_kwargs")
    INVALID_UNICODE = _e(_C.INVALID_REQUEST, 400, (
        "{param} contains invalid Unicode (a lone surrogate escape such as \\ud800)."))
    # Refused with text another layer wrote for the client: the shop layer, the engine
    RELAYED_INVALID_REQUEST = _e(_C.INVALID_REQUEST, 400, "{message}")
    RELAYED_CONTEXT_LENGTH = _e(_C.CONTEXT_LENGTH_EXCEEDED, 400, "{message}")
    # Image data (router/images/decode.py)
    MALFORMED_DATA_URL = _e(_C.INVALID_IMAGE, 400, (
        "Malformed image data URL; expected data:image/<type>;base64,<data>."))
    IMAGE_NOT_BASE64 = _e(_C.INVALID_IMAGE, 400, "The image data is not valid base64.")
    IMAGE_TOO_MANY_BYTES = _e(_C.IMAGE_TOO_LARGE, 400, "The image is larger than {limit} bytes.")
    IMAGE_TOO_MANY_PIXELS = _e(_C.IMAGE_TOO_LARGE, 400, (
        "The image is {width}x{height} pixels; at most {limit} pixels in total are accepted."))
    IMAGE_DECLARES_TOO_MANY_PIXELS = _e(_C.IMAGE_TOO_LARGE, 400, (
        "The image declares more than {limit} pixels."))
    IMAGE_SIDE_TOO_SHORT = _e(_C.IMAGE_TOO_SMALL, 400, (
        "The image is {width}x{height} pixels; both sides must be at least {min_side} pixels."))
    IMAGE_FORMAT_NOT_ACCEPTED = _e(_C.INVALID_IMAGE, 400, (
        "Unsupported image format; send one of {formats}."))
    IMAGE_UNDECODABLE = _e(_C.INVALID_IMAGE, 400, (
        "The image could not be decoded (corrupt, truncated or not an image)."))
    # Remote image URLs (router/images/remote.py)
    IMAGE_URL_CHARACTERS = _e(_C.IMAGE_URL_NOT_ALLOWED, 400, (
        "The image URL contains characters that are not allowed (backslash, spaces, controls "
        "or non-ASCII; percent-encode them)."))
    IMAGE_URL_MALFORMED = _e(_C.IMAGE_URL_NOT_ALLOWED, 400, "The image URL is malformed.")
    IMAGE_URL_SCHEME = _e(_C.IMAGE_URL_NOT_ALLOWED, 400, "Image URLs must use {schemes}.")
    IMAGE_URL_CREDENTIALS = _e(_C.IMAGE_URL_NOT_ALLOWED, 400, (
        "Image URLs may not carry user names or passwords."))
    IMAGE_URL_NO_HOST = _e(_C.IMAGE_URL_NOT_ALLOWED, 400, "The image URL has no valid host.")
    IMAGE_URL_NUMERIC_HOST = _e(_C.IMAGE_URL_NOT_ALLOWED, 400, (
        "The image URL's host is a number that is not a plain IP address."))
    IMAGE_URL_BAD_HOST = _e(_C.IMAGE_URL_NOT_ALLOWED, 400, (
        "The image URL's host is not a valid host name."))
    IMAGE_HOST_NOT_ALLOWED = _e(_C.IMAGE_URL_NOT_ALLOWED, 400, (
        "Images are fetched only from this shop's hosts ({hosts}); send other images inline "
        "as data URLs (data:image/jpeg;base64,...)."))
    IMAGE_HOSTS_NONE = _e(_C.IMAGE_URL_NOT_ALLOWED, 400, (
        "Images are fetched only from this shop's hosts (none are configured); send other "
        "images inline as data URLs (data:image/jpeg;base64,...)."))
    IMAGE_HOST_UNRESOLVED = _e(_C.IMAGE_FETCH_FAILED, 400, (
        "The image URL's host name does not resolve."))
    IMAGE_ADDRESS_NOT_PUBLIC = _e(_C.IMAGE_ADDRESS_BLOCKED, 400, (
        "The image URL's host resolves to an address that is not public."))
    IMAGE_REDIRECT_WITHOUT_LOCATION = _e(_C.IMAGE_FETCH_FAILED, 400, (
        "The image URL answered HTTP {http_status} without a Location."))
    IMAGE_HTTP_STATUS = _e(_C.IMAGE_FETCH_FAILED, 400, (
        "The image URL answered HTTP {http_status}."))
    IMAGE_CONNECTION_FAILED = _e(_C.IMAGE_FETCH_FAILED, 400, (
        "The image URL could not be fetched (connection or TLS failure)."))
    IMAGE_FETCH_TOO_SLOW = _e(_C.IMAGE_FETCH_TIMEOUT, 400, (
        "The image URL did not answer within {seconds:g} s."))
    IMAGE_READ_TIMEOUT = _e(_C.IMAGE_FETCH_TIMEOUT, 400, "The image URL did not answer in time.")
    IMAGE_TOO_MANY_REDIRECTS = _e(_C.IMAGE_TOO_MANY_REDIRECTS, 400, (
        "The image URL redirected more than {limit} times."))
    IMAGE_CONTENT_TYPE = _e(_C.IMAGE_WRONG_CONTENT_TYPE, 400, (
        "The image URL's content type is not one of {types}."))
    IMAGE_BYTES_NOT_CONTENT_TYPE = _e(_C.IMAGE_WRONG_CONTENT_TYPE, 400, (
        "The image URL's bytes are not the image its content type says."))
    # Routing (router/routing.py)
    MODEL_NOT_FOUND = _e(_C.MODEL_NOT_FOUND, 404, (
        "The model '{model}' does not exist. Available models: {available}."), "model",
        client_values=("model",))
    TEXT_MODEL_GIVEN_IMAGE = _e(_C.MODEL_CANNOT_TAKE_IMAGES, 400, (
        "The model '{model}' takes text only, but the request carries an image. Use "
        "'{vision_model}' or 'auto'."), "model")
    TEXT_MODEL_GIVEN_IMAGE_NO_VISION = _e(_C.MODEL_CANNOT_TAKE_IMAGES, 400, (
        "The model '{model}' takes text only, but the request carries an image."), "model")
    NO_VISION_MODEL = _e(_C.NO_VISION_MODEL, 400, (
        "This request carries an image, but this deployment serves no vision model. Send text "
        "only."), "messages")
    # Shops and access (router/access/, router/api/valid_request.py)
    DEMO_SHOPPER_NOT_FOUND = _e(_C.DEMO_SHOPPER_NOT_FOUND, 404, (
        "The shop '{shop_id}' has no demo shopper '{shopper}'; GET /v1/shops lists each shop's "
        "demo_shoppers."), param="shopper", client_values=("shopper",))
    SHOP_NOT_FOUND = _e(_C.SHOP_NOT_FOUND, 404, (
        "The shop '{shop_id}' does not exist. GET /v1/shops lists the shops; send one of their "
        "ids as the X-Shop-Id header, or none for the default shop."), "X-Shop-Id",
        client_values=("shop_id",))
    SHOP_REQUIRED = _e(_C.SHOP_REQUIRED, 400, (
        "This API key serves several shops and the default shop is not one of them; send the "
        "X-Shop-Id header (one of {shops})."), "X-Shop-Id")
    NO_API_KEY = _e(_C.INVALID_API_KEY, 401, (
        "No API key provided. Send it as 'Authorization: Bearer <key>'."), headers=_BEARER)
    MALFORMED_AUTHORIZATION = _e(_C.INVALID_API_KEY, 401, (
        "Malformed Authorization header; expected 'Bearer <key>'."), headers=_BEARER)
    # Never echo the key: messages reach logs and client-side error trackers.
    UNKNOWN_API_KEY = _e(_C.INVALID_API_KEY, 401, "Incorrect API key provided.", headers=_BEARER)
    # Shopper tokens (shop/orders/identity.py writes the text: which check failed)
    SHOPPER_TOKEN_INVALID = _e(_C.SHOPPER_TOKEN_INVALID, 401, "{message}",
                               param="X-Shopper-Token")
    SHOPPER_TOKEN_EXPIRED = _e(_C.SHOPPER_TOKEN_EXPIRED, 401, "{message}",
                               param="X-Shopper-Token")
    SHOPPER_TOKEN_WRONG_SHOP = _e(_C.SHOPPER_TOKEN_WRONG_SHOP, 401, "{message}",
                                  param="X-Shopper-Token")
    SHOP_NOT_ALLOWED = _e(_C.SHOP_NOT_ALLOWED, 403, (
        "This API key may not use the shop '{shop_id}'."), "X-Shop-Id",
        client_values=("shop_id",))
    BACKEND_ONLY = _e(_C.BACKEND_ONLY_FIELD, 403, (
        "This API key is for a public client and may not send {param}; tools, response formats "
        "and the model's reasoning are for the shop's backend key."))
    MODEL_WITHOUT_TOOLS = _e(_C.TOOLS_NOT_SUPPORTED, 400, (
        "The model '{model}' does not serve tools or response formats{why}."))
    MODEL_WITHOUT_REASONING = _e(_C.TOOLS_NOT_SUPPORTED, 400, (
        "The model '{model}' does not separate its reasoning from its answer; leave "
        "return_reasoning out."), "return_reasoning")
    ROLE_NOT_ALLOWED = _e(_C.MESSAGE_ROLE_NOT_ALLOWED, 403, (
        "This API key is for a public client and may not send '{role}' messages; only the "
        "shop's backend key may set instructions."), "messages")
    RATE_LIMITED = _e(_C.RATE_LIMIT_EXCEEDED, 429, (
        "Rate limit reached for this API key ({limit}). Retry after {retry_after_s} s."),
        retry_after=True)
    # Outside the routes (Starlette's errors)
    ROUTE_NOT_FOUND = _e(_C.NOT_FOUND, 404, "No such route.")
    METHOD_NOT_ALLOWED = _e(_C.METHOD_NOT_ALLOWED, 405, "Method not allowed on this route.")
    HTTP_ERROR = _e(_C.HTTP_ERROR, None, "HTTP error.")
    # Admission and serving (router/replica_client.py, api_error_for below)
    QUEUE_FULL = _e(_C.QUEUE_FULL, 429, (
        "The model '{model}' is at capacity. Retry after {retry_after_s} s."), retry_after=True)
    QUEUE_FULL_UNAVAILABLE = _e(_C.QUEUE_FULL, 503, (
        "The model '{model}' is at capacity. Retry after {retry_after_s} s."), retry_after=True)
    NO_REPLICA = _e(_C.NO_REPLICA_AVAILABLE, 503, (
        "No replica of the model '{model}' could take this request within {waited_s:g} s; "
        "more replicas are starting. Retry after {retry_after_s} s."), retry_after=True)
    ENGINE_RESTARTING = _e(_C.MODEL_UNAVAILABLE, 503, (
        "The model replica serving this request is restarting (request id {request_id}). "
        "Retry shortly."), retry_after=True)
    REPLICA_LOST = _e(_C.MODEL_UNAVAILABLE, 503, (
        "The replica serving this request was lost and no other replica of the model "
        "'{model}' could answer it (request id {request_id}). A replacement is starting."),
        retry_after=True)
    REQUEST_TIMEOUT = _e(_C.REQUEST_TIMEOUT, 504, (
        "The request did not finish within the server's time limit (request id {request_id}). "
        "Retry, or ask for fewer tokens."))
    INTERNAL = _e(_C.INTERNAL_ERROR, 500, (
        "The server failed to answer this request (request id {request_id}). It has been "
        "logged; retrying may succeed."))

    @property
    def spec(self) -> ErrorSpec:
        return self.value

    def __reduce_ex__(self, protocol: int):
        # By name: the value is an ErrorSpec compared by identity, which a copy would not be.
        return getattr, (ErrorKind, self.name)
