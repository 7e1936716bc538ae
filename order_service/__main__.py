"""Run the reference order service: python -m order_service [--port 8790] [--db PATH]

    --reseed        replace every order with the demo orders, dated from now (run-local does)
    --token-env X   require "Authorization: Bearer $X" on every call
    --allow-faults  enable PUT /admin/fault (chaos tests only)
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import uvicorn

from order_service.app import create_app
from order_service.seed import seed_rows
from order_service.store import OrderStore

logger = logging.getLogger("order_service")


def main() -> int:
    parser = argparse.ArgumentParser(description="The reference order service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--db", type=Path, default=Path(".run/orders.sqlite"))
    parser.add_argument("--reseed", action="store_true")
    parser.add_argument("--token-env", default=None)
    parser.add_argument("--allow-faults", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    store = OrderStore(args.db)
    if args.reseed or store.is_empty():
        store.replace_all(seed_rows())
        logger.info("seeded the demo orders into %s", args.db)
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            parser.error(f"--token-env {args.token_env}: the variable is not set")
    app = create_app(store, token, args.allow_faults)
    # Access logs off: an order service's log would carry shoppers' ids in every path.
    uvicorn.run(app, host=args.host, port=args.port, access_log=False, log_level="warning")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
