"""A real Prometheus against the running local stack: every dashboard query and every rule is
valid PromQL and returns data; counts agree exactly with what the client sent and received; no
ingress metric carries a label value outside its fixed set.

Prints the figures of the measured run (requests/s, tokens/s, p95 TTFT per model, from Prometheus
and from the client) for the closing notes.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest

from loadtests.prometheus_api import PromQLError, PrometheusAPI
from loadtests.stats import percentile
from loadtests.sse_client import StreamResult, measure_sse
from router.observability.metrics import NO_MODEL, REASONS
from tests.conftest import image_message
from tests.image_server import ImageServer
from tests.integration.conftest import LocalStack
from tests.observability import dashboard_queries, rules, series_names

pytestmark = pytest.mark.integration

TEXT_MODEL = "Qwen/Qwen3-0.6B"
VISION_MODEL = "Qwen/Qwen2.5-VL-3B-Instruct"
SAMPLE = {"temperature": 1.0, "max_tokens": 16, "stream": True,
          "stream_options": {"include_usage": True}}
# The last two are answered by the shop layer without a model (a hand-off, and "I will check"
# for a question the knowledge base knows nothing of): the shop panels need both.
# The first is a written FAQ question (a curated answer); the middle three ask two things at
# once, which no curated answer covers, so the model answers them.
TEXT_QUESTIONS = ["When do you ship orders?", "这件衣服偏大还是偏小？洗了会缩水吗？",
                  "Can I return shoes I wore once? How long does the refund take?",
                  "有没有灰色M码？什么时候能发货？", "转人工", "quantum zeppelin xylophone?"]
TEXT_REQUESTS, VISION_REQUESTS, CONCURRENCY = 48, 12, 4
SETTLE_TIMEOUT_S = 45
SETTLED_AFTER_S = 4  # > 3 metric report intervals (1 s in the test stack)
DATA_TIMEOUT_S = 45


GUARDED_SHOP = "demo-electronics"  # the test stacks' shop whose answer guard flags


def text_body(i: int) -> dict:
    return {"messages": [{"role": "user", "content": TEXT_QUESTIONS[i % len(TEXT_QUESTIONS)]}],
            **SAMPLE}


def vision_body(url: str | None = None) -> dict:
    return {"messages": [image_message("Is this the item in the listing?", url)], **SAMPLE}


def stream(client: httpx.Client, body: dict) -> StreamResult:
    started = time.perf_counter()
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        return measure_sse(response.status_code, response.iter_lines(), started)


def disconnect_mid_stream(client: httpx.Client) -> None:
    body = {**text_body(0), "max_tokens": 200}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        lines = response.iter_lines()
        next(lines)  # the opening event; then hang up



def totals(prom: PrometheusAPI, metric: str, by: str = "model") -> dict[str, float]:
    return {r["metric"].get(by, ""): r["value"]
            for r in prom.query(f"sum by ({by}) ({metric})")}


def settled_request_total(prom: PrometheusAPI, stack: LocalStack) -> float:
    """Prometheus's request count once nothing is in transit: the agent's count has not moved
    for several report intervals and Prometheus has scraped it."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last, stable_since = None, time.monotonic()
    while True:
        agent = stack.metric_sum("ray_cs_requests_total")
        if agent != last:
            last, stable_since = agent, time.monotonic()
        scraped = prom.value("sum(ray_cs_requests_total)")
        if scraped == agent and time.monotonic() - stable_since >= SETTLED_AFTER_S:
            return scraped
        if time.monotonic() > deadline:
            raise AssertionError(f"Prometheus ({scraped}) never caught up with the agent ({agent})")
        time.sleep(0.5)


@dataclass
class MeasuredRun:
    results: dict[str, list[StreamResult]]
    rejected: int
    started: float  # wall clock
    ended: float
    before: dict[str, dict[str, float]] = field(default_factory=dict)
    after: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def window_s(self) -> float:
        return self.ended - self.started


COUNTERS = {"requests": "ray_cs_requests_total", "completion": "ray_cs_completion_tokens_total",
            "prompt": "ray_cs_prompt_tokens_total"}


@pytest.fixture(scope="module")
def measured_run(stack: LocalStack, prometheus: PrometheusAPI) -> MeasuredRun:
    """Text and image traffic with known counts, between two settled Prometheus readings."""
    with stack.client() as client:
        # Every series exists before the baseline (increase() cannot see a series' first sample).
        assert stream(client, text_body(0)).ok and stream(client, vision_body()).ok
        disconnect_mid_stream(client)  # a failure series (499) for the failure panels
        assert client.post("/v1/chat/completions", content=b"{oops",
                           headers={"Content-Type": "application/json"}).status_code == 400
    settled_request_total(prometheus, stack)
    before = {name: totals(prometheus, metric) for name, metric in COUNTERS.items()}

    started = time.time()
    with stack.client() as client, ThreadPoolExecutor(CONCURRENCY) as pool:
        text = pool.map(lambda i: stream(client, text_body(i)), range(TEXT_REQUESTS))
        vision = pool.map(lambda _: stream(client, vision_body()), range(VISION_REQUESTS))
        results = {TEXT_MODEL: list(text), VISION_MODEL: list(vision)}
        rejected = 0
        # Both are routed first (validation follows routing), so both count for the text
        # model; a body that is not JSON is refused before routing and counts for "none".
        for bad in ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
                    {"messages": []}, b"{oops"):
            response = (client.post("/v1/chat/completions", content=bad,
                                    headers={"Content-Type": "application/json"})
                        if isinstance(bad, bytes) else
                        client.post("/v1/chat/completions", json=bad))
            assert response.status_code == 400
            rejected += 1
    ended = time.time()

    sent = sum(len(r) for r in results.values()) + rejected
    expected = sum(before["requests"].values()) + sent
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while (counted := settled_request_total(prometheus, stack)) != expected:
        if time.monotonic() > deadline:
            by_status = prometheus.query("sum by (model, status) (ray_cs_requests_total)")
            raise AssertionError(
                f"Prometheus counted {counted} requests, expected {expected} ({sent} sent after "
                f"a baseline of {before['requests']}); now: "
                + ", ".join(f"{r['metric']} = {r['value']}" for r in by_status))
        time.sleep(0.5)
    after = {name: totals(prometheus, metric) for name, metric in COUNTERS.items()}
    return MeasuredRun(results, rejected, started, ended, before, after)


def test_prometheus_counts_equal_what_the_client_saw(measured_run, prometheus, capsys):
    run = measured_run
    for model, results in run.results.items():
        assert all(r.ok for r in results), [r for r in results if not r.ok]
        delta = {name: run.after[name].get(model, 0) - run.before[name].get(model, 0)
                 for name in COUNTERS}
        # The 400s for max_tokens=0 and empty messages are counted against the text model (they
        # were routed); the malformed body's against "none".
        expected_requests = len(results) + (2 if model == TEXT_MODEL else 0)
        assert delta["requests"] == expected_requests
        assert delta["completion"] == sum(r.completion_tokens for r in results)
        assert delta["prompt"] == sum(r.prompt_tokens for r in results)
    none_delta = run.after["requests"].get(NO_MODEL, 0) - run.before["requests"].get(NO_MODEL, 0)
    assert none_delta == 1

    # Figures for the closing note: Prometheus over the run's window next to the client's view.
    window = max(1, round(time.time() - run.started))
    lines = [f"\n[metrics] measured run: {run.window_s:.1f}s wall clock, Prometheus window {window}s"]
    for model, results in run.results.items():
        counted = {name: run.after[name][model] - run.before[name].get(model, 0)
                   for name in COUNTERS}
        prom_ttft = prometheus.query(
            f'histogram_quantile(0.95, sum by (le) (increase('
            f'ray_cs_time_to_first_token_seconds_bucket{{model="{model}"}}[{window}s])))')
        client_ttft = [r.ttft_s for r in results if r.ttft_s is not None]
        lines.append(
            f"[metrics] {model}: requests prometheus {counted['requests']:.0f} "
            f"({counted['requests'] / run.window_s:.2f}/s) vs client {len(results)} answered"
            f"{' + 2 rejected' if model == TEXT_MODEL else ''}; completion tokens prometheus "
            f"{counted['completion']:.0f} ({counted['completion'] / run.window_s:.1f}/s) vs "
            f"client {sum(r.completion_tokens for r in results)}; p95 TTFT prometheus "
            f"{prom_ttft[0]['value'] if prom_ttft else float('nan'):.3f}s (bucket-interpolated) "
            f"vs client {percentile(client_ttft, 0.95):.3f}s (p50 client "
            f"{percentile(client_ttft, 0.5):.3f}s)"
        )
    with capsys.disabled():
        print("\n".join(lines))


@pytest.fixture(scope="module")
def background_traffic(stack, measured_run, stack_keys):
    """Text and image streams running while the queries are made: vLLM reports its gauges
    (running, waiting, KV-cache usage) only while an engine works."""
    stop = threading.Event()

    def loop(body_for):
        with stack.client() as client:
            i = 0
            while not stop.is_set():
                stream(client, body_for(i))
                i += 1

    with ImageServer() as cdn:
        # Every other image is a URL on the stack's allowed loopback CDN, fetched by the
        # ingress (the remote-image panels read that).
        remote = f"http://127.0.0.1:{cdn.port}/shirt.png"
        def over_budget():
            # A key allowed 50 tokens a minute: its requests past the first are refused, so the
            # rate-limit panels have their series.
            with stack.client() as client:
                while not stop.is_set():
                    client.post("/v1/chat/completions", json=text_body(0),
                                headers=stack_keys["over-budget"].headers)
                    stop.wait(1.0)

        def other_shop():
            # The default shop's answer guard is off on the test stacks; the other shop's flags
            # (tests/integration/conftest.py): its answers give the guard panels their series.
            with stack.client() as client:
                i = 0
                while not stop.is_set():
                    with client.stream("POST", "/v1/chat/completions", json=text_body(i),
                                       headers={"X-Shop-Id": GUARDED_SHOP}) as response:
                        response.read()
                    i += 1

        def shaped():
            # A shop backend asking for JSON: the shaped-answers panel reads its series.
            with stack.client() as client:
                while not stop.is_set():
                    client.post("/v1/chat/completions", json={
                        **text_body(0), "max_tokens": 8,
                        "response_format": {"type": "json_object"}},
                        headers=stack_keys["quiet"].headers)
                    stop.wait(2.0)

        threads = [threading.Thread(target=loop, args=(text_body,), daemon=True),
                   threading.Thread(target=other_shop, daemon=True),
                   threading.Thread(target=shaped, daemon=True),
                   threading.Thread(target=loop, args=(
                       lambda i: vision_body(remote if i % 2 else None),), daemon=True),
                   threading.Thread(target=over_budget, daemon=True)]
        for thread in threads:
            thread.start()
        yield
        stop.set()
        for thread in threads:
            thread.join(timeout=60)


def wait_for_data(prom: PrometheusAPI, expr: str) -> list[dict]:
    deadline = time.monotonic() + DATA_TIMEOUT_S
    while True:
        result = [r for r in prom.query(expr) if not math.isnan(r["value"])]
        if result or time.monotonic() > deadline:
            return result
        time.sleep(1)


def test_every_dashboard_query_is_valid_and_returns_data(prometheus, background_traffic):
    empty = []
    for title, expr in dashboard_queries():
        if not wait_for_data(prometheus, expr):  # PromQLError (invalid query) propagates
            empty.append(f"{title}: {expr}")
    assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)


def test_every_rule_is_valid_and_reads_series_that_exist(prometheus, background_traffic):
    loaded = {rule["name"]: rule for rule in prometheus.rules()}
    shipped = rules()
    assert {r.get("record") or r.get("alert") for r in shipped} == set(loaded)
    problems = []
    for rule in shipped:
        name = rule.get("record") or rule["alert"]
        deadline = time.monotonic() + DATA_TIMEOUT_S
        while loaded[name].get("lastEvaluation", "").startswith("0001") and time.monotonic() < deadline:
            time.sleep(1)
            loaded = {r["name"]: r for r in prometheus.rules()}
        if loaded[name]["health"] != "ok":
            problems.append(f"{name}: health {loaded[name]['health']} {loaded[name].get('lastError')}")
        try:
            prometheus.query(rule["expr"])
        except PromQLError as exc:
            problems.append(f"{name}: {exc}")
        for series in series_names(rule["expr"]):
            if not wait_for_data(prometheus, series):
                problems.append(f"{name}: no data for {series}")
        if "record" in rule and not wait_for_data(prometheus, rule["record"]):
            problems.append(f"{name}: recorded series is empty")
    assert not problems, "\n".join(problems)


def test_ingress_label_values_are_bounded(prometheus, stack, measured_run):
    allowed = {
        "model": {TEXT_MODEL, VISION_MODEL, NO_MODEL},
        "route": {"text", "vision", NO_MODEL},
        "reason": REASONS,
        "stream": {"true", "false"},
    }
    seen = Counter()
    for series in prometheus.query('{__name__=~"ray_cs_.+"}'):
        labels = series["metric"]
        for key, values in allowed.items():
            if key in labels:
                assert labels[key] in values, (labels["__name__"], key, labels[key])
                seen[key] += 1
        if "status" in labels:
            assert re.fullmatch(r"[1-5]\d\d", labels["status"]), labels
    assert seen["model"] and seen["reason"] and seen["stream"]
