"""Locust load test of a sales event against the chat API: shoppers stream text and photo
questions following the sales-event shape, measure TTFT and ITL themselves, and the run ends with
SLO gates and a reconciliation against the server's Prometheus counters.

    locust -f loadtests/locustfile.py --headless --host http://127.0.0.1:8000 \
        --time-scale 0.0333 --prometheus-url http://127.0.0.1:9090 \
        --csv .run/loadtest --html .run/loadtest.html

Entries in Locust's statistics: `chat text` / `chat vision` (whole streamed request, e2e time),
`TTFT text` / `TTFT vision` (type TTFT) and `ITL text` / `ITL vision` (type ITL, one per gap).
The exit code is non-zero when an SLO of the workload config is broken or reconciliation finds
lost or unaccounted requests; `--summary-json` writes all figures for tooling.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from pathlib import Path

from gevent import GreenletExit
from locust import HttpUser, LoadTestShape, events, task
from locust.exception import StopUser
from locust.env import Environment

from loadtests.prometheus_api import PrometheusAPI
from loadtests.reconcile import ClientTally, reconcile, settled_snapshot
from loadtests.shape import SalesEventSchedule
from loadtests.slo import RunFigures, check_slos
from loadtests.stats import percentile
from loadtests.sse_client import measure_sse
from loadtests.workload import DEFAULT_WORKLOAD, Workload, load_workload

logger = logging.getLogger("loadtests")
SETTLE_TIMEOUT_S = 180


@events.init_command_line_parser.add_listener
def _add_arguments(parser) -> None:
    group = parser.add_argument_group("sales event")
    group.add_argument("--workload", default=str(DEFAULT_WORKLOAD),
                       help="workload config (mix, prompts, images, shape, SLOs)")
    group.add_argument("--time-scale", type=float, default=1.0,
                       help="multiplies every stage duration (1 = about an hour)")
    group.add_argument("--prometheus-url", default="",
                       help="Prometheus scraping the server; enables reconciliation")
    group.add_argument("--settle-s", type=float, default=20.0,
                       help="counters must be still this long before a reconciliation snapshot "
                            "(Ray export interval + scrape interval)")
    group.add_argument("--summary-json", default="", help="write SLO and reconciliation figures")
    group.add_argument("--requests-jsonl", default="",
                       help="append one JSON line per request (time, request id, route, status, "
                            "ok, TTFT, duration, error): what loadtests/soak.py windows")


class RunState:
    """Everything one run measures, shared by the users of this process."""

    def __init__(self, environment: Environment):
        options = environment.parsed_options
        self.config = load_workload(options.workload)
        self.workload = Workload(self.config)
        self.schedule = SalesEventSchedule(self.config.shape, options.time_scale)
        self.prometheus = PrometheusAPI(options.prometheus_url) if options.prometheus_url else None
        self.settle_s = options.settle_s
        self.summary_path = options.summary_json
        self.requests_log = (open(options.requests_jsonl, "a", buffering=1)  # noqa: SIM115
                             if options.requests_jsonl else None)
        self.run_started = False
        self.before = None
        self.reset()

    def reset(self) -> None:
        self.tally = ClientTally()
        self.ttft_s: list[float] = []
        self.e2e_s: list[float] = []
        self.started = time.time()
        self.failed_gates: list[str] = []

    def log_request(self, request_id: str, route: str, status: int, ok: bool,
                    ttft_s: float | None = None, e2e_s: float | None = None,
                    error: str | None = None, content_chars: int = 0) -> None:
        """One line per finished request. `ttft_s` is None for an answer with no text (a model
        may end on its first token): TTFT measures the first text, so there is none to time.
        `request_id` is the x-request-id the shopper sent, which the server's logs carry."""
        if self.requests_log is not None:
            self.requests_log.write(json.dumps({
                "t": round(time.time(), 3), "request_id": request_id, "route": route,
                "status": status, "ok": ok,
                "ttft_s": ttft_s, "e2e_s": e2e_s, "error": error,
                "content_chars": content_chars}) + "\n")


def run_state(environment: Environment) -> RunState | None:
    """This process's RunState, kept on Locust's Environment (no module-level state)."""
    return getattr(environment, "sales_event", None)


@events.init.add_listener
def _on_init(environment: Environment, **_) -> None:
    if environment.parsed_options is None:
        return
    state = environment.sales_event = RunState(environment)
    if not environment.stop_timeout:
        # Stopping users mid-request would leave requests the server counts but the client
        # never finished; let them end their current request.
        environment.stop_timeout = state.config.shape.drain_s
    logger.info("sales event: %.0f s, peak %d users", state.schedule.duration_s,
                state.schedule.peak_users)
    if state.prometheus is not None:
        if not environment.parsed_options.headless:
            logger.warning("reconciliation needs --headless (one run per process); skipped")
            state.prometheus = None
            return
        # Before the runner (and the shape's clock) starts: the window opens here.
        logger.info("reconciliation: waiting for the server's counters to settle")
        state.before = settled_snapshot(state.prometheus, state.settle_s, SETTLE_TIMEOUT_S)


@events.test_start.add_listener
def _on_test_start(environment: Environment, **_) -> None:
    state = run_state(environment)
    # Never block here: with a load shape the runner re-fires test_start on every tick until
    # users are spawning, and the shape's clock runs meanwhile. The baseline is taken at init.
    if not state.run_started:
        state.reset()
        state.run_started = True


class SalesEventShape(LoadTestShape):
    """Locust asks this every second how many shoppers should be active."""

    def tick(self):
        target = run_state(self.runner.environment).schedule.tick(self.get_run_time())
        return None if target is None else (target.users, target.spawn_rate)


class Shopper(HttpUser):
    def wait_time(self) -> float:
        return run_state(self.environment).workload.think_time()

    @task
    def ask(self) -> None:
        state = run_state(self.environment)
        request = state.workload.next_request()
        route = request.route
        # The shopper's own request id: the server keeps it (Serve's proxy only adds one when
        # none is sent) and logs it at the ingress and at the model replica that takes the
        # request, so the request log can be tied to those logs even for a request that got
        # no response headers.
        request_id = f"loadtest-{uuid.uuid4().hex}"
        outcome_recorded = False
        answered = False  # response headers received: the server has the request
        started = time.perf_counter()
        try:
            with self.client.post("/v1/chat/completions", json=request.body, stream=True,
                                  headers={"x-request-id": request_id},
                                  catch_response=True, name=f"chat {route}") as response:
                answered = True
                route = response.headers.get("x-route", route) if response.headers else route
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}")
                    state.tally.record(route, ok=False, completion_tokens=0)
                    state.log_request(request_id, route, response.status_code, False,
                                      e2e_s=time.perf_counter() - started)
                    outcome_recorded = True
                    return
                # Split bytes, not text: str.splitlines() also breaks at U+2028 and friends,
                # which SSE does not treat as line ends.
                lines = (line.decode("utf-8") for line in response.iter_lines())
                result = measure_sse(200, lines, started)
                response.request_meta["response_time"] = (time.perf_counter() - started) * 1000
                if result.ok:
                    response.success()
                else:
                    response.failure(f"in-band error {result.error_code or 'stream ended early'}")
                state.tally.record(route, result.ok, result.completion_tokens)
                state.log_request(request_id, route, 200, result.ok, result.ttft_s,
                                  result.e2e_s,
                                  None if result.ok else result.error_code or "stream ended early",
                                  len(result.content))
                outcome_recorded = True
        except (GreenletExit, StopUser):
            if not outcome_recorded:  # Locust stopped this user mid-request
                state.tally.record_interrupted(route, answered)
            raise
        except BaseException as exc:
            if not outcome_recorded:  # broken mid-request: sent, not answered
                logger.warning("request %s failed on the client side: %r", request_id, exc)
                state.tally.record(route, ok=False, completion_tokens=0)
                state.log_request(request_id, route, 0, False, error=type(exc).__name__)
            raise
        if result.ttft_s is not None:
            state.ttft_s.append(result.ttft_s)
            self._report("TTFT", f"TTFT {route}", result.ttft_s)
        for gap in result.itl_s:
            self._report("ITL", f"ITL {route}", gap)
        if result.e2e_s is not None and result.ok:
            state.e2e_s.append(result.e2e_s)

    def _report(self, kind: str, name: str, seconds: float) -> None:
        self.environment.events.request.fire(
            request_type=kind, name=name, response_time=seconds * 1000, response_length=0,
            exception=None, context={},
        )



@events.test_stop.add_listener
def _on_test_stop(environment: Environment, **_) -> None:
    state = run_state(environment)
    state.run_started = False
    tally = state.tally
    figures = RunFigures(
        requests=sum(tally.sent.values()), failures=tally.server_failures,
        p95_ttft_s=percentile(state.ttft_s, 0.95), p99_e2e_s=percentile(state.e2e_s, 0.99),
    )
    slo_results = check_slos(figures, state.config.slo)
    lines = ["", "== SLO gates =="] + [r.describe() for r in slo_results]
    if tally.interrupted:
        lines.append(f"(not in error_rate: {sum(tally.interrupted.values())} request(s) cut off "
                     "by the load generator stopping users; the server counts them as 499)")
    state.failed_gates = [r.name for r in slo_results if not r.passed]

    reconciliation = []
    if state.prometheus is not None and state.before is not None:
        logger.info("reconciliation: waiting for the server's counters to settle")
        after = settled_snapshot(state.prometheus, state.settle_s, SETTLE_TIMEOUT_S)
        reconciliation = reconcile(tally, state.before, after)
        lines += ["== Reconciliation with the server's Prometheus counters =="]
        lines += [r.describe() for r in reconciliation]
        state.failed_gates += [f"reconcile_{r.route}" for r in reconciliation if not r.ok]
    else:
        lines += ["== Reconciliation skipped (no --prometheus-url) =="]
    lines.append("RESULT: " + ("PASS" if not state.failed_gates
                               else "FAIL (" + ", ".join(state.failed_gates) + ")"))
    print("\n".join(lines), flush=True)

    if state.summary_path:
        summary = {
            "duration_s": time.time() - state.started,
            "requests": figures.requests, "failures": figures.failures,
            "error_rate": figures.error_rate, "p95_ttft_s": figures.p95_ttft_s,
            "p99_e2e_s": figures.p99_e2e_s,
            "p50_ttft_s": percentile(state.ttft_s, 0.5),
            "sent_by_route": dict(tally.sent), "failed_by_route": dict(tally.failed),
            "interrupted_by_route": dict(tally.interrupted),
            "completion_tokens_by_route": dict(tally.completion_tokens),
            "slo": [vars(r) for r in slo_results],
            "reconciliation": [
                {**vars(r), "lost": r.lost, "unaccounted": r.unaccounted, "ok": r.ok}
                for r in reconciliation
            ],
            "failed_gates": state.failed_gates,
        }
        Path(state.summary_path).write_text(json.dumps(summary, indent=2))


@events.quitting.add_listener
def _on_quitting(environment: Environment, **_) -> None:
    state = run_state(environment)
    if state is not None and state.failed_gates:
        environment.process_exit_code = 1
