"""route_for_request: table-driven, no servers."""

from __future__ import annotations

import pytest

from router.api.errors import APIError
from router.api.protocol import ChatCompletionRequest
from router.routing import CatalogEntry, route_for_request

TEXT = CatalogEntry("Qwen/Qwen3-0.6B", "text")
VISION = CatalogEntry("Qwen/Qwen2.5-VL-3B-Instruct", "vision")
BOTH = (TEXT, VISION)
IMG = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}


def req(messages, model=None) -> ChatCompletionRequest:
    body = {"messages": messages}
    if model is not None:
        body["model"] = model
    return ChatCompletionRequest.model_validate(body)


@pytest.mark.parametrize(
    ("name", "messages", "model", "expected_model", "expected_modality"),
    [
        ("plain text", [{"role": "user", "content": "when will it ship?"}], None, TEXT.name, "text"),
        ("text parts only", [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], None, TEXT.name, "text"),
        ("auto with text", [{"role": "user", "content": "hi"}], "auto", TEXT.name, "text"),
        ("image part", [{"role": "user", "content": [{"type": "text", "text": "this?"}, IMG]}], None, VISION.name, "vision"),
        ("image only", [{"role": "user", "content": [IMG]}], "auto", VISION.name, "vision"),
        (
            "image in an earlier turn",
            [
                {"role": "user", "content": [IMG]},
                {"role": "assistant", "content": "That is the grey one."},
                {"role": "user", "content": "and in size M?"},
            ],
            None, VISION.name, "vision",
        ),
        ("explicit text model", [{"role": "user", "content": "hi"}], TEXT.name, TEXT.name, "text"),
        ("explicit vision model, text only", [{"role": "user", "content": "hi"}], VISION.name, VISION.name, "vision"),
        ("explicit vision model, image", [{"role": "user", "content": [IMG]}], VISION.name, VISION.name, "vision"),
    ],
)
def test_route(name, messages, model, expected_model, expected_modality):
    decision = route_for_request(req(messages, model), BOTH)
    assert (decision.model, decision.modality) == (expected_model, expected_modality), name


def test_image_to_text_model_is_400_naming_the_vision_model():
    with pytest.raises(APIError) as err:
        route_for_request(req([{"role": "user", "content": [IMG]}], TEXT.name), BOTH)
    assert err.value.status == 400
    assert err.value.code == "model_cannot_take_images"
    assert VISION.name in err.value.message


def test_unknown_model_is_404_listing_models():
    with pytest.raises(APIError) as err:
        route_for_request(req([{"role": "user", "content": "hi"}], "gpt-4o"), BOTH)
    assert err.value.status == 404
    assert err.value.code == "model_not_found"
    assert TEXT.name in err.value.message and VISION.name in err.value.message


def test_unknown_model_name_is_sanitised_in_the_message():
    with pytest.raises(APIError) as err:
        route_for_request(req([{"role": "user", "content": "hi"}], "x\n\x00" + "y" * 500), BOTH)
    assert "\n" not in err.value.message and "\x00" not in err.value.message
    assert len(err.value.message) < 300


def test_image_without_a_vision_model_is_400():
    with pytest.raises(APIError) as err:
        route_for_request(req([{"role": "user", "content": [IMG]}]), (TEXT,))
    assert err.value.status == 400
    assert err.value.code == "no_vision_model"
