"""Image checks at the edge: every bad image is a 400 with no library text in it. (Remote
URLs: test_remote_images.py.)"""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from configs.schema import RequestLimits
from router.api.errors import APIError
from router.images.decode import check_data_url, data_url
from tests.conftest import image_bytes

LIMITS = RequestLimits(max_image_bytes=1_000_000, max_image_pixels=4_000_000)


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR declaring a huge image, with a tiny compressed body.

    Decompression-bomb shape: a few hundred bytes that claim width*height pixels.
    """
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def rejected(url: str) -> APIError:
    with pytest.raises(APIError) as err:
        check_data_url(url, LIMITS, "messages[0].content[0].image_url")
    assert err.value.status == 400
    assert err.value.param == "messages[0].content[0].image_url"
    return err.value


@pytest.mark.parametrize("fmt,mime", [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp")])
def test_valid_images_pass(fmt, mime):
    check_data_url(data_url(image_bytes(64, 48, fmt), mime), LIMITS, "p")


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("data:image/png;base64,!!!not-base64!!!", "invalid_image"),
        ("data:image/png;base64," + base64.b64encode(b"definitely not an image").decode(), "invalid_image"),
        (data_url(image_bytes(64, 64)[:60], "image/png"), "invalid_image"),  # truncated PNG
        (data_url(image_bytes(1, 1), "image/png"), "image_too_small"),  # CVE-2026-22773 shape
        (data_url(image_bytes(200, 10), "image/png"), "image_too_small"),
        (data_url(png_header_only(40000, 40000), "image/png"), "image_too_large"),  # decompression bomb
        ("data:image/png;base64," + "A" * 2_000_000, "image_too_large"),  # over the byte cap
        ("data:text/plain,hello", "invalid_image"),
    ],
)
def test_bad_data_urls(url, code):
    error = rejected(url)
    assert error.code == code
    assert "PIL" not in error.message and "Traceback" not in error.message


def test_pixel_cap_of_the_config_is_reached_before_pils_guard():
    # 3000 x 2000 = 6 M pixels: over this config's 4 M cap, far below PIL's own bomb guard
    # (89 M warns, 179 M raises), so the refusal is ours, with the size in the message.
    error = rejected(data_url(png_header_only(3000, 2000), "image/png"))
    assert error.code == "image_too_large"
    assert "3000x2000" in error.message


def test_image_formats_outside_the_allowed_set_are_refused():
    # TIFF decodes in PIL but is not a format the vision processor is given.
    error = rejected(data_url(image_bytes(64, 48, "TIFF"), "image/tiff"))
    assert error.code == "invalid_image"
    assert "Unsupported image format" in error.message
