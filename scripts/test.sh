#!/usr/bin/env bash
# Set up (idempotently) and run the whole test suite: unit, then integration (real Ray Serve +
# vLLM on CPU with the tiny checkpoints). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
# pytest exits 5 when it collected no tests; that is a failure here like any non-zero code.
exec .venv/bin/python -m pytest "$@"
