"""Figures for tools and structured outputs (docs/benchmarks.md "Tools and structured outputs").

    # grammar compilation of the largest schemas the limits allow, with Qwen3's vocabulary
    .venv/bin/python scripts/benchmark_tools.py grammar
    # a tools request against the same request without tools, side by side, on a running stack
    .venv/bin/python scripts/benchmark_tools.py overhead --base-url http://127.0.0.1:8000/v1 \\
        --api-key $KEY --shop demo-electronics [--rounds 8]

`grammar` builds schemas of exactly `limits.max_schema_bytes` and at most `max_schema_depth`
levels in the shapes that cost xgrammar most (many properties, deep nesting, long enums,
patterns, bounded arrays), checks each passes the ingress's bounds, and times xgrammar's
compilation against the full 151,936-token Qwen3 vocabulary (the `qwen3-0.6b-dummy` tokenizer
scripts/prepare_models.py builds), cold (cache off) and again from the compiler's cache, the way
vLLM's engine compiles a request's grammar. `overhead` alternates one request without its tools
shown (`tool_choice: none`), with `auto` and with `required`, and prints their latency and
tokens side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs.schema import PROJECT_ROOT, RequestLimits  # noqa: E402
from router.api.validation import bounded_lengths, check_schema_bounds  # noqa: E402

TOKENIZER = PROJECT_ROOT / ".models" / "qwen3-0.6b-dummy"


def _fill(build, limit: int) -> dict:
    """The largest schema `build(n)` makes within `limit` bytes of compact JSON."""
    low, high = 1, 4096
    while low < high:
        n = (low + high + 1) // 2
        size = len(json.dumps(build(n), separators=(",", ":"), ensure_ascii=False).encode())
        low, high = (n, high) if size <= limit else (low, n - 1)
    return build(low)


def schemas(limits: RequestLimits) -> dict[str, dict]:
    def wide(n):
        return {"type": "object", "properties": {
            f"field_{i}": {"type": "string", "maxLength": 64} for i in range(n)},
            "required": [f"field_{i}" for i in range(0, n, 2)], "additionalProperties": False}

    def deep(n):
        levels = limits.max_schema_depth // 2 - 1
        node: dict = {"type": "string", "enum": [f"value-{i}" for i in range(n)]}
        for level in range(levels):
            node = {"type": "object", "properties": {f"level_{level}": node},
                    "required": [f"level_{level}"]}
        return node

    def enums(n):
        return {"type": "object", "properties": {"sku": {"type": "string", "enum": [
            f"SKU-{i:05d}-灰色-M" for i in range(n)]}}, "required": ["sku"]}

    def patterns(n):
        return {"type": "object", "properties": {
            f"id_{i}": {"type": "string", "pattern": f"^[A-Z]+[0-9]{{{4 + 4 * (i % 2)}}}(-.*)?$"}
            for i in range(n)}, "required": [f"id_{i}" for i in range(n)]}

    def lengths(n):
        bound = limits.max_schema_length_bound
        return {"type": "object", "properties": {
            **{f"text_{i}": {"type": "string", "minLength": 1, "maxLength": bound - i}
               for i in range(limits.max_schema_length_bounds)},
            **{f"note_{i}": {"type": "string", "description": "free text"} for i in range(n)}}}

    def arrays(n):
        return {"type": "object", "properties": {
            f"list_{i}": {"type": "array", "minItems": 1, "maxItems": 20, "items": {
                "type": "object", "properties": {"sku": {"type": "string"},
                                                 "qty": {"type": "integer", "minimum": 1,
                                                         "maximum": 99}}}}
            for i in range(n)}}

    limit = limits.max_schema_bytes
    return {name: _fill(build, limit) for name, build in
            [("wide object", wide), ("deep nesting", deep), ("long enum", enums),
             ("patterns", patterns), ("bounded arrays", arrays), ("longest lengths", lengths)]}


def grammar(args) -> None:
    import xgrammar
    from transformers import AutoTokenizer

    limits = RequestLimits() if args.max_schema_bytes is None else RequestLimits(
        max_schema_bytes=args.max_schema_bytes)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=151936)
    print(f"xgrammar compile, vocabulary {info.vocab_size} tokens, "
          f"bound {limits.max_schema_bytes} bytes / depth {limits.max_schema_depth}")
    print(f"{'schema':16} {'bytes':>6} {'cold ms (median of 3)':>22} {'max ms':>8} "
          f"{'cached ms':>10}")
    worst = 0.0
    for name, schema in schemas(limits).items():
        # The ingress would let it through.
        check_schema_bounds(schema, "bench", limits)
        assert len(bounded_lengths(schema, "bench", limits)) <= limits.max_schema_length_bounds
        text = json.dumps(schema)
        cold = []
        for _ in range(3):
            compiler = xgrammar.GrammarCompiler(info, cache_enabled=False)
            started = time.perf_counter()
            compiler.compile_json_schema(text, any_whitespace=False)
            cold.append((time.perf_counter() - started) * 1000)
        cached_compiler = xgrammar.GrammarCompiler(info, cache_enabled=True)
        cached_compiler.compile_json_schema(text, any_whitespace=False)
        started = time.perf_counter()
        cached_compiler.compile_json_schema(text, any_whitespace=False)
        cached = (time.perf_counter() - started) * 1000
        worst = max(worst, max(cold))
        size = len(json.dumps(schema, separators=(",", ":"), ensure_ascii=False).encode())
        print(f"{name:16} {size:>6} {statistics.median(cold):>22.1f} {max(cold):>8.1f} "
              f"{cached:>10.2f}")
    print(f"worst cold compile: {worst:.1f} ms")


def overhead(args) -> None:
    import httpx

    tools = [{"type": "function", "function": {
        "name": "get_order", "description": "Look up one of the shopper's orders by number.",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                       "required": ["order_id"], "additionalProperties": False}}},
        {"type": "function", "function": {
            "name": "list_orders", "description": "List the shopper's recent orders.",
            "parameters": {"type": "object", "properties": {
                "tracking_number": {"type": "string"}}, "additionalProperties": False}}}]
    message = [{"role": "user", "content": "我的订单2026110712345到哪了？"}]
    # The baseline is the same request with the tools not shown (tool_choice "none"): it takes
    # the same path through the shop (the backend's own tools bypass curated answers, the
    # cache and the order desk), so the difference is the tools themselves.
    forms = {
        "no tools shown": {"tools": tools, "tool_choice": "none"},
        "tools, auto": {"tools": tools, "tool_choice": "auto"},
        "tools, required": {"tools": tools, "tool_choice": "required"},
    }
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    if args.shop:
        headers["X-Shop-Id"] = args.shop
    results: dict[str, list[tuple[float, int, int]]] = {name: [] for name in forms}
    with httpx.Client(base_url=args.base_url, headers=headers, timeout=300) as client:
        for _ in range(args.rounds):
            for name, extra in forms.items():  # alternated: the machine's noise hits all alike
                body = {"messages": message, "max_tokens": args.max_tokens,
                        "temperature": 0.0, **extra}
                started = time.perf_counter()
                response = client.post("/chat/completions", json=body)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                usage = response.json()["usage"]
                results[name].append((elapsed, usage["prompt_tokens"],
                                      usage["completion_tokens"]))
    print(f"{args.rounds} rounds, max_tokens {args.max_tokens}, endpoint {args.base_url}")
    base = statistics.median(r[0] for r in results["no tools shown"])
    print(f"{'form':16} {'median s':>9} {'vs none':>9} {'prompt tok':>11} {'completion tok':>15}"
          f" {'ms/completion tok':>18}")
    for name, rows in results.items():
        seconds = statistics.median(r[0] for r in rows)
        prompt = statistics.median(r[1] for r in rows)
        completion = statistics.median(r[2] for r in rows)
        print(f"{name:16} {seconds:>9.2f} {seconds / base:>8.2f}x {prompt:>11.0f} "
              f"{completion:>15.0f} {seconds * 1000 / max(completion, 1):>18.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grammar", help="xgrammar compile time of the largest allowed schemas")
    g.add_argument("--tokenizer", type=Path, default=TOKENIZER)
    g.add_argument("--max-schema-bytes", type=int, default=None,
                   help="another bound than the default limits' (to choose one)")
    o = sub.add_parser("overhead", help="a tools request against the same without tools")
    o.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    o.add_argument("--api-key", default=None)
    o.add_argument("--shop", default=None)
    o.add_argument("--rounds", type=int, default=8)
    o.add_argument("--max-tokens", type=int, default=48)
    args = parser.parse_args(argv)
    (grammar if args.command == "grammar" else overhead)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
