"""Reading a request body off the wire: its media type, and its size, capped while it streams in
(a 413 as soon as the cap is passed, before anything is parsed)."""

from __future__ import annotations

from starlette.requests import Request

from router.errors import APIError


def check_content_type(content_type: str | None) -> None:
    media_type = (content_type or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise APIError.unsupported_media_type(
            "Send the request body as JSON with the header 'Content-Type: application/json'."
        )


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise APIError.invalid_request("Invalid Content-Length header.")
        if int(declared) > limit:
            raise APIError.payload_too_large(f"The request body is larger than {limit} bytes.")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise APIError.payload_too_large(f"The request body is larger than {limit} bytes.")
        parts.append(part)
    return b"".join(parts)
