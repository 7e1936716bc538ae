"""Every image of a request made into checked, inline bytes before a replica sees it.

Data URLs are decoded and checked (router/images/decode.py); remote URLs are fetched by the ingress
(router/images/remote.py) and their bytes go through the same checks, then reach the engine as
data URLs: the engine never fetches anything. A URL repeated in a conversation is fetched once.
"""

from __future__ import annotations

import asyncio
import time

from configs.schema import RequestLimits
from router.api.errors import APIError
from router.images.decode import check_data_url, check_image_bytes, data_url, is_data_url
from router.api.protocol import ImageRef
from router.images.remote import FetchedImage, FetchRecorder, RemoteImageFetcher


class ImageInputs:
    def __init__(self, limits: RequestLimits, fetcher: RemoteImageFetcher):
        self._limits = limits
        self._fetcher = fetcher

    async def inline(self, images: tuple[ImageRef, ...], allowed_domains: tuple[str, ...],
                     on_fetched: FetchRecorder) -> tuple[dict[str, str], float]:
        """Check every image; the data URLs that replace remote URLs, and the seconds spent
        decoding (the fetches are timed by the fetcher)."""
        remote: dict[str, str] = {}  # URL -> where the client first put it
        for image in images:
            if not is_data_url(image.url):
                remote.setdefault(image.url, image.param)
        fetched: dict[str, FetchedImage] = {}
        if remote:
            try:
                async with asyncio.TaskGroup() as group:
                    tasks = {url: group.create_task(
                        self._fetcher.fetch(url, allowed_domains, param, on_fetched))
                        for url, param in remote.items()}
            except* APIError as failures:
                raise failures.exceptions[0] from None  # the others were cancelled
            fetched = {url: task.result() for url, task in tasks.items()}

        def check_all() -> None:
            for image in images:
                if is_data_url(image.url):
                    check_data_url(image.url, self._limits, image.param)
            for url, image in fetched.items():
                check_image_bytes(image.data, self._limits, remote[url])

        # Decoding is CPU-bound (PIL releases the GIL while it decodes): off the event loop.
        started = time.monotonic()
        await asyncio.to_thread(check_all)
        checked_s = time.monotonic() - started
        return {url: data_url(image.data, image.mime) for url, image in fetched.items()}, checked_s


def replace_image_urls(messages: list[dict], replacements: dict[str, str]) -> None:
    """Point the engine's copies of the messages at the fetched bytes, in place."""
    if not replacements:
        return
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                image = part.get("image_url") if isinstance(part, dict) else None
                if image is not None and image.get("url") in replacements:
                    image["url"] = replacements[image["url"]]
