"""Shopper tokens for the demo and for a shop's integration tests (shop/orders/identity.py).

    # make each shop's signing secret file if it is missing (run-local.sh does this)
    .venv/bin/python scripts/shopper_token.py secrets [--config configs/local-cpu.yaml]
    # a token for one shopper (send it as the X-Shopper-Token header)
    .venv/bin/python scripts/shopper_token.py mint --shop demo-apparel --shopper u1001 [--ttl 3600]

A shop's own servers mint tokens the same way with any JWT library: HS256 over
{"aud": <shop id>, "sub": <shopper id>, "iat": <now>, "exp": <now + ttl>} with the shop's secret.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from configs.schema import APP_NAME, app_config_from_serve_config, load_serve_config  # noqa: E402
from shop.config import ShopConfig  # noqa: E402
from shop.orders.identity import ShopperTokenError, ShopperVerifier  # noqa: E402

DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "local-cpu.yaml"


def shops_of(config_path: Path) -> list[ShopConfig]:
    app = app_config_from_serve_config(load_serve_config(config_path), APP_NAME)
    return [] if app.shops is None else list(app.shops.catalog)


def ensure_secrets(config_path: Path) -> list[Path]:
    """Create every missing secret file the config names (256 random bits, mode 0600)."""
    made = []
    for shop in shops_of(config_path):
        if shop.identity is None or shop.identity.secret_file is None:
            continue
        path = PROJECT_ROOT / shop.identity.secret_file
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        made.append(path)
    return made


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="the Serve config whose shops to use")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("secrets", help="create missing secret files", parents=[config])
    mint = commands.add_parser("mint", help="print a token", parents=[config])
    mint.add_argument("--shop", required=True)
    mint.add_argument("--shopper", required=True)
    mint.add_argument("--ttl", type=int, default=3600)
    args = parser.parse_args()
    if args.command == "secrets":
        for path in ensure_secrets(args.config):
            shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
            print(f"shopper_token: created {shown}")
        return 0
    shop = next((s for s in shops_of(args.config) if s.id == args.shop), None)
    if shop is None or shop.identity is None:
        parser.error(f"{args.shop}: no such shop with identity in {args.config}")
    try:
        print(ShopperVerifier(shop.id, shop.identity, PROJECT_ROOT).mint(args.shopper, args.ttl))
    except ShopperTokenError as exc:
        parser.error(exc.message)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
