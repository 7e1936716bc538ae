"""How far a key gets past its requests-per-minute limit, by store and number of ingress
replicas. Prints figures; asserts nothing.

    .venv/bin/python loadtests/rate_limit_accuracy.py [--limit 20] [--burst 60]

Each "replica" is a separate in-process ingress app with its own RateLimiter, as separate
processes would have; a burst of concurrent requests from one key is spread over them in turn
(Serve's proxy spreads them too). Stores: each replica's memory, or one Redis (Debian's
redis-server, started here on a loopback port). The integration test
`test_limits_hold_across_two_ingress_replicas_while_another_key_is_served` measures the same on
the real stack (two Serve ingress replicas, Redis).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from configs.schema import APP_NAME, app_config_from_serve_config, load_serve_config  # noqa: E402
from loadtests.server_process import free_port  # noqa: E402
from router.access.api_keys import key_entry, new_key  # noqa: E402
from loadtests.plain_ingress import ingress_app  # noqa: E402

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "local-cpu.yaml"


def replica(keys_file: Path, store: str | None):
    config = app_config_from_serve_config(load_serve_config(CONFIG), APP_NAME)
    config = config.model_copy(update={"access": config.access.model_copy(update={
        "keys_file": str(keys_file), "allow_anonymous": False, "rate_limit_store": store,
        "store_timeout_s": 2.0})})
    api, _ = ingress_app(config)  # the burst asks GET /v1/models: no model is called
    return httpx.AsyncClient(transport=httpx.ASGITransport(api), base_url="http://ingress")


async def burst(replicas: int, store: str | None, limit: int, count: int, folder: Path) -> int:
    key = new_key()
    key_id = f"burst-{replicas}-{'redis' if store else 'memory'}-{time.monotonic_ns()}"
    keys_file = folder / f"{key_id}.yaml"
    keys_file.write_text(yaml.safe_dump({"keys": [
        key_entry(key, key_id, "*", "backend", {"requests_per_minute": limit})]}))
    clients = [replica(keys_file, store) for _ in range(replicas)]
    headers = {"Authorization": f"Bearer {key}"}
    responses = await asyncio.gather(*(clients[i % replicas].get("/v1/models", headers=headers)
                                       for i in range(count)))
    for client in clients:
        await client.aclose()
    return sum(1 for r in responses if r.status_code == 200)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--burst", type=int, default=60)
    args = parser.parse_args()
    redis_bin = shutil.which("redis-server")
    port = free_port()
    server = None
    if redis_bin:
        server = subprocess.Popen([redis_bin, "--port", str(port), "--bind", "127.0.0.1",
                                   "--save", "", "--appendonly", "no"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    try:
        with tempfile.TemporaryDirectory() as folder:
            print(f"key limited to {args.limit} requests/min, {args.burst} sent at once")
            print(f"{'ingress replicas':<18}{'store':<8}{'admitted':>9}{'past limit':>12}")
            cases = [(1, None), (2, None)]
            if server is not None:
                cases += [(1, f"redis://127.0.0.1:{port}/0"), (2, f"redis://127.0.0.1:{port}/0")]
            for replicas, store in cases:
                admitted = asyncio.run(burst(replicas, store, args.limit, args.burst,
                                             Path(folder)))
                print(f"{replicas:<18}{'redis' if store else 'memory':<8}{admitted:>9}"
                      f"{admitted - args.limit:>+12d}")
            if server is None:
                print("(redis-server not installed: scripts/install-debian-tools.sh)")
    finally:
        if server is not None:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
