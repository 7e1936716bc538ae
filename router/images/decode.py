"""Checks on image parts before any replica sees them.

Images arrive as data URLs (`data:image/png;base64,...`). Each is decoded and fully loaded here,
under byte and pixel caps, so garbage base64, truncated files, decompression bombs and images too
small for the vision encoder (the 1x1 engine crash, CVE-2026-22773) are 400s at the edge. PIL's own
error text is never returned (it can carry internals, CVE-2026-22778).

Remote http(s) URLs are fetched by router/images/remote.py, and their bytes go through the same
checks (`check_image_bytes`).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings

from configs.schema import RequestLimits
from router.api.errors import APIError, ErrorKind

_DATA_URL = re.compile(r"^data:(?P<mime>image/[a-z0-9.+-]+)?(?P<params>(;[^,;]*)*?);base64,", re.I)
# The formats the vision processor is given, by the content type a server sends them with.
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP",
               "image/gif": "GIF", "image/bmp": "BMP"}
ALLOWED_FORMATS = frozenset(IMAGE_TYPES.values())


def is_data_url(url: str) -> bool:
    return url[:5].lower() == "data:"


def data_url(raw: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}"


def check_data_url(url: str, limits: RequestLimits, param: str) -> None:
    """Raise a 400 APIError unless the data URL holds an acceptable image (CPU-bound: decodes
    the image; call it off the event loop)."""
    check_image_bytes(_decoded(url, limits, param), limits, param)


def _decoded(url: str, limits: RequestLimits, param: str) -> bytes:
    match = _DATA_URL.match(url)
    if match is None:
        raise APIError.of(ErrorKind.MALFORMED_DATA_URL, param=param)
    encoded = url[match.end():]
    # base64 inflates by 4/3: refuse before decoding anything larger than the cap.
    if len(encoded) > (limits.max_image_bytes * 4) // 3 + 4:
        raise APIError.of(ErrorKind.IMAGE_TOO_MANY_BYTES, param=param,
                          limit=limits.max_image_bytes)
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise APIError.of(ErrorKind.IMAGE_NOT_BASE64, param=param) from None
    if len(raw) > limits.max_image_bytes:
        raise APIError.of(ErrorKind.IMAGE_TOO_MANY_BYTES, param=param,
                          limit=limits.max_image_bytes)
    return raw


def check_image_bytes(raw: bytes, limits: RequestLimits, param: str) -> None:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # PIL warns (instead of raising) between MAX_IMAGE_PIXELS and twice that; the
            # explicit pixel check below is the bound, so the warning adds nothing.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(raw)) as image:
                # Header only so far: check the size before decoding any pixels.
                width, height = image.size
                if width * height > limits.max_image_pixels:
                    raise APIError.of(ErrorKind.IMAGE_TOO_MANY_PIXELS, param=param, width=width,
                                      height=height, limit=limits.max_image_pixels)
                if min(width, height) < limits.min_image_side:
                    raise APIError.of(ErrorKind.IMAGE_SIDE_TOO_SHORT, param=param, width=width,
                                      height=height, min_side=limits.min_image_side)
                if image.format not in ALLOWED_FORMATS:
                    raise APIError.of(ErrorKind.IMAGE_FORMAT_NOT_ACCEPTED, param=param,
                                      formats=sorted(ALLOWED_FORMATS))
                image.load()  # full decode: catches truncated and corrupt files
    except APIError:
        raise
    except Image.DecompressionBombError:
        # PIL refuses at open() beyond twice its own pixel bound, before our size check runs.
        raise APIError.of(ErrorKind.IMAGE_DECLARES_TOO_MANY_PIXELS, param=param,
                          limit=limits.max_image_pixels) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise APIError.of(ErrorKind.IMAGE_UNDECODABLE, param=param) from None
