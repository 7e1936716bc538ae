"""Single-stream decode on CPU: which engine setting sets the local demo's answer speed (issue 22).

    .venv/bin/python -m loadtests.cpu_decode [--tokens 128] [--variants shipped,float32,...]

Each variant loads Qwen3-0.6B's architecture with dummy weights (`.models/qwen3-0.6b-dummy`, as
the benchmark does) in its own process with vLLM's offline `LLM`, with the text model's engine
arguments and engine environment from configs/local-cpu.yaml, and one setting changed. It then
decodes `--tokens` tokens for one prompt (ignore_eos, the configured sampling) three times and
prints the best tokens/s. The engine is bound to the same cores as the shipped config unless the
variant changes the binding. Figures only: nothing here asserts a speed.

Writes results.json and results.md to docs/benchmarks/<date>-cpu-decode-<n>core/.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

VARIANTS: dict[str, tuple[str, dict, dict]] = {
    # name: (what changes, engine kwargs over the shipped ones, env over the shipped one)
    "shipped": ("configs/local-cpu.yaml as it is", {}, {}),
    "float32": ("dtype float32 (this CPU has AVX2, no AVX-512 BF16)", {"dtype": "float32"}, {}),
    "both-cores": ("OpenMP threads on cores 0-1 instead of core 1",
                   {}, {"VLLM_CPU_OMP_THREADS_BIND": "0-1"}),
    "float32-both-cores": ("float32 and cores 0-1", {"dtype": "float32"},
                           {"VLLM_CPU_OMP_THREADS_BIND": "0-1"}),
    "context-2048": ("max_model_len 2048", {"max_model_len": 2048}, {}),
    "kv-1gib": ("VLLM_CPU_KVCACHE_SPACE 1", {}, {"VLLM_CPU_KVCACHE_SPACE": "1"}),
    "top-p-1": ("top_p 1.0 (no sort of the vocabulary per step)", {"top_p": 1.0}, {}),
}

PROMPT = "Write a short note to a shopper about delivery times for a winter jacket order."


def one_variant(tokens: int, engine_kwargs: dict, top_p: float, temperature: float) -> dict:
    """Runs in the variant's own process: load, warm up, decode, report."""
    from vllm import LLM, SamplingParams

    started = time.perf_counter()
    llm = LLM(**engine_kwargs)
    load_s = time.perf_counter() - started
    params = SamplingParams(max_tokens=tokens, temperature=temperature, top_p=top_p,
                            ignore_eos=True)
    llm.generate([PROMPT], SamplingParams(max_tokens=8, ignore_eos=True), use_tqdm=False)
    rates = []
    for _ in range(3):
        began = time.perf_counter()
        out = llm.generate([PROMPT], params, use_tqdm=False)
        made = len(out[0].outputs[0].token_ids)
        rates.append(made / (time.perf_counter() - began))
    return {"load_s": round(load_s, 1), "tokens_per_s": round(max(rates), 2),
            "all_tokens_per_s": [round(r, 2) for r in rates]}


def shipped_engine() -> tuple[dict, dict, dict]:
    """(engine kwargs, engine env, sampling) of the text model in configs/local-cpu.yaml, read
    as the bare-vLLM benchmark reads it (loadtests/benchmark.py's TextModelSettings)."""
    from loadtests.benchmark import MODEL_DIR, TextModelSettings

    settings = TextModelSettings.load()
    engine = settings.model.engine
    kwargs = {"model": str(MODEL_DIR), "load_format": "dummy",
              "max_model_len": engine.max_model_len, "dtype": engine.dtype,
              "max_num_seqs": engine.max_num_seqs, "enforce_eager": engine.enforce_eager}
    return kwargs, dict(settings.engine_env), settings.sampling()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = parser.parse_args(argv)
    kwargs, env, sampling = shipped_engine()
    if args.one:
        _, over, _ = VARIANTS[args.one]
        # A variant's top_p is sampling, not an engine argument.
        engine_over = {k: v for k, v in over.items() if k != "top_p"}
        result = one_variant(args.tokens, {**kwargs, **engine_over},
                             over.get("top_p", sampling["top_p"]), sampling["temperature"])
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    from configs.schema import PROJECT_ROOT

    out = args.out or PROJECT_ROOT / "docs" / "benchmarks" / (
        f"{date.today().isoformat()}-cpu-decode-{os.cpu_count()}core")
    out.mkdir(parents=True, exist_ok=True)
    results = {"date": date.today().isoformat(), "tokens": args.tokens, "shipped": {
        "engine": kwargs, "env": env, "sampling": sampling}, "variants": {}}
    for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
        what, _, env_over = VARIANTS[name]
        print(f"[cpu-decode] {name}: {what} ...", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "loadtests.cpu_decode", "--one", name,
             "--tokens", str(args.tokens)],
            env={**os.environ, **env, **env_over}, capture_output=True, text=True,
            cwd=PROJECT_ROOT, timeout=900)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(proc.stdout[-2000:], proc.stderr[-4000:], sep="\n")
            results["variants"][name] = {"what": what, "error": f"exit {proc.returncode}"}
            continue
        results["variants"][name] = {"what": what, **json.loads(line[len("RESULT "):])}
        print(f"[cpu-decode]   {results['variants'][name]}", flush=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = [f"# Single-stream decode on CPU ({results['date']})", "",
             f"One stream, {args.tokens} tokens, best of three; engine and environment as "
             f"configs/local-cpu.yaml's text model ({env}) with one change per row.", "",
             "| variant | change | tok/s | load s |", "|---|---|---|---|"]
    for name, r in results["variants"].items():
        lines.append(f"| {name} | {r['what']} | {r.get('tokens_per_s', r.get('error'))} | "
                     f"{r.get('load_s', '')} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
