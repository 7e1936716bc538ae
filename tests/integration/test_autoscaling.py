"""Autoscaling and admission control on a real local stack (Serve + vLLM CPU engines), observed
through Serve's status API (`loadtests.serve_status`), in the order a sales day brings them:

1. off-peak the vision model runs no replica; the first image wakes it and is held until the
   replica serves (within `replica_wait`), never refused or timed out;
2. a burst of images on a tiny vision queue (2 running + 2 queued) gets fast 429s with Retry-After
   while admitted images complete and text keeps being answered;
3. a Locust sales-event run drives the text model past its target: Serve adds a replica, and
   after the run removes it; the idle vision model goes back to zero;
4. a sales-calendar event (written into this stack's config to open a few minutes after start)
   raises the ingress's replica floor for its window and releases it afterwards.

Each test prints the measured times; the stack variant differs from the shipped local config only
where the names below say so.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml

from loadtests.benchmark import model_path_only
from loadtests.serve_status import ReplicaTimeline, ServeStatus
from loadtests.sse_client import measure_sse
from loadtests.workload import DEFAULT_WORKLOAD
from tests.conftest import PROJECT_ROOT, image_message
from tests.integration.conftest import model_questions

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]

CHAT = "/v1/chat/completions"
VISION_MAX_ONGOING = 2
VISION_MAX_QUEUED = 2
VISION_IDLE_TO_ZERO_S = 20
VISION_HOLD_S = 150  # replica_wait.timeout_s of the vision model in this variant
BURST_IMAGES = 24
# Text TTFT p50 during a vision burst over before it: shared cores only (see the test).
TEXT_TTFT_RATIO_DURING_VISION_BURST = 20
# The calendar event's window opens this long after the config is written and stays open
# WINDOW_S. It must open after the cold-start test: a second ingress replica starting beside the
# vision engine's cold start slowed it past the 100 s replica wait in a CI-like run (the stack took
# 177 s to start, so a window at 240 s pre-warmed 63 s into the cold start; the vision hold was
# 100 s then, 150 s now). 330 s leaves room for a 200 s stack start and tests 1-2 (86 + 17 s in
# CI): the window falls in the text spike (test 3, about 210 s), which scales only text, and
# closes before it ends, so test 4 waits for little more than the release.
PREWARM_OPENS_AFTER_S = 330
PREWARM_WINDOW_S = 90
PREWARM_LEAD_MIN = 1
INGRESS_DOWNSCALE_DELAY_S = 5
LOCUST_STAGES = [  # text-only sales spike: 1 shopper, 10 within 5 s, held, then back to 1
    {"name": "baseline", "duration_s": 20, "users": 1},
    {"name": "spike", "duration_s": 5, "users": 10},
    {"name": "peak", "duration_s": 100, "users": 10},
    {"name": "decay", "duration_s": 5, "users": 1},
    {"name": "after", "duration_s": 10, "users": 1},
]


@dataclass
class ScalingStack:
    stack: object
    timeline: ReplicaTimeline
    prewarm_window_s: tuple[float, float]  # timeline seconds


def variant(prewarm_opens: datetime):
    """Small vision bounds and a quick return to zero; an autoscaling ingress with one calendar
    event; everything else as shipped (text: 1-2 replicas, target 4, downscale delay 60 s)."""
    start = prewarm_opens + timedelta(minutes=PREWARM_LEAD_MIN)
    event = {
        "name": "test-flash-sale",
        "start": start.isoformat(),
        "end": (prewarm_opens + timedelta(seconds=PREWARM_WINDOW_S)).isoformat(),
        "lead_time_min": PREWARM_LEAD_MIN,
        "min_replicas": {"Ingress": 2},
    }

    def customize(raw: dict) -> None:
        args = raw["applications"][0]["args"]
        # The vision engine's cold start on 2 busy cores is 90-99 s (measured here), close to
        # the shipped 100 s hold: the test gives it room (150 s within a 180 s request limit)
        # so that it checks waking from zero, not the machine's speed that minute.
        args["limits"]["request_timeout_s"] = 180
        # The spike must load the text engine (on a fast machine the trickle that reached it
        # with curated answers and the cache on never made Serve scale).
        model_path_only(args)
        for model in args["models"]:
            if model["modality"] == "vision":
                model["replica_wait"]["timeout_s"] = VISION_HOLD_S
        deployments = {d["name"]: d for d in raw["applications"][0]["deployments"]}
        vision = deployments["VisionModel"]
        vision.update(max_ongoing_requests=VISION_MAX_ONGOING,
                      max_queued_requests=VISION_MAX_QUEUED)
        vision["autoscaling_config"].update(downscale_delay_s=VISION_IDLE_TO_ZERO_S,
                                            downscale_to_zero_delay_s=VISION_IDLE_TO_ZERO_S)
        ingress = deployments["Ingress"]
        del ingress["num_replicas"]
        ingress["autoscaling_config"] = {
            "min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 1000,
            "upscale_delay_s": 0, "downscale_delay_s": INGRESS_DOWNSCALE_DELAY_S,
            "look_back_period_s": 15,
            "policy": {
                "policy_function": "model_server.autoscaling_policy:SalesCalendarPolicy",
                "policy_kwargs": {"events": [event]},
            },
        }

    return customize


@pytest.fixture(scope="module")
def scaling(stacks, request) -> ScalingStack:
    opens = datetime.now(timezone.utc) + timedelta(seconds=PREWARM_OPENS_AFTER_S)
    stack = stacks.get("autoscaling", variant(opens))
    with ReplicaTimeline(ServeStatus()) as timeline:
        offset = opens.timestamp() - time.time() + timeline.now_s()
        try:
            yield ScalingStack(stack, timeline, (offset, offset + PREWARM_WINDOW_S))
        finally:
            report(request, f"replica timeline (s since the stack was ready; "
                   f"{timeline.errors} status polls failed):\n" + timeline.describe())


def report(request, text: str) -> None:
    """Print past pytest's capture, so CI logs carry the figures (like [loadtest] and [metrics])."""
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n[autoscaling] " + text.replace("\n", "\n[autoscaling] "), flush=True)


def stream_chat(client: httpx.Client, body: dict):
    """(status, headers, StreamResult or error JSON) of one streamed request."""
    started = time.perf_counter()
    with client.stream("POST", CHAT, json={**body, "stream": True}) as response:
        if response.status_code != 200:
            response.read()
            return response.status_code, response.headers, response.json(), \
                time.perf_counter() - started
        result = measure_sse(response.status_code, response.iter_lines(), started)
        return 200, response.headers, result, time.perf_counter() - started


def test_first_image_wakes_the_vision_model_from_zero(scaling, request):
    stack, timeline = scaling.stack, scaling.timeline
    at_zero = timeline.wait_for("VisionModel", lambda r: r.target == 0 and r.running == 0, 30)
    assert at_zero is not None, timeline.describe()
    sent_at = timeline.now_s()
    with stack.client(timeout=VISION_HOLD_S + 30) as client:
        status, headers, result, held_s = stream_chat(
            client, {"messages": [image_message()], "max_tokens": 8})
    assert status == 200, result
    assert headers["x-route"] == "vision" and result.ok and result.content
    target_at = timeline.first("VisionModel", sent_at, lambda r: r.target >= 1)
    # The answer can beat the next status poll by a second.
    running_at = timeline.wait_for("VisionModel", lambda r: r.running >= 1, timeout_s=10,
                                   after_s=sent_at)
    assert target_at is not None and running_at is not None, timeline.describe()
    report(request,
           f"cold start: image held {held_s:.1f} s (replica wait bound {VISION_HOLD_S} s); "
           "Serve raised the "
           f"vision target {target_at - sent_at:.1f} s after the request, replica running after "
           f"{running_at - sent_at:.1f} s; TTFT {result.ttft_s:.1f} s")


def test_vision_burst_gets_fast_429s_while_text_is_unaffected(scaling, request):
    stack = scaling.stack
    # Random-weight models: sample (temperature 1) so they emit tokens instead of an instant EOS
    # (the shop's service default, 0.2, makes that likely and leaves no first token to time).
    # Not an order question (the order desk would answer it without the engine).
    text_body = {"messages": [{"role": "user", "content": "Is the size true to fit? I am 170 cm."}],
                 "max_tokens": 16, "temperature": 1.0, "stream_options": {"include_usage": True}}

    def text_ttfts(client, n):
        results = [stream_chat(client, text_body) for _ in range(n)]
        # Generated by the text engine (tokens counted), not a fixed or curated reply.
        assert all(status == 200 and result.ok and result.ttft_s is not None and
                   result.completion_tokens > 0 for status, _, result, _ in results), results
        return [result.ttft_s for _, _, result, _ in results]

    rejected_before = stack.metric_sum("ray_cs_requests_rejected_total", route="vision",
                                       reason="queue_full")
    with stack.client(timeout=120) as client:
        baseline = text_ttfts(client, 5)

        ready = threading.Barrier(BURST_IMAGES)

        def image(i: int):
            body = {"messages": [image_message(f"photo {i}")], "max_tokens": 512,
                    "stream_options": {"include_usage": True}}
            with stack.client(timeout=120) as own:
                ready.wait()  # all at once: none is answered before the last one arrives
                return stream_chat(own, body)

        with ThreadPoolExecutor(BURST_IMAGES) as pool:
            burst = [pool.submit(image, i) for i in range(BURST_IMAGES)]
            during = text_ttfts(client, 5)  # while the burst is in flight
            outcomes = [f.result() for f in burst]

    refused = [(headers, body, took) for status, headers, body, took in outcomes
               if status == 429]
    admitted = [(result, took) for status, _, result, took in outcomes if status == 200]
    assert len(refused) + len(admitted) == BURST_IMAGES, [o[0] for o in outcomes]
    # Serve holds max_ongoing (one replica) + max_queued (one ingress) at a time. The bound is
    # approximate under a race: arrivals spread over the ingress's image decoding, an answer may
    # end early (EOS) and free a slot, and Serve's view of a replica's load lags. Seen: 4 or 5.
    capacity = VISION_MAX_ONGOING + VISION_MAX_QUEUED
    assert 1 <= len(admitted) <= 2 * capacity
    assert len(refused) >= BURST_IMAGES - 2 * capacity
    for headers, body, _ in refused:
        assert headers["retry-after"] == "5"  # backpressure_config.retry_after_s of VisionModel
        assert body["error"]["code"] == "queue_full"
        assert set(body["error"]) == {"message", "type", "param", "code"}
    assert all(result.ok and result.completion_tokens > 0 for result, _ in admitted), [
        (r.status, r.error_code, r.done, r.completion_tokens, r.content[:80]) for r, _ in admitted]
    refused_s = sorted(took for _, _, took in refused)
    slowest_admitted = max(took for _, took in admitted)
    # Refusals come back while admitted images are still being generated: they never queue.
    assert statistics.median(refused_s) < slowest_admitted
    # Text has its own pool and queue: while vision is saturated, its TTFT may grow from the
    # shared cores (seen: 32-78 ms before, 111-365 ms during), but a text request queued behind
    # the vision burst would wait for a 512-token generation (tens of seconds), > 100x.
    ttft_ratio = statistics.median(during) / statistics.median(baseline)
    assert ttft_ratio < TEXT_TTFT_RATIO_DURING_VISION_BURST, (baseline, during)
    counted = stack.wait_for_metric(
        "ray_cs_requests_rejected_total", rejected_before + len(refused), route="vision",
        reason="queue_full")
    assert counted == rejected_before + len(refused)
    report(request,
           f"burst of {BURST_IMAGES} images: {len(admitted)} admitted (all answered, slowest "
           f"{slowest_admitted:.2f} s), {len(refused)} refused with 429 + Retry-After 5 "
           f"(median {statistics.median(refused_s) * 1000:.0f} ms, max "
           f"{refused_s[-1] * 1000:.0f} ms); text TTFT p50 before "
           f"{statistics.median(baseline) * 1000:.0f} ms, during "
           f"{statistics.median(during) * 1000:.0f} ms (x{ttft_ratio:.1f}), 10/10 answered")


def run_text_spike(stack, workdir: Path):
    config = yaml.safe_load(DEFAULT_WORKLOAD.read_text())
    config["mix"] = {"text_single": 3, "text_multi_turn": 1, "vision": 0}
    model_questions(config)
    config["output_tokens"] = {"min": 128, "max": 256}
    config["think_time_s"] = {"min": 0.1, "max": 0.3}
    config["shape"] = {"baseline_users": 1, "stages": LOCUST_STAGES, "drain_s": 60}
    # The run must see no failed request while replicas are added and removed; latency is
    # reported, not gated (a new engine starting on 2 cores slows the running one).
    config["slo"] = {"max_error_rate": 0.0, "p95_ttft_s": 120, "p99_e2e_s": 120}
    workload = workdir / "text-spike.yaml"
    workload.write_text(yaml.safe_dump(config, allow_unicode=True))
    command = [
        str(Path(sys.executable).parent / "locust"), "-f",
        str(PROJECT_ROOT / "loadtests" / "locustfile.py"), "--headless", "--host", stack.url,
        "--workload", str(workload), "--time-scale", "1", "--only-summary",
        "--summary-json", str(workdir / "summary.json"),
    ]
    result = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=600)
    (workdir / "locust.log").write_text(result.stdout + result.stderr)
    return result, json.loads((workdir / "summary.json").read_text())


def test_locust_spike_scales_text_up_and_back_down(scaling, tmp_path, request):
    stack, timeline = scaling.stack, scaling.timeline
    assert timeline.latest("TextModel").target == 1, timeline.describe()
    load_start = timeline.now_s()
    spike_at = load_start + LOCUST_STAGES[0]["duration_s"]
    result, summary = run_text_spike(stack, tmp_path)
    load_end = timeline.now_s()
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert summary["failures"] == 0 and summary["requests"] > 20

    target_up = timeline.first("TextModel", load_start, lambda r: r.target >= 2)
    assert target_up is not None and target_up < load_end, timeline.describe()
    # Once decided, the replica starts even if the load has ended (the downscale delay holds it).
    running_up = timeline.wait_for("TextModel", lambda r: r.running >= 2, timeout_s=300,
                                   after_s=target_up)
    assert running_up is not None, timeline.describe()
    # Serve's downscale delay (60 s) + look-back window (15 s) + a replica's graceful stop.
    back_to_one = timeline.wait_for("TextModel", lambda r: r.target == 1 and r.running == 1,
                                    timeout_s=240, after_s=max(running_up, load_end))
    assert back_to_one is not None, timeline.describe()
    vision_zero = timeline.first("VisionModel", load_start, lambda r: r.running == 0)
    assert vision_zero is not None, timeline.describe()
    ttft = round(summary["p95_ttft_s"], 2)
    cut_off = sum(summary["interrupted_by_route"].values())
    report(request, f"text spike (Locust, 1 -> 10 shoppers at +{spike_at - load_start:.0f} s, "
           f"{summary['requests']} requests, 0 failed, {cut_off} cut off by Locust stopping "
           f"users, p95 TTFT {ttft} s): target 1 -> 2 "
           f"{target_up - spike_at:.1f} s after the spike began; second replica running "
           f"{running_up - spike_at:.1f} s after it (start-up {running_up - target_up:.1f} s); "
           f"load ended at +{load_end - load_start:.0f} s; back to 1 replica "
           f"{back_to_one - load_end:.1f} s after the load ended; idle vision model at zero "
           f"replicas {vision_zero - load_start:.0f} s into the run")


def test_sales_calendar_prewarms_the_ingress_for_its_window(scaling, request):
    timeline = scaling.timeline
    opens, closes = scaling.prewarm_window_s
    # The window may not have opened yet (a fast machine is through tests 1-3 first): the
    # floor must be raised before its release is waited for, or the floor of 1 in force now
    # would read as already released.
    raised = timeline.wait_for("Ingress", lambda r: r.target == 2,
                               timeout_s=max(opens - timeline.now_s(), 0) + 60, after_s=opens - 5)
    assert raised is not None, timeline.describe()
    wait = closes + INGRESS_DOWNSCALE_DELAY_S + 60 - timeline.now_s()
    released = timeline.wait_for("Ingress", lambda r: r.target == 1 and r.running == 1,
                                 timeout_s=max(wait, 1), after_s=closes)
    running = timeline.first("Ingress", opens - 5, lambda r: r.running == 2)
    assert raised is not None and running is not None, timeline.describe()
    assert opens - 5 <= raised < closes and released is not None, timeline.describe()
    before = [c for c in timeline.changes if c.deployment == "Ingress" and c.at_s < opens - 5]
    assert all(c.replicas.target == 1 for c in before), timeline.describe()
    report(request,
           f"sales calendar: ingress floor 2 from {raised - opens:+.1f} s of the window opening "
           f"(second replica running {running - opens:+.1f} s), released "
           f"{released - closes:+.1f} s after the window closed")
