"""The `shops` section of the app config: strict, with the cross-field checks a typo needs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shop.config import ShopsConfig


def shops(local_config) -> dict:
    raw = local_config.shops.model_dump()
    raw["catalog"] = list(raw["catalog"])
    return raw


def test_shipped_configs_define_both_demo_shops(local_config):
    assert [s.id for s in local_config.shops.catalog] == ["demo-apparel", "demo-electronics"]
    assert local_config.shops.default == "demo-apparel"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(default="nope"), "not in the catalog"),
        (lambda c: c["catalog"].append(dict(c["catalog"][0])), "unique"),
        (lambda c: c["catalog"][0].update(default_language="en", languages=["zh"]),
         "default_language"),
        (lambda c: c["catalog"][0].update(tone="loud"), "Extra inputs"),
        (lambda c: c["catalog"][0]["handoff"].update(extra_patterns={"angry": {"en": ["x"]}}),
         "unknown reasons"),
        (lambda c: c["catalog"][0].update(id="Demo Apparel"), "pattern"),
        (lambda c: c["catalog"][0]["retrieval"].update(min_relevance=0), "greater than 0"),
    ],
)
def test_mistakes_are_refused_with_a_message(local_config, change, message):
    raw = shops(local_config)
    change(raw)
    with pytest.raises(ValidationError) as error:
        ShopsConfig.model_validate(raw)
    assert message in str(error.value)
