#!/usr/bin/env bash
# Runs Prometheus against the local stack (start scripts/run-local.sh first, in another shell).
# Scrapes Ray's metrics agents through Ray's service-discovery file and loads the SLO rules.
#   scripts/run-prometheus.sh        UI and API on http://127.0.0.1:9090 (PROM_PORT to change)
# Data goes to .run/prometheus/ and survives restarts; delete it to start empty. Ctrl-C stops.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-debian-tools.sh prometheus
PROM_PORT=${PROM_PORT:-9090}
mkdir -p .run/prometheus
echo "run-prometheus: http://127.0.0.1:$PROM_PORT (targets: /targets, alerts: /alerts)"
exec prometheus --config.file=configs/prometheus/local.yml \
  --storage.tsdb.path=.run/prometheus --web.listen-address="127.0.0.1:$PROM_PORT" \
  --log.level=warn
