"""The web chat page: static HTML, CSS and JavaScript (router/web/static/chat/, no build step) served by
the ingress at / and /chat, for shop owners and testers to talk to a shop's assistant.

The page holds no secrets and gets no data of its own: it calls the public API (/v1/shops,
/v1/chat/completions) with the API key its user types in, exactly as a shop's chat system would.
The one thing it reads from here is /chat/settings.json: the image limits (it resizes photos in
the browser to fit them) and whether the API wants a key.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from configs.schema import AppConfig

STATIC_DIR = Path(__file__).parent / "static" / "chat"
# The page loads only its own files and talks only to this origin; photos are data: URLs.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def page_settings(config: AppConfig) -> dict:
    """What the page needs to know about this server."""
    access = config.access
    keys = ("off" if not access.keys_file
            else "optional" if access.allow_anonymous else "required")
    limits = config.limits
    return {
        "keys": keys,
        "max_images": limits.max_images,
        "max_image_bytes": limits.max_image_bytes,
        "max_image_pixels": limits.max_image_pixels,
        "min_image_side": limits.min_image_side,
        "vision": any(m.modality == "vision" for m in config.models),
    }


def install_chat_page(api: FastAPI, config: AppConfig) -> None:
    """Routes of the page (nothing when `chat_page` is off)."""
    if not config.chat_page:
        return
    index = (STATIC_DIR / "index.html").read_bytes()
    settings = page_settings(config)

    async def page() -> HTMLResponse:
        return HTMLResponse(index, headers=SECURITY_HEADERS)

    api.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    api.add_api_route("/chat", page, methods=["GET"], include_in_schema=False)

    @api.get("/chat/settings.json", include_in_schema=False)
    async def page_config() -> JSONResponse:
        return JSONResponse(settings, headers={"Cache-Control": "no-cache"})

    api.mount("/chat/static", StaticFiles(directory=STATIC_DIR), name="chat-static")
