"""How long one large request body stalls the ingress event loop, with and without the parse
worker (router/api/parse_offload.py). Prints figures; asserts nothing (shared, noisy machines).

    .venv/bin/python loadtests/body_stall.py

The ingress app runs in-process over a trivial replica (no model, no Ray), so what is measured is
the ingress's own work. Small chat requests flow from 8 concurrent clients the whole time; one
16 MiB body is sent in the middle, in two shapes: ~560,000 tiny JSON objects (the worst case for
a JSON parser and pydantic: always invalid, since a request holds at most 64 messages) and one
16 MiB string (an image-sized data URL). For each shape and mode it reports the longest event-loop
stall seen by a 1 ms ticker and the small requests' p50 / max latency over the window.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from configs.schema import APP_NAME, app_config_from_serve_config, load_serve_config  # noqa: E402
from model_server.engine_protocol import GenerationChunk  # noqa: E402
from loadtests.plain_ingress import ingress_app  # noqa: E402

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "local-cpu.yaml"
MiB = 1 << 20
SMALL = json.dumps({"messages": [{"role": "user", "content": "Is shipping free?"}],
                    "max_tokens": 4}).encode()


def many_objects() -> bytes:
    one = json.dumps({"role": "user", "content": "a"}) + ","
    count = (16 * MiB - 100) // len(one)
    return ('{"messages":[' + one * count + '{"role":"user","content":"a"}]}').encode()


def one_string() -> bytes:
    return json.dumps({"messages": [{"role": "user", "content": [{"type": "image_url",
        "image_url": {"url": "data:image/png;base64," + "A" * (16 * MiB - 200)}}]}]}).encode()


async def answer(request):
    yield GenerationChunk("ok", 5, 1, "stop")


def app_for(worker_threshold: int):
    config = app_config_from_serve_config(load_serve_config(CONFIG), APP_NAME)
    config = config.model_copy(update={"limits": config.limits.model_copy(
        update={"parse_in_worker_bytes": worker_threshold})})
    return ingress_app(config, answer)


async def measure(body: bytes, worker_threshold: int) -> dict[str, float]:
    api, service = app_for(worker_threshold)
    if worker_threshold < len(body):
        service.parser.start()
        await asyncio.sleep(3)  # the worker process is up before measuring
    transport = httpx.ASGITransport(app=api)
    headers = {"Content-Type": "application/json"}
    stop = asyncio.Event()
    latencies: list[float] = []
    worst_lag = 0.0

    async def ticker():
        nonlocal worst_lag
        while not stop.is_set():
            started = time.perf_counter()
            await asyncio.sleep(0.001)
            worst_lag = max(worst_lag, time.perf_counter() - started - 0.001)

    async def small_client(client: httpx.AsyncClient):
        while not stop.is_set():
            started = time.perf_counter()
            response = await client.post("/v1/chat/completions", content=SMALL, headers=headers)
            assert response.status_code == 200, response.text
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(transport=transport, base_url="http://ingress",
                                 timeout=60) as client:
        tasks = [asyncio.create_task(ticker())]
        tasks += [asyncio.create_task(small_client(client)) for _ in range(8)]
        await asyncio.sleep(0.5)
        latencies.clear()
        worst_lag = 0.0
        started = time.perf_counter()
        big = await client.post("/v1/chat/completions", content=body, headers=headers)
        big_s = time.perf_counter() - started
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.gather(*tasks)
    service.parser.close()
    return {"status": big.status_code, "big_s": big_s, "worst_lag_ms": worst_lag * 1000,
            "small_p50_ms": statistics.median(latencies) * 1000,
            "small_max_ms": max(latencies) * 1000, "small_n": len(latencies)}


def main() -> None:
    print(f"{'body':<22}{'parsed':<14}{'status':>7}{'big s':>8}{'loop stall ms':>15}"
          f"{'small p50 ms':>14}{'small max ms':>14}{'small n':>9}")
    for name, body in (("560k tiny objects", many_objects()), ("one 16 MiB string", one_string())):
        for mode, threshold in (("on the loop", 1 << 40), ("in a worker", 256 * 1024)):
            r = asyncio.run(measure(body, threshold))
            print(f"{name:<22}{mode:<14}{r['status']:>7}{r['big_s']:>8.2f}"
                  f"{r['worst_lag_ms']:>15.0f}{r['small_p50_ms']:>14.1f}"
                  f"{r['small_max_ms']:>14.0f}{r['small_n']:>9}")


if __name__ == "__main__":
    main()
