"""The published order-system contract (docs/order-api.openapi.json) is the one the reference
service serves and the client parses."""

from __future__ import annotations

import json

from scripts.render_order_api import DOCUMENT, rendered


def test_the_published_contract_is_current():
    assert DOCUMENT.read_text() == rendered(), \
        "docs/order-api.openapi.json is stale: run scripts/render_order_api.py"


def test_the_contract_has_the_two_calls_and_no_admin_route():
    paths = json.loads(DOCUMENT.read_text())["paths"]
    assert set(paths) == {"/health", "/shops/{shop}/shoppers/{shopper_id}/orders",
                          "/shops/{shop}/shoppers/{shopper_id}/orders/{order_id}"}
    detail = paths["/shops/{shop}/shoppers/{shopper_id}/orders/{order_id}"]["get"]
    assert {"200", "404"} <= set(detail["responses"])
