"""Shared fixtures: the real configs, and small images made on the fly."""

from __future__ import annotations

import io

import pytest

from configs.schema import (
    APP_NAME,
    PROJECT_ROOT,
    AppConfig,
    ModelConfig,
    app_config_from_serve_config,
    load_serve_config,
)
from router.images.decode import data_url

LOCAL_CONFIG = PROJECT_ROOT / "configs" / "local-cpu.yaml"
PRODUCTION_CONFIG = PROJECT_ROOT / "configs" / "production-gpu.yaml"


def image_bytes(width: int = 64, height: int = 48, fmt: str = "PNG", color=(200, 30, 30)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, fmt)
    return buffer.getvalue()


def image_message(text: str = "Is this the item in the listing?", url: str | None = None) -> dict:
    return {
        "role": "user",
        "content": [
            {"type": "text", "text": text},
            {"type": "image_url", "image_url": {"url": url or data_url(image_bytes(), "image/png")}},
        ],
    }


@pytest.fixture(scope="session")
def local_config() -> AppConfig:
    return app_config_from_serve_config(load_serve_config(LOCAL_CONFIG), APP_NAME)


def model_for(config: AppConfig, modality: str) -> ModelConfig:
    """The model of `config` serving `modality` (tests ask for it by what it does)."""
    return next(m for m in config.models if m.modality == modality)


def pytest_collection_modifyitems(items):
    """Unit tests first (fast feedback), then integration tests on the shared stack, then
    disruptive ones (which restart its replicas), and last the tests that replace the shared
    stack with a stack of their own."""
    def rank(item) -> int:
        if item.get_closest_marker("own_stack"):
            return 3
        if item.get_closest_marker("disruptive"):
            return 2
        return 1 if item.get_closest_marker("integration") else 0

    items.sort(key=rank)  # stable: file order is kept within each rank
