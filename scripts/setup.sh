#!/usr/bin/env bash
# Idempotent set-up: pinned uv in .tools/, the locked CPU environment in .venv/, and the offline
# model checkpoints in .models/. Safe to run again; does only what is missing.
#   scripts/setup.sh            runtime set (CPU vLLM + model preparation)
#   scripts/setup.sh --test     the same plus the test tools (pytest, locust, openai SDK) and
#                               Debian's Prometheus and Redis servers (the tests run real ones)
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "setup: Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=..." >&2
  exit 1
fi

if [[ ! -x .tools/bin/uv ]] || [[ "$(.tools/bin/uv --version)" != "uv $UV_VERSION"* ]]; then
  echo "setup: installing uv $UV_VERSION into .tools/"
  "$PYTHON" -m venv .tools
  .tools/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi

groups=(--group local-models)
if [[ "${1:-}" == "--test" ]]; then
  groups+=(--group test)
  scripts/install-debian-tools.sh
fi
echo "setup: syncing the locked CPU environment into .venv/ (first run downloads ~5 GB)"
# --inexact: the runtime set-up (run-local.sh) must not remove the test tools a developer
# installed, or the other way round; CI starts from a fresh clone either way.
.tools/bin/uv sync --locked --inexact --python "$PYTHON" --extra cpu "${groups[@]}"

echo "setup: preparing offline model checkpoints in .models/"
.venv/bin/python scripts/prepare_models.py

echo "setup: embedding the demo shops' knowledge bases (retrieval by meaning; first run ~35 s)"
.venv/bin/python -m shop.knowledge.warm_store
