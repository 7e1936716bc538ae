"""Fast answers through the full local stack: how many curated FAQ answers per second the stack
serves, and how fast, with the model engines running beside it; how much of a sales-peak mix is
answered without a model (curated answers and the response cache); and the GPU time that saves
in a peak hour, on paper.

    scripts/benchmark.sh --fast-answers [--quick]   # = .venv/bin/python -m loadtests.fast_answers

The stack is the shipped local config (configs/local-cpu.yaml, Ray Serve env of configs/
ray-serve.env, the real local models) on a free port, with two changes for a repeatable run: the
sales calendar is emptied (its pre-warm would depend on today's date) and the text model runs
exactly one replica (autoscaling would start a second engine on the same 2 cores mid-run).

1. Curated answers: every FAQ question the demo shops wrote (both languages), sent by each of
   CLIENTS concurrent aiohttp clients for DURATION_S, as JSON and as SSE streams; answers come
   back with `service.cache == "faq"` (written questions that are hand-off phrases, "can I talk
   to a person?", get the hand-off instead: `bypass`). Target: >= 500 answers/s with p99 < 50 ms.
2. The peak mix (MIX below, fixed seed): hot FAQ questions drawn Zipf-like, long-tail questions
   drawn with replacement from the labelled evaluation set (so some repeat, as at a peak),
   hand-offs, and photos; sent by MIX_CLIENTS clients. Reported: the share answered by each path
   (`service.cache`), the response cache's hit rate, the model's answers and their tokens.
3. GPU time saved in a peak hour of PEAK_MESSAGES_PER_HOUR messages, at the A10 figure the
   mission quotes for Qwen3-0.6B (100 concurrent at 0.78 s average: 128 answers/s per GPU).

Writes results.json and results.md to docs/benchmarks/<date>-cpu-<n>core-fast-answers[-quick]/.
Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from datetime import date
from pathlib import Path

import aiohttp
import yaml

from configs.schema import PROJECT_ROOT, load_serve_config
from configs.serve_env import load_serve_env
from loadtests.bench_workloads import EVAL_MESSAGES
from loadtests.benchmark import (
    RESULTS_DIR,
    VENV_BIN,
    client_cpu_s,
    log,
    machine,
    running,
    versions,
)
from loadtests.server_process import free_port
from loadtests.stats import percentile
from loadtests.workload import image_data_url

LOCAL_CONFIG = PROJECT_ROOT / "configs" / "local-cpu.yaml"
CLIENTS = (8, 32)  # 8: latency near the floor; 32: the most the stack gives
DURATION_S = 20.0
MIX_CLIENTS = 4
MIX_REQUESTS = 240
# The model's answers get the shop's own max_tokens (256), as a shop's widget sends none: an
# answer cut at a lower limit is never cached (only complete answers are), and with 64 the
# response cache held nothing (SmolLM2's answers run longer).
MIX_MAX_TOKENS = None
# Shares of the peak mix. Hand-offs: the mission's 12% of sessions; photos: a few.
MIX = {"hot": 0.50, "long_tail": 0.30, "handoff": 0.12, "image": 0.08}
ZIPF_S = 1.1  # popularity of the hot questions: the first few take most of the traffic
PEAK_MESSAGES_PER_HOUR = 1_000_000
A10_ANSWERS_PER_S = 100 / 0.78  # MISSION.md: 100 concurrent at 0.78 s average on one A10
TARGET = {"answers_per_s": 500, "p99_ms": 50}


def stack_config(port: int) -> dict:
    raw = load_serve_config(LOCAL_CONFIG)
    raw["http_options"]["port"] = port
    app = raw["applications"][0]
    for deployment in app["deployments"]:
        policy = deployment.get("autoscaling_config", {}).get("policy")
        if policy:
            policy["policy_kwargs"] = {"events": []}
        if deployment["name"] == "TextModel":
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = 1
    return raw


def written_questions(config: dict) -> list[tuple[str, str]]:
    """(shop id, question) for every FAQ question the demo shops wrote."""
    found = []
    for shop in config["applications"][0]["args"]["shops"]["catalog"]:
        faq = yaml.safe_load((PROJECT_ROOT / shop["knowledge_base"] / "faq.yaml").read_text())
        for entry in faq["entries"]:
            for language in ("zh", "en"):
                found += [(shop["id"], q) for q in entry["questions"].get(language, [])]
    return found


def chat_body(text: str | list, **fields) -> dict:
    return {"messages": [{"role": "user", "content": text}], **fields}


async def curated_load(url: str, questions: list[tuple[str, str]], clients: int,
                       duration_s: float, stream: bool) -> dict:
    """Answers/s and latency of curated answers; every answer's `service.cache` is checked."""
    latencies: list[float] = []
    outcomes: Counter = Counter()
    deadline = time.perf_counter() + duration_s
    rng = random.Random(1)

    async def one(session: aiohttp.ClientSession, shop: str, question: str) -> None:
        started = time.perf_counter()
        body = chat_body(question, stream=stream)
        async with session.post("/v1/chat/completions", json=body,
                                headers={"X-Shop-Id": shop}) as response:
            raw = await response.read()
        elapsed = time.perf_counter() - started
        if response.status != 200:
            outcomes[f"http {response.status}"] += 1
            return
        if stream:
            events = [line[6:] for line in raw.decode().split("\n") if line.startswith("data: ")]
            service = json.loads(events[-2]).get("service", {}) if len(events) > 1 else {}
        else:
            service = json.loads(raw).get("service", {})
        outcomes[service.get("cache", "none")] += 1
        latencies.append(elapsed)

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            await one(session, *rng.choice(questions))

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=connector) as session:
        for shop, question in questions[:20]:  # warm-up: connections, first-use paths
            await one(session, shop, question)
        latencies.clear()
        outcomes.clear()
        cpu0, wall0 = client_cpu_s(), time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(clients)))
        wall, cpu = time.perf_counter() - wall0, client_cpu_s() - cpu0
    curated = outcomes.get("faq", 0)
    return {"clients": clients, "stream": stream, "seconds": round(wall, 1),
            "answers_per_s": curated / wall, "requests": sum(outcomes.values()),
            "outcomes": dict(outcomes), "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "client_cpu_core_share": cpu / wall}


def peak_mix(config: dict, count: int, seed: int = 7) -> list[dict]:
    """The mix's requests: {kind, shop, body}."""
    rng = random.Random(seed)
    hot = written_questions(config)
    rng.shuffle(hot)
    weights = [1 / (rank + 1) ** ZIPF_S for rank in range(len(hot))]
    cases = yaml.safe_load(EVAL_MESSAGES.read_text(encoding="utf-8"))["cases"]
    text_only = [c for c in cases if all(isinstance(m["content"], str) for m in c["messages"])]
    long_tail = [c for c in text_only if c.get("expected_handoff") is None]
    handoffs = [c for c in text_only if c.get("expected_handoff") in
                ("requested", "complaint", "sensitive")]
    photo = image_data_url("parcel", (320, 240))
    requests = []
    for kind in rng.choices(list(MIX), weights=list(MIX.values()), k=count):
        if kind == "hot":
            shop, question = rng.choices(hot, weights=weights)[0]
            messages = [{"role": "user", "content": question}]
        elif kind == "image":
            shop = rng.choice(["demo-apparel", "demo-electronics"])
            messages = [{"role": "user", "content": [
                {"type": "text", "text": rng.choice(["颜色发错了，看照片", "Is this the item in "
                                                     "the listing?"])},
                {"type": "image_url", "image_url": {"url": photo}}]}]
        else:
            case = rng.choice(long_tail if kind == "long_tail" else handoffs)
            shop, messages = case["shop"], case["messages"]
        body = {"messages": messages}
        if MIX_MAX_TOKENS is not None:
            body["max_tokens"] = MIX_MAX_TOKENS
        requests.append({"kind": kind, "shop": shop, "body": body})
    return requests


async def run_mix(url: str, requests: list[dict], clients: int) -> dict:
    results: list[dict] = []
    queue = list(enumerate(requests))

    async def worker(session: aiohttp.ClientSession) -> None:
        while queue:
            index, request = queue.pop(0)
            started = time.perf_counter()
            async with session.post("/v1/chat/completions", json=request["body"],
                                    headers={"X-Shop-Id": request["shop"]}) as response:
                body = await response.json(content_type=None)
            elapsed = time.perf_counter() - started
            service = body.get("service") or {}
            results.append({
                "index": index, "kind": request["kind"], "status": response.status,
                "cache": service.get("cache", "error"),
                "handoff": (service.get("handoff") or {}).get("reason"),
                "completion_tokens": (body.get("usage") or {}).get("completion_tokens", 0),
                "prompt_tokens": (body.get("usage") or {}).get("prompt_tokens", 0),
                "seconds": elapsed})
            if len(results) % 20 == 0:
                log(f"  mix: {len(results)}/{len(requests)} answered")

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(url, timeout=timeout) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(clients)))
        wall = time.perf_counter() - started
    by_cache = Counter(r["cache"] for r in results)
    model = [r for r in results if r["completion_tokens"] > 0]
    total = len(results)
    without_model = by_cache["faq"] + by_cache["hit"]
    cache_lookups = by_cache["hit"] + by_cache["miss"]
    return {
        "requests": total, "seconds": round(wall, 1), "clients": clients,
        "by_kind": dict(Counter(r["kind"] for r in results)),
        "by_cache": dict(by_cache),
        "by_kind_and_cache": {kind: dict(Counter(r["cache"] for r in results if r["kind"] == kind))
                              for kind in MIX},
        "errors": sum(r["status"] != 200 for r in results),
        "answered_without_model_share": without_model / total if total else 0.0,
        "response_cache_hit_rate": by_cache["hit"] / cache_lookups if cache_lookups else 0.0,
        "model_answers": len(model),
        "model_answer_share": len(model) / total if total else 0.0,
        "mean_completion_tokens": (sum(r["completion_tokens"] for r in model) / len(model)
                                   if model else 0.0),
        "p50_s_by_cache": {cache: percentile([r["seconds"] for r in results
                                              if r["cache"] == cache], 0.5)
                           for cache in by_cache},
    }


def gpu_savings(mix: dict, peak_messages_per_hour: int) -> dict:
    """GPU-seconds a peak hour saves at the mix's share answered without a model."""
    saved_answers = peak_messages_per_hour * mix["answered_without_model_share"]
    gpu_s_per_answer = 1 / A10_ANSWERS_PER_S
    model_share = mix["model_answer_share"]
    per_s = peak_messages_per_hour / 3600
    return {
        "peak_messages_per_hour": peak_messages_per_hour,
        "a10_answers_per_s": round(A10_ANSWERS_PER_S, 1),
        "gpu_seconds_per_model_answer": round(gpu_s_per_answer, 4),
        "model_answers_avoided": round(saved_answers),
        "gpu_seconds_saved": round(saved_answers * gpu_s_per_answer),
        "a10s_busy_without_caches": round(
            per_s * (model_share + mix["answered_without_model_share"]) / A10_ANSWERS_PER_S, 2),
        "a10s_busy_with_caches": round(per_s * model_share / A10_ANSWERS_PER_S, 2),
    }


def markdown(results: dict) -> str:
    setup, mix, gpu = results["setup"], results["mix"], results["gpu"]
    lines = [f"# Fast answers, {setup['date']}{' (quick)' if setup['quick'] else ''}", "",
             f"Machine: {setup['machine']['cpus']} CPUs ({setup['machine']['cpu_model']}), "
             f"{setup['machine']['memory_gib']} GiB; versions: "
             + ", ".join(f"{k} {v}" for k, v in setup["versions"].items()) + ".",
             "Stack: the shipped local config (real local models, engines running), Ray Serve "
             "env of configs/ray-serve.env; text model pinned to one replica, calendar empty.",
             "", "## Curated answers through the full stack", "",
             f"Target: at least {TARGET['answers_per_s']} answers/s at p99 under "
             f"{TARGET['p99_ms']} ms.", "",
             "| mode | clients | answers/s | p50 ms | p99 ms | requests | outcomes | client CPU (cores) |",
             "|---|---|---|---|---|---|---|---|"]
    for run in results["curated"]:
        lines.append(f"| {'SSE stream' if run['stream'] else 'JSON'} | {run['clients']} | "
                     f"{run['answers_per_s']:.0f} | {run['p50_ms']:.1f} | {run['p99_ms']:.1f} | "
                     f"{run['requests']} | {run['outcomes']} | "
                     f"{run['client_cpu_core_share']:.2f} |")
    lines += ["", "## The peak mix", "",
              f"{mix['requests']} requests ({mix['by_kind']}), {mix['clients']} clients, "
              f"{mix['seconds']} s; shares: {MIX}; max_tokens "
              f"{MIX_MAX_TOKENS or 'the shop default (256)'}.", "",
              f"- answered without a model (curated + cache hits): "
              f"**{mix['answered_without_model_share']:.1%}**",
              f"- response cache hit rate (hits / cacheable model questions): "
              f"{mix['response_cache_hit_rate']:.1%}",
              f"- by `service.cache`: {mix['by_cache']}",
              f"- by kind: {mix['by_kind_and_cache']}",
              f"- model answers: {mix['model_answers']} ({mix['model_answer_share']:.1%}), "
              f"{mix['mean_completion_tokens']:.0f} completion tokens on average",
              f"- p50 seconds by path: "
              + ", ".join(f"{k} {v:.3f}" for k, v in mix["p50_s_by_cache"].items() if v),
              f"- errors: {mix['errors']}", "",
              "## GPU time a peak hour saves (on paper)", "",
              f"{gpu['peak_messages_per_hour']:,} messages in the peak hour; one A10 answers "
              f"{gpu['a10_answers_per_s']} questions/s with Qwen3-0.6B (MISSION.md: 100 "
              f"concurrent at 0.78 s), {gpu['gpu_seconds_per_model_answer']} GPU-s each.", "",
              f"- model answers avoided: {gpu['model_answers_avoided']:,}",
              f"- GPU-seconds saved: **{gpu['gpu_seconds_saved']:,}** "
              f"({gpu['gpu_seconds_saved'] / 3600:.2f} GPU-hours)",
              f"- A10s busy at the peak: {gpu['a10s_busy_without_caches']} without the fast "
              f"answers, {gpu['a10s_busy_with_caches']} with them"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes: 6 s per curated run, 80 mix requests")
    parser.add_argument("--clients", default=",".join(map(str, CLIENTS)),
                        help="comma-separated concurrent clients for the curated runs")
    parser.add_argument("--mix-requests", type=int)
    parser.add_argument("--peak-messages-per-hour", type=int, default=PEAK_MESSAGES_PER_HOUR)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    # A TERM unwinds like Ctrl-C, so the stack this run started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    today = date.today().isoformat()
    suffix = "-quick" if args.quick else ""
    out = args.out or RESULTS_DIR / f"{today}-cpu-{os.cpu_count()}core-fast-answers{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    logs = PROJECT_ROOT / ".run" / "fast-answers"
    logs.mkdir(parents=True, exist_ok=True)
    duration = 6.0 if args.quick else DURATION_S
    count = args.mix_requests or (80 if args.quick else MIX_REQUESTS)

    port = free_port()
    config = stack_config(port)
    config_path = logs / "serve-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    results: dict = {"setup": {"date": today, "quick": args.quick, "machine": machine(),
                               "versions": versions(), "mix": MIX, "zipf_s": ZIPF_S,
                               "mix_max_tokens": MIX_MAX_TOKENS}}
    with running("Ray Serve stack (shipped local config)",
                 [str(VENV_BIN / "serve"), "run", str(config_path)], load_serve_env(),
                 f"{url}/ready", logs / "serve.log", [str(VENV_BIN / "ray"), "stop", "--force"]):
        questions = written_questions(config)
        results["curated"] = []
        for clients, stream in [(int(c), s) for s in (False, True)
                                for c in args.clients.split(",")]:
            log(f"curated answers ({'SSE' if stream else 'JSON'}), {clients} clients, "
                f"{duration:.0f} s ...")
            run = asyncio.run(curated_load(url, questions, clients, duration, stream))
            log(f"  {run['answers_per_s']:.0f} answers/s, p50 {run['p50_ms']:.1f} ms, p99 "
                f"{run['p99_ms']:.1f} ms, outcomes {run['outcomes']}")
            results["curated"].append(run)
        log(f"the peak mix: {count} requests, {MIX_CLIENTS} clients ...")
        results["mix"] = asyncio.run(run_mix(url, peak_mix(copy.deepcopy(config), count),
                                             MIX_CLIENTS))
        log(f"  without a model: {results['mix']['answered_without_model_share']:.1%}, cache "
            f"hit rate {results['mix']['response_cache_hit_rate']:.1%}, "
            f"by cache {results['mix']['by_cache']}")
    results["gpu"] = gpu_savings(results["mix"], args.peak_messages_per_hour)
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    (out / "results.md").write_text(markdown(results))
    log(f"wrote {out.relative_to(PROJECT_ROOT) if out.is_relative_to(PROJECT_ROOT) else out}")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
