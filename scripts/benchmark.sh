#!/usr/bin/env bash
# Sets up (idempotently) and runs the benchmark: the Ray Serve stack against bare `vllm serve`,
# Qwen3-0.6B architecture with dummy weights on CPU, same engine arguments, plain and shop
# workloads. Full run ~55 min on 2 cores, --quick ~25 min. Results: docs/benchmarks/<date>-cpu-<n>core
# [-quick]/results.{json,md}, throughput_ttft.png, and docs/benchmarks.md's performance table. Extra
# arguments go to loadtests/benchmark.py (--quick, --variants, --workloads, --concurrency ...).
#   scripts/benchmark.sh --fast-answers [--quick]   curated answers and the response cache instead
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
if [[ "${1:-}" == "--fast-answers" ]]; then
  # Curated answers and the response cache through the full local stack (~10 min, --quick ~4).
  exec .venv/bin/python -m loadtests.fast_answers "${@:2}"
fi
exec .venv/bin/python -m loadtests.benchmark "$@"
