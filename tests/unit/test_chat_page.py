"""The web chat page as the ingress serves it (in-process): the page and its files at / and /chat
with a strict content-security policy, the settings it reads, nothing when it is turned off;
and /v1/models naming the weights actually served (`root`)."""

from __future__ import annotations

import json

import pytest

from configs.schema import AccessConfig
from router.web.chat_page import page_settings
from router.chat_service import served_weights
from tests.unit.test_ingress_http import client_for


@pytest.mark.parametrize("path", ["/", "/chat"])
def test_the_page_is_served_at_root_and_chat_with_a_strict_csp(local_config, path):
    response = client_for(local_config).get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert '<script src="/chat/static/chat.js" defer></script>' in response.text
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp  # no inline script or style anywhere on the page
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_pages_files_are_served_with_their_types(local_config):
    client = client_for(local_config)
    script = client.get("/chat/static/chat.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert "/v1/chat/completions" in script.text
    assert client.get("/chat/static/chat.css").headers["content-type"].startswith("text/css")
    assert client.get("/chat/static/../chat_page.py").status_code == 404  # no escape


def test_settings_tell_the_page_the_image_limits_and_whether_a_key_is_needed(local_config):
    settings = client_for(local_config).get("/chat/settings.json").json()
    limits = local_config.limits
    assert settings == {"keys": "off", "max_images": limits.max_images,
                        "max_image_bytes": limits.max_image_bytes,
                        "max_image_pixels": limits.max_image_pixels,
                        "min_image_side": limits.min_image_side, "vision": True}
    keyed = local_config.model_copy(update={"access": AccessConfig(
        keys_file="/nonexistent/keys.yaml", allow_anonymous=False)})
    assert page_settings(keyed)["keys"] == "required"


def test_the_page_can_be_turned_off(local_config):
    client = client_for(local_config.model_copy(update={"chat_page": False}))
    assert client.get("/").status_code == 404
    assert client.get("/chat/settings.json").status_code == 404


def test_models_name_the_weights_actually_served(local_config, tmp_path):
    data = client_for(local_config).get("/v1/models").json()["data"]
    for card, model in zip(data, local_config.models):
        assert card["id"] == model.name  # the production id stays
        assert card["root"] == served_weights(model)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({}))
    text = local_config.models[0]
    assert served_weights(text.model_copy(update={"source": str(checkpoint)})) == str(checkpoint)
    # A hub id that is neither cached nor substituted offline is reported as configured.
    missing = text.model_copy(update={"source": "nobody/nothing", "local_substitute": None})
    assert served_weights(missing) == "nobody/nothing"
