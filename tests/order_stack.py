"""The order look-up's real parts for tests: the reference order service (order_service/) on a
loopback port, the shops' config pointed at it, and shopper tokens signed with the shops'
secrets (files in a test directory, as production mounts them)."""

from __future__ import annotations

import secrets
import threading
import time
from datetime import datetime
from pathlib import Path

import httpx
import uvicorn

from loadtests.server_process import free_port
from order_service.app import create_app
from order_service.seed import seed_rows
from order_service.store import OrderStore
from shop.orders.identity import mint_token


class OrderServiceThread:
    """The reference order service in a thread of this process (unit tests): real HTTP, real
    SQLite, seeded relative to `now`."""

    def __init__(self, db: Path, now: datetime | None = None):
        self.store = store = OrderStore(db)
        store.replace_all(seed_rows(now))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(store, allow_faults=True), host="127.0.0.1",
                                port=self.port, log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("the reference order service did not start")

    def order_ids(self, shop: str, shopper: str) -> list[str]:
        """The shopper's order ids in the shop, newest first."""
        return [o.id for o in self.store.recent(shop, shopper, 50)]

    def set_fault(self, mode: str, delay_s: float = 5.0) -> None:
        set_fault(self.url, mode, delay_s)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


def set_fault(url: str, mode: str, delay_s: float = 5.0) -> None:
    """Make the reference order service at `url` (started with --allow-faults) slow, failing,
    malformed or healthy again (order_service/app.py)."""
    httpx.put(f"{url}/admin/fault", json={"mode": mode, "delay_s": delay_s},
              timeout=10).raise_for_status()


def point_shops_at(raw: dict, orders_url: str, secrets_dir: Path,
                   timeout_s: float | None = None) -> dict[str, Path]:
    """Point every shop of a raw serve config with order look-up at `orders_url` and at secret
    files in `secrets_dir` (made if missing); the secret file of each shop by id."""
    files = {}
    app = raw["applications"][0]
    for shop in app["args"].get("shops", {}).get("catalog", []):
        if "identity" not in shop:
            continue
        path = secrets_dir / f"{shop['id']}.key"
        if not path.exists():
            secrets_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(32))
        shop["identity"]["secret_file"] = str(path)
        files[shop["id"]] = path
        if "orders" in shop:
            backend = shop["orders"]["backend"]
            backend["base_url"] = f"{orders_url}/shops/{shop['id']}"
            if timeout_s is not None:
                backend["timeout_s"] = timeout_s
    return files


def token_for(secret_file: Path, shop: str, shopper: str, ttl_s: int = 600,
              now: float | None = None) -> str:
    return mint_token(secret_file.read_text().strip().encode(), shop, shopper, ttl_s, now)
