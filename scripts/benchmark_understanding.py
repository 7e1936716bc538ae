"""What understanding a message costs the ingress: the shop layer's plan (hand-off rules,
retrieval by words and meaning, the curated and no-answer decisions) for every message of both
labelled sets, 8 at a time on one event loop as the ingress runs them, and the memory the shop
layer adds to an ingress replica.

    .venv/bin/python scripts/benchmark_understanding.py [--concurrency 8] [--words-only]

Passes, printed side by side:
- cold, 8 in flight: every message is new (its vectors are computed by the embedding worker);
- repeated, 8 in flight: the same messages again (vectors from the LRU: a peak's hot questions);
- cold at fixed arrival rates (messages per second, open loop): where one embedding thread
  stops keeping up and the budget (shops.meaning.max_wait_ms / max_queued) sends messages to
  words alone;
- words only: shops.meaning off, for comparison.
Each line gives plans per second, the plan's latency p50/p99 (the wait for the vector included)
and the share of messages understood by words alone. Only timings are printed, nothing about a
case (the sets' test halves stay unread).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from pathlib import Path

from configs.schema import APP_NAME, PROJECT_ROOT, app_config_from_serve_config, load_serve_config
from evals.cases import LabelledSet, Purpose
from shop.layer import ShopLayer, Turn
from shop.knowledge.meaning import Embedder

SETS = ("evals/shop-messages.yaml", "evals/shopper-messages-2.yaml")


class Defaults:
    temperature, top_p, max_tokens = 0.7, 0.8, 256


class AnyShop:
    def shop_for(self, requested, default):
        return requested if requested is not None else default


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


class Run:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.by_words = 0
        self.wall = 0.0


async def plan_one(layer: ShopLayer, case: dict, run: Run) -> None:
    shop = layer.select(case["shop"], AnyShop())
    turn = Turn(case["messages"], None, "text-model", Defaults(), False)
    started = time.perf_counter()
    plan = await shop.plan(turn)
    run.times.append((time.perf_counter() - started) * 1000)
    run.by_words += plan.understood_by_words
    await asyncio.sleep(0)  # a request's I/O: lets the loop run between plans, as an ingress


async def closed_loop(layer: ShopLayer, cases: list[dict], concurrency: int) -> Run:
    """`concurrency` plans in flight until every case is planned."""
    pending, run = list(cases), Run()

    async def worker() -> None:
        while pending:
            await plan_one(layer, pending.pop(), run)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    run.wall = time.perf_counter() - started
    return run


async def open_loop(layer: ShopLayer, cases: list[dict], rate: float) -> Run:
    """One new plan every 1/`rate` seconds, whatever the ones before are doing."""
    run, tasks = Run(), []
    started = time.perf_counter()
    for i, case in enumerate(cases):
        await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        tasks.append(asyncio.ensure_future(plan_one(layer, case, run)))
    await asyncio.gather(*tasks)
    run.wall = time.perf_counter() - started
    return run


def report(name: str, run: Run) -> None:
    times = run.times
    print(f"{name:34} {len(times):4d} plans {len(times) / run.wall:6.1f}/s  p50 "
          f"{statistics.median(times):6.2f} ms  p99 {percentile(times, 0.99):7.2f} ms  "
          f"by words alone {run.by_words / len(times):5.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rates", type=float, nargs="*", default=[10, 20, 40, 80])
    args = parser.parse_args()
    config = app_config_from_serve_config(
        load_serve_config(PROJECT_ROOT / "configs" / "local-cpu.yaml"), APP_NAME)
    cases = [case for path in SETS
             for case in LabelledSet.load(PROJECT_ROOT / path).select("all", Purpose.SCORE).cases]
    print(f"{len(cases)} messages of {len(SETS)} labelled sets, {args.concurrency} in flight, "
          f"one event loop; embedding threads {config.shops.meaning.threads}")

    before = rss_mb()
    words_only = config.shops.model_copy(update={"meaning": config.shops.meaning.model_copy(
        update={"enabled": False})})
    plain = ShopLayer(words_only, PROJECT_ROOT)
    after_words = rss_mb()
    layer = ShopLayer(config.shops, PROJECT_ROOT)
    after_meaning = rss_mb()
    print(f"ingress memory: shop layer by words {after_words - before:.0f} MB, the embedding "
          f"model and vectors {after_meaning - after_words:.0f} MB more (RSS now "
          f"{after_meaning:.0f} MB)")
    # Once, so that jieba's and the model's first-call costs are not counted.
    asyncio.run(closed_loop(layer, cases[:4], 1))
    embedder = Embedder.shared()

    def cold(prefix: str) -> list[dict]:
        """The cases with a marker that makes every message new to the vector LRU."""
        embedder._cache.clear()
        return [{**case, "messages": [*case["messages"][:-1], {
            **case["messages"][-1], "content": f"{prefix} {case['messages'][-1]['content']}"
            if isinstance(case["messages"][-1]["content"], str)
            else case["messages"][-1]["content"]}]} for case in cases]

    repeated = cold("#")
    report(f"meaning, cold, {args.concurrency} in flight",
           asyncio.run(closed_loop(layer, repeated, args.concurrency)))
    for case in repeated:  # every vector in the LRU: the hot questions of a peak
        shop = layer.select(case["shop"], AnyShop())
        embedder.query_vectors(shop.assistant.meaning_queries(case["messages"]))
    report(f"meaning, repeated, {args.concurrency} in flight",
           asyncio.run(closed_loop(layer, repeated, args.concurrency)))
    for rate in args.rates:
        report(f"meaning, cold, {rate:g} new/s", asyncio.run(
            open_loop(layer, cold(f"#{rate:g}")[:max(40, int(rate * 6))], rate)))
    report(f"words only, {args.concurrency} in flight",
           asyncio.run(closed_loop(plain, cases, args.concurrency)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(f"process CPU {usage.ru_utime + usage.ru_stime:.1f} s, max RSS "
          f"{usage.ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
