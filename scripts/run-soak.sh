#!/usr/bin/env bash
# Soak: the sales workload at a steady load against a running stack on this machine
# (scripts/run-local.sh), with each serving process's memory over time and latency per window.
#   scripts/run-soak.sh                       30 minutes, 4 shoppers; report in .run/soak/
#   scripts/run-soak.sh --minutes 120 --users 6
# Options: .venv/bin/python -m loadtests.soak --help
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test >/dev/null  # idempotent: Locust is in the test group
exec .venv/bin/python -m loadtests.soak "$@"
