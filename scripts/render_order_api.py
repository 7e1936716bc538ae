"""Write docs/order-api.openapi.json: the order-system contract (shop/orders/contract.py) as the
reference order service (order_service/) serves it. A shop's own order system implements these
two calls; tests/unit/orders/test_order_api_doc.py fails when the document is stale.

    .venv/bin/python scripts/render_order_api.py [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from order_service.app import create_app  # noqa: E402
from order_service.store import OrderStore  # noqa: E402

DOCUMENT = PROJECT_ROOT / "docs" / "order-api.openapi.json"


def rendered() -> str:
    with tempfile.TemporaryDirectory() as scratch:
        spec = create_app(OrderStore(Path(scratch) / "orders.sqlite")).openapi()
    spec["info"]["description"] = (
        "The order system a shop connects to the customer-service assistant (docs/orders.md). "
        "Paths are relative to the shop's `orders.backend.base_url`; the reference service "
        "serves each shop under /shops/{shop}. Both calls are scoped to one shopper: an order "
        "that is not this shopper's is a 404, exactly like one that does not exist.")
    return json.dumps(spec, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the document is stale")
    args = parser.parse_args()
    text = rendered()
    if args.check:
        return 0 if DOCUMENT.read_text() == text else 1
    DOCUMENT.write_text(text)
    print(f"wrote {DOCUMENT.relative_to(PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
