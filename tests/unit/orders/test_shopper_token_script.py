"""scripts/shopper_token.py as run-local.sh and the docs call it: secret files made once, mode
0600, and tokens that the shop's verifier accepts."""

from __future__ import annotations

import stat
import subprocess
import sys

import yaml

from configs.schema import load_serve_config
from shop.config import ShopperIdentityConfig
from shop.orders.identity import ShopperVerifier
from tests.conftest import LOCAL_CONFIG, PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "shopper_token.py"


def run(*args: str) -> str:
    return subprocess.run([sys.executable, str(SCRIPT), *args], check=True, capture_output=True,
                          text=True, cwd=PROJECT_ROOT).stdout


def test_secrets_then_mint_as_run_local_calls_them(tmp_path):
    raw = load_serve_config(LOCAL_CONFIG)
    shop = raw["applications"][0]["args"]["shops"]["catalog"][0]
    secret = tmp_path / "secret.key"
    shop["identity"]["secret_file"] = str(secret)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    assert "created" in run("secrets", "--config", str(config))
    mode = stat.S_IMODE(secret.stat().st_mode)
    assert mode == 0o600 and len(secret.read_text().strip()) >= 32
    first = secret.read_text()
    assert run("secrets", "--config", str(config)) == ""  # idempotent: kept as it was
    assert secret.read_text() == first
    token = run("mint", "--config", str(config), "--shop", shop["id"], "--shopper", "u1001")
    identity = ShopperIdentityConfig(secret_file=str(secret))
    assert ShopperVerifier(shop["id"], identity, PROJECT_ROOT).verify(token.strip()).id == "u1001"
