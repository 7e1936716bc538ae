#!/usr/bin/env bash
# Runs the sales-event Locust load test against a running stack (scripts/run-local.sh) and, when
# Prometheus is up (scripts/run-prometheus.sh), reconciles with the server's counters.
#   scripts/run-loadtest.sh                 the 2-minute version of the shape (TIME_SCALE=0.0333)
#   TIME_SCALE=1 HOST=http://... scripts/run-loadtest.sh     the hour-long version
# Reports: .run/loadtest/ (CSV, HTML, summary.json). Exit code 1 = an SLO or reconciliation failed.
# The default workload has GPU SLOs: with the SmolLM2 CPU substitute of run-local.sh, TTFT may
# breach them at the 10-user peak, which is what the gate is for.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test >/dev/null  # idempotent: Locust is in the test group
HOST=${HOST:-http://127.0.0.1:8000}
PROMETHEUS_URL=${PROMETHEUS_URL:-http://127.0.0.1:9090}
TIME_SCALE=${TIME_SCALE:-0.0333}
WORKLOAD=${WORKLOAD:-loadtests/sales_event.yaml}
mkdir -p .run/loadtest
if [[ "${WARM_UP:-1}" == 1 ]]; then
  # The vision model scales to zero when idle. Wake it first so the measured run starts warm, as
  # the sales calendar makes it before an event in production (WARM_UP=0 measures a cold start).
  echo "run-loadtest: waking the vision model (a cold start takes about a minute on 2 cores)" >&2
  image=$(base64 -w0 docs/examples/parcel.jpg)
  curl -sf -o /dev/null --max-time 150 "$HOST/v1/chat/completions" \
    -H 'Content-Type: application/json' -d "{\"max_tokens\": 1, \"messages\": [{\"role\": \"user\",
      \"content\": [{\"type\": \"text\", \"text\": \"Is this my parcel?\"}, {\"type\": \"image_url\",
      \"image_url\": {\"url\": \"data:image/jpeg;base64,$image\"}}]}]}" \
    || echo "run-loadtest: the warm-up request failed; the run starts anyway" >&2
fi
reconcile=()
if curl -sf "$PROMETHEUS_URL/-/ready" >/dev/null 2>&1; then
  # Ray exports every 10 s and local.yml scrapes every 5 s: counters settle within ~20 s.
  reconcile=(--prometheus-url "$PROMETHEUS_URL" --settle-s 20)
else
  echo "run-loadtest: no Prometheus at $PROMETHEUS_URL; reconciliation skipped" >&2
fi
exec .venv/bin/locust -f loadtests/locustfile.py --headless --host "$HOST" \
  --workload "$WORKLOAD" --time-scale "$TIME_SCALE" "${reconcile[@]}" \
  --csv .run/loadtest/run --html .run/loadtest/report.html \
  --summary-json .run/loadtest/summary.json --only-summary
