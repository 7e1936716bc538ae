#!/usr/bin/env bash
# Sets up (idempotently) and runs the benchmark: the Ray Serve stack against bare `vllm serve`,
# Qwen3-0.6B architecture with dummy weights on CPU, same engine arguments. ~15 min on 2 cores.
# Results: .run/benchmark/results.{json,md}, throughput_ttft.png. Extra arguments go to
# loadtests/benchmark.py (--concurrency 1,2,4,8,16,24 --output-tokens 48 ...).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
exec .venv/bin/python -m loadtests.benchmark "$@"
