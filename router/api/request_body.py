"""Reading a request body off the wire: its media type, its size (capped while it streams in, a
413 as soon as the cap is passed) and its pace (a 408 for an upload that stalls or crawls, so a
slow client cannot hold an ingress slot for the whole request timeout)."""

from __future__ import annotations

import asyncio
import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from configs.schema import RequestLimits
from router.api.errors import APIError, ErrorKind

REQUEST_ID_HEADER = "x-request-id"
# What a client-supplied x-request-id may look like: it is echoed in headers and logs.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def check_content_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise APIError.of(ErrorKind.UNSUPPORTED_MEDIA_TYPE)


def request_id_of(request: Request) -> str:
    """The request's id: the x-request-id header that Serve's proxy sets (its own id, or the
    client's), which the proxy also returns on the response. The completion's `id` and the
    logs use the same value, so a shopper's complaint can be traced."""
    request_id = request.headers.get(REQUEST_ID_HEADER, "")
    if not _REQUEST_ID.match(request_id):
        raise APIError.of(ErrorKind.INVALID_REQUEST_ID, param=REQUEST_ID_HEADER)
    return request_id


async def read_body(request: Request, limits: RequestLimits) -> bytes:
    """The request body, refused with 413 as soon as it passes `limits.max_body_bytes`, and
    with 408 when it takes longer than `body_timeout_s` or pauses for `body_idle_timeout_s`."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError.of(ErrorKind.INVALID_CONTENT_LENGTH)
        if int(declared) > limit:
            raise APIError.of(ErrorKind.BODY_TOO_LARGE, limit=limit)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.body_timeout_s
    parts: list[bytes] = []
    size = 0
    stream = aiter(request.stream())
    while True:
        wait_s = min(limits.body_idle_timeout_s, deadline - loop.time())
        try:
            if wait_s <= 0:
                raise TimeoutError
            part = await asyncio.wait_for(anext(stream), wait_s)
        except StopAsyncIteration:
            break
        except TimeoutError:
            raise APIError.of(ErrorKind.BODY_TIMEOUT, seconds=limits.body_timeout_s) from None
        size += len(part)
        if size > limit:
            raise APIError.of(ErrorKind.BODY_TOO_LARGE, limit=limit)
        parts.append(part)
    return b"".join(parts)


def new_request_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


class RequestIdMiddleware:
    """Gives a request without x-request-id one, and returns it on the response: what Serve's
    proxy does in front of every replica, done here too so the app behaves the same when it
    runs outside Serve (unit tests, tools). Behind Serve the header is always there already."""

    def __init__(self, app: ASGIApp):
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or REQUEST_ID_HEADER in MutableHeaders(scope=scope):
            await self._app(scope, receive, send)
            return
        request_id = new_request_id()
        MutableHeaders(scope=scope).append(REQUEST_ID_HEADER, request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append(REQUEST_ID_HEADER, request_id)
            await send(message)

        await self._app(scope, receive, send_with_id)
