#!/usr/bin/env bash
# Sets up (idempotently) and runs the benchmark: the Ray Serve stack against bare `vllm serve`,
# Qwen3-0.6B architecture with dummy weights on CPU, same engine arguments, plain and shop
# workloads. Full run ~55 min on 2 cores, --quick ~25 min. Results: docs/benchmarks/<date>-cpu-<n>core
# [-quick]/results.{json,md}, throughput_ttft.png, and docs/benchmarks.md's performance table. Extra
# arguments go to loadtests/benchmark.py (--quick, --variants, --workloads, --concurrency ...).
#   scripts/benchmark.sh --fast-answers [--quick]   curated answers and the response cache instead
#   scripts/benchmark.sh --fast-engine [--quick]    the request path at GPU token rates (an engine
#                                                   that is never the bottleneck; issue 22);
#                                                   --guard-modes replace,off: what the answer
#                                                   guard adds to time-to-first-text (issue 23)
#   scripts/benchmark.sh --cpu-decode               one stream's decode speed per engine setting
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if [[ "${1:-}" == "--fast-answers" ]]; then
  # Curated answers and the response cache through the full local stack (~10 min, --quick ~4).
  exec .venv/bin/python -m loadtests.fast_answers "${@:2}"
fi
if [[ "${1:-}" == "--fast-engine" ]]; then
  # The real app with loadtests/fast_engine.py's engine, against plain uvicorn (~10 min,
  # --quick ~6).
  exec .venv/bin/python -m loadtests.fast_engine "${@:2}"
fi
if [[ "${1:-}" == "--cpu-decode" ]]; then
  # vLLM's offline engine, one variant of the text engine per process (~1 min each).
  exec .venv/bin/python -m loadtests.cpu_decode "${@:2}"
fi
exec .venv/bin/python -m loadtests.benchmark "$@"
