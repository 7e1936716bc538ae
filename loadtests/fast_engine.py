"""The request path at GPU token rates (issue 22): the real app with an engine that is never the
bottleneck, so what is measured is what forwarding tokens costs.

    .venv/bin/python -m loadtests.fast_engine [--quick] [--concurrency 1,8,32,64]
                                              [--paced-ms 20] [--paced-concurrency 64]
                                              [--guard-modes replace,off]

- The Serve side is the shipped stack (configs/local-cpu.yaml's app and deployments, Ray started
  with configs/ray-serve.env as scripts/run-local.sh does), one ingress and one text replica
  fixed (the counts are read after every level; the run fails if they changed), the demo shop
  on (persona, retrieval, hand-off rules, the answer's review) with curated answers and the
  response cache off, so every answer is streamed from the engine.
- The engine (`FastEngine`, served through `build_app`, this module's Serve import path) yields
  one word per `GenerationChunk` as fast as it can, or paced at `--paced-ms` per token per
  stream (a GPU decode step is ~20 ms).
- The floor: plain uvicorn streaming the same chunks as SSE (`plain_app`), no Serve, no shop.
- `--guard-modes replace,off`: paced runs at c=1 and c=8 with the shops' answer guard releasing
  a sentence at a time, and off: the time-to-first-text the guard adds (issue 23). The engine's
  answer is sentences the guard passes (`ANSWER`), so nothing is replaced.
- Per level: delivered tokens/s, TTFT and inter-token time (p50/p99) seen by the client, and the
  CPU of each process role from /proc (loadtests/process_cpu.py), as server CPU-ms per 1,000
  delivered tokens.

Writes results.json, results.md and throughput_cpu.png to docs/benchmarks/<date>-fast-engine-cpu-<n>core[-quick]/.
Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

import yaml
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from configs.schema import PROJECT_ROOT, AppConfig
from model_server.engine_protocol import ChatEngine, EngineRequest, GenerationChunk

MS_PER_TOKEN_ENV = "CS_FAST_ENGINE_MS_PER_TOKEN"
# What the engine says: an answer to QUESTION in sentences the answer guard passes (no number,
# no promise, nothing the facts do not say), as 6-character tokens, so a stream is released a
# sentence at a time as a real one is and the client can count tokens by characters. Exactly
# 256 tokens, the last ones spaces after its last sentence; longer answers repeat it.
ANSWER = " ".join((
    "Thanks for asking about delivery to Xinjiang for your hoodies.",
    "Orders to Xinjiang and Tibet carry a small surcharge below the threshold.",
    "Above the threshold that surcharge does not apply to your order.",
    "Parcels go out from our Hangzhou warehouse by ZTO as standard.",
    "You can upgrade to SF Express at checkout if you prefer a faster courier.",
    "Remote regions usually take a few days longer than other provinces.",
    "Big sales events and bad weather can add some extra days as well.",
    "The order page shows the courier and the tracking details once it ships.",
    "Hoodies are packed flat in a recyclable bag to keep the parcel light.",
    "Please check that your address and phone number are complete.",
    "If the courier cannot reach you, the parcel waits at the local station.",
    "You can change the address in chat before the order ships.",
    "After it ships, the courier can redirect it in most cases.",
    "Two hoodies fit in one parcel, so they travel together.",
    "Size and colour can still be changed before dispatch as well.",
    "Once it arrives, please check the hoodies before you sign.",
    "If anything is damaged, take photos of the parcel and the items.",
    "Our team then arranges the fix as the after-sales policy says.",
    "The size chart on each product page helps you choose the right fit.",
    "Our hoodies are cotton blends, so a wash on cold keeps their shape.",
    "Tumble drying on low heat is fine, but hanging them is gentler.",
    "Let me know the sizes you have in mind and I can help you compare.",
    "You can also ask me about returns, exchanges and invoices for these hoodies whenever you like.",
)).ljust(256 * 6)  # spaces after the last sentence
TOKEN_CHARS = 6


def answer_tokens(start: int, count: int) -> str:
    """Tokens `start` to `start + count` of the engine's answer."""
    first = start * TOKEN_CHARS % len(ANSWER)
    text = (ANSWER * (2 + count * TOKEN_CHARS // len(ANSWER)))
    return text[first:first + count * TOKEN_CHARS]
GPU_CONFIG = PROJECT_ROOT / "configs" / "production-gpu.yaml"
GPU_REQUEST_LIMITS = ("max_ongoing_requests", "max_queued_requests")
QUESTION = "Is shipping free to Xinjiang if I order two hoodies?"  # grounded; the model answers


class FastEngine(ChatEngine):
    """An engine that is never the bottleneck, shaped like vLLM's on a GPU.

    One step loop serves every open request, as a GPU engine decodes its whole batch per step:
    each step gives every open request one more token, then waits `$CS_FAST_ENGINE_MS_PER_TOKEN`
    (read when the replica starts; 0: only yields the event loop). A request's tokens go into
    its own collector, and `chat()` yields whatever collected since it last looked as one chunk,
    as vLLM's AsyncLLM does with DELTA outputs (RequestOutputCollector): a consumer that falls
    behind gets merged chunks and never slows the steps."""

    def __init__(self, model, model_path):
        self.model = model
        self.seconds_per_token = float(os.environ.get(MS_PER_TOKEN_ENV, "0") or 0) / 1000
        self._open: dict[int, _Collector] = {}
        self._steps: asyncio.Task | None = None

    async def start(self) -> None:
        return None

    async def chat(self, request: EngineRequest) -> AsyncIterator[GenerationChunk]:
        prompt_tokens = sum(len(str(m.get("content", ""))) // 4 for m in request.messages)
        collector = _Collector(request.sampling.max_tokens, prompt_tokens)
        self._open[id(collector)] = collector
        if self._steps is None or self._steps.done():
            self._steps = asyncio.get_running_loop().create_task(self._step_loop())
        try:
            while True:
                chunk = await collector.get()
                yield chunk
                if chunk.finish_reason is not None:
                    return
        finally:
            self._open.pop(id(collector), None)

    async def _step_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while self._open:
            for collector in list(self._open.values()):
                collector.step()
            if self.seconds_per_token:
                next_at = max(next_at + self.seconds_per_token, loop.time())
                await asyncio.sleep(next_at - loop.time())
            else:
                await asyncio.sleep(0)

    async def check_health(self) -> None:
        return None

    async def shutdown(self) -> None:
        if self._steps is not None:
            self._steps.cancel()


class _Collector:
    """One request's tokens not yet taken, merged (vLLM's RequestOutputCollector, DELTA)."""

    def __init__(self, max_tokens: int, prompt_tokens: int):
        self.max_tokens, self.prompt_tokens = max_tokens, prompt_tokens
        self.made = 0
        self.waiting = 0
        self.ready = asyncio.Event()

    def step(self) -> None:
        if self.made < self.max_tokens:
            self.made += 1
            self.waiting += 1
            self.ready.set()

    async def get(self) -> GenerationChunk:
        await self.ready.wait()
        self.ready.clear()
        count, self.waiting = self.waiting, 0
        done = self.made >= self.max_tokens
        return GenerationChunk(answer_tokens(self.made - count, count), self.prompt_tokens,
                               self.made, "stop" if done else None)


def build_app(args: dict[str, Any]):
    """Serve's import path for the benchmark's config: the real app with FastEngine."""
    from router.app import build_application

    return build_application(AppConfig.model_validate(args), FastEngine)


def plain_app():
    """The floor: plain uvicorn (`--factory loadtests.fast_engine:plain_app`) streaming the same
    chunks as OpenAI SSE, with no Serve and no shop layer."""
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        body = await request.json()
        count = int(body.get("max_tokens", 256))

        async def events():
            head = {"id": "plain", "object": "chat.completion.chunk", "created": 0,
                    "model": "fast"}
            yield "data: " + json.dumps({**head, "choices": [
                {"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}) + "\n\n"
            for i in range(count):
                await asyncio.sleep(0)
                yield "data: " + json.dumps({**head, "choices": [
                    {"index": 0, "delta": {"content": answer_tokens(i, 1)},
                     "finish_reason": "stop" if i == count - 1 else None}]}) + "\n\n"
            yield "data: " + json.dumps({**head, "choices": [], "usage": {
                "prompt_tokens": 10, "completion_tokens": count,
                "total_tokens": count + 10}}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


def serve_config(port: int, max_delay_ms: float | None = None,
                 guard_mode: str | None = None) -> dict:
    """The benchmark's Serve side: the shipped local app with FastEngine (see the module doc),
    the text model's stream_batching.max_delay_ms and the shops' guard.mode set when given."""
    from loadtests.benchmark import TextModelSettings

    settings = TextModelSettings.load()
    config = copy.deepcopy(settings.serve_config_for_benchmark(port, with_shops=True))
    app = config["applications"][0]
    app["import_path"] = "loadtests.fast_engine:build_app"
    # The engine stands in for a GPU's, so the text replica takes requests as the GPU config's
    # does: the CPU config's 16 open requests (its engine's batch) would queue and refuse
    # streams at c=32 and c=64 and measure the queue, not the path.
    gpu = yaml.safe_load(GPU_CONFIG.read_text())["applications"][0]["deployments"]
    limits = next(d for d in gpu if d["name"] == settings.model.deployment_name)
    for deployment in app["deployments"]:
        if deployment["name"] == settings.model.deployment_name:
            deployment.update({k: limits[k] for k in GPU_REQUEST_LIMITS})
    if guard_mode is not None:
        for shop in app["args"]["shops"]["catalog"]:
            shop["guard"] = {**shop.get("guard", {}), "mode": guard_mode}
    if max_delay_ms is not None:
        model = next(m for m in app["args"]["models"] if m["name"] == settings.model.name)
        model["stream_batching"] = {**model.get("stream_batching", {}),
                                    "max_delay_ms": max_delay_ms}
    return config


def body(max_tokens: int) -> dict:
    return {"messages": [{"role": "user", "content": QUESTION}], "stream": True,
            "stream_options": {"include_usage": True}, "max_tokens": max_tokens,
            "temperature": 0.2}


def summary(level: dict) -> dict:
    """A level's figures as the issue's table reads them."""
    tokens_per_s = level["tokens_per_s"]
    roles = level["cores_by_role"]
    server_cores = sum(share for role, share in roles.items())
    per_k = (lambda cores: round(cores / tokens_per_s * 1e6, 1)) if tokens_per_s else (
        lambda cores: None)
    return {
        "concurrency": level["concurrency"], "tokens_per_s": round(tokens_per_s),
        "server_cpu_ms_per_1k_tokens": per_k(server_cores),
        "by_role_cpu_ms_per_1k_tokens": {role: per_k(share) for role, share in roles.items()
                                         if share >= 0.01},
        "ttft_p50_ms": ms(level["ttft_p50_s"], 1),
        "ttft_p99_ms": ms(level["ttft_p99_s"], 1),
        "itl_p50_ms": ms(level["itl_p50_s"]),
        "itl_p99_ms": ms(level["itl_p99_s"]),
        "per_token_itl_p50_ms": ms(level["itl_per_token_p50_s"]),
        "per_token_itl_p99_ms": ms(level["itl_per_token_p99_s"]),
        "tokens_per_event": level["tokens_per_event"],
        "client_cores": round(level["client_cpu_core_share"], 2),
        "failed": level["failed"],
    }


def plot(results: dict, path: Path) -> None:
    """Delivered tokens/s and server CPU per 1,000 tokens against streams, for the unpaced Serve
    path and the floor; the paced runs as one bar each (CPU per 1,000 tokens)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from loadtests.bench_report import concurrency_axes

    fig, (rate, cost, paced) = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, rows in results["runs"].items():
        if "paced" in name:
            continue
        x = [r["concurrency"] for r in rows]
        rate.plot(x, [r["tokens_per_s"] for r in rows], marker="o", label=name)
        cost.plot(x, [r["server_cpu_ms_per_1k_tokens"] for r in rows], marker="o", label=name)
    bars = [(name.split("max_delay_ms ")[-1] if "max_delay_ms" in name else "config", rows[0])
            for name, rows in results["runs"].items()
            if "paced" in name and "guard.mode" not in name]
    paced.bar([label for label, _ in bars], [r["server_cpu_ms_per_1k_tokens"] for _, r in bars])
    rate.set(xlabel="concurrent streams", ylabel="delivered tokens/s", title="Throughput")
    cost.set(xlabel="concurrent streams", ylabel="CPU-ms per 1,000 tokens",
             title="Server CPU per token")
    paced.set(xlabel="stream_batching.max_delay_ms", ylabel="CPU-ms per 1,000 tokens",
              title="Paced at GPU decode speed")
    concurrency_axes((rate, cost), legend_fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def ms(seconds: float | None, digits: int = 2) -> float | None:
    return None if seconds is None else round(seconds * 1000, digits)


def markdown_table(results: dict) -> str:
    lines = [f"# Request path at GPU token rates ({results['setup']['date']})", "",
             f"Machine: {results['setup']['machine']}. {results['setup']['note']}", ""]
    for name, levels in results["runs"].items():
        lines += [f"## {name}", "",
                  "| c | delivered tok/s | server CPU-ms / 1k tok | TTFT p50 / p99 ms | "
                  "inter-event p50 / p99 ms | per token p50 / p99 ms | tokens per event | "
                  "client cores | by role (CPU-ms / 1k tok) |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in levels:
            roles = ", ".join(f"{r} {v}" for r, v in sorted(
                s["by_role_cpu_ms_per_1k_tokens"].items(), key=lambda kv: -(kv[1] or 0)))
            lines.append(f"| {s['concurrency']} | {s['tokens_per_s']:,} | "
                         f"{s['server_cpu_ms_per_1k_tokens']} | {s['ttft_p50_ms']} / "
                         f"{s.get('ttft_p99_ms')} | "
                         f"{s['itl_p50_ms']} / {s['itl_p99_ms']} | "
                         f"{s['per_token_itl_p50_ms']} / {s['per_token_itl_p99_ms']} | "
                         f"{s['tokens_per_event']} | {s['client_cores']} | {roles} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from loadtests.benchmark import (
        RESULTS_DIR,
        VARIANTS,
        VENV_BIN,
        log,
        machine,
        replica_problems,
        run_level,
        running,
        versions,
    )
    from loadtests.serve_status import ServeStatus
    from loadtests.server_process import free_port

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests per level")
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--paced-ms", type=float, default=20.0,
                        help="ms per token per stream for the paced run (0: no paced run)")
    parser.add_argument("--paced-concurrency", type=int, default=64)
    parser.add_argument("--paced-delays", default="",
                        help="stream_batching.max_delay_ms values to compare in the paced run, "
                        "one stack each (default: the config's)")
    parser.add_argument("--guard-modes", default="",
                        help="the shops' guard.mode values (replace,off) to compare in paced "
                        "runs at --guard-concurrency, one stack each: what releasing a "
                        "sentence at a time adds to time-to-first-text (issue 23)")
    parser.add_argument("--guard-concurrency", default="1,8")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    # Levels long enough for /proc's CPU figures to mean something: an unpaced level of 2*c
    # requests lasted under half a second at c=1 and moved 2x from run to run. Paced levels
    # take max_tokens * paced_ms per round, so they need fewer rounds.
    rounds = 1 if args.quick else 2
    requests_for = lambda c: rounds * max(8 * c, 160)  # noqa: E731 - unpaced, ~5-15 s a level
    paced_requests = lambda c: rounds * 4 * c  # noqa: E731 - ~20 s at 20 ms/token
    today = date.today().isoformat()
    out = args.out or RESULTS_DIR / (f"{today}-fast-engine-cpu-{os.cpu_count()}core"
                                     f"{'-quick' if args.quick else ''}")
    out.mkdir(parents=True, exist_ok=True)
    logs = PROJECT_ROOT / ".run" / "benchmark"
    logs.mkdir(parents=True, exist_ok=True)
    request = body(args.max_tokens)
    results: dict = {"setup": {
        "date": today, "machine": machine(), "versions": versions(),
        "max_tokens": args.max_tokens, "concurrency": levels,
        "note": "FastEngine: one 6-character token per step, an answer in sentences the shop's "
                "answer guard passes; one ingress and one text replica; the demo shop on, "
                "curated answers and the response cache off.",
        "env": VARIANTS["shipped"].env}, "runs": {}, "replicas": {}}

    def serve_runs(paced_ms: float, concurrencies: list[int], name: str,
                   max_delay_ms: float | None = None, guard_mode: str | None = None) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        tag = f"{paced_ms:g}" + ("" if max_delay_ms is None else f"-delay{max_delay_ms:g}") + (
            "" if guard_mode is None else f"-guard-{guard_mode}")
        config_path = logs / f"serve-config-fast-engine-{tag}.yaml"
        config_path.write_text(yaml.safe_dump(serve_config(port, max_delay_ms, guard_mode),
                                              sort_keys=False))
        env = {**VARIANTS["shipped"].env, MS_PER_TOKEN_ENV: str(paced_ms)}
        # Paced streams arrive spread over one answer's time, as shoppers do, not all in the
        # same millisecond: with equal answers they would stay in lockstep and every TTFT
        # would wait behind 63 other requests' starts.
        spread_s = paced_ms / 1000 * args.max_tokens
        with running(f"Ray Serve stack, FastEngine {tag} ms/token",
                     [str(VENV_BIN / "serve"), "run", str(config_path)], env, f"{url}/ready",
                     logs / f"serve-fast-engine-{tag}.log",
                     [str(VENV_BIN / "ray"), "stop", "--force"]):
            asyncio.run(run_level(url, lambda i: (request, {}), 2, 4))  # warm-up
            status, rows, replicas = ServeStatus(), [], {}
            for c in concurrencies:
                log(f"{name}: {c} streams ...")
                count = paced_requests(c) if paced_ms else requests_for(c)
                level = asdict(asyncio.run(run_level(url, lambda i: (request, {}), c, count,
                                                     TOKEN_CHARS, spread_s)))
                rows.append(summary(level))
                replicas[str(c)] = {n: asdict(r) for n, r in status.deployments().items()}
                log(f"  {rows[-1]}")
            results["runs"][name] = rows
            results["replicas"][name] = replicas

    def plain_floor(levels: list[int]) -> None:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with running("plain uvicorn (the floor)",
                     [str(VENV_BIN / "uvicorn"), "--factory", "loadtests.fast_engine:plain_app",
                      "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
                      "--no-access-log"], {}, f"{url}/health",
                     logs / "uvicorn-fast-engine.log"):
            rows = []
            for c in levels:
                level = asdict(asyncio.run(run_level(url, lambda i: (request, {}), c,
                                                     requests_for(c), TOKEN_CHARS)))
                rows.append(summary(level))
                log(f"plain uvicorn {c}: {rows[-1]}")
            results["runs"]["plain uvicorn, same chunks"] = rows

    if levels:
        serve_runs(0.0, levels, "Serve path, engine as fast as it can")
    if args.paced_ms > 0:
        name = f"Serve path, engine paced at {args.paced_ms:g} ms/token"
        delays = [float(d) for d in args.paced_delays.split(",") if d.strip()]
        for delay in delays or [None]:
            serve_runs(args.paced_ms, [args.paced_concurrency],
                       name + ("" if delay is None else f", max_delay_ms {delay:g}"), delay)
        guard_levels = [int(c) for c in args.guard_concurrency.split(",") if c.strip()]
        for mode in [m.strip() for m in args.guard_modes.split(",") if m.strip()]:
            serve_runs(args.paced_ms, guard_levels, f"{name}, guard.mode {mode}",
                       guard_mode=mode)
    if levels:
        plain_floor(levels)

    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    problems = [f"{name} c={c}: {p}" for name, per in results["replicas"].items()
                for c, counts in per.items() for p in replica_problems(counts)]
    table = markdown_table(results)
    (out / "results.md").write_text(table)
    if levels:  # the plot is of the unpaced levels
        plot(results, out / "throughput_cpu.png")
    print(table)
    if problems:
        log("FAILED: not exactly one replica per deployment at every level:\n  "
            + "\n  ".join(problems))
        return 1
    log(f"wrote {out}/results.json, results.md" + (", throughput_cpu.png" if levels else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
