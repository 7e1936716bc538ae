"""The load test's pure parts: workload config and requests, the sales-event schedule, SLO gates,
reconciliation arithmetic and client-side SSE measurement."""

from __future__ import annotations

import base64
import io
import random
from collections import Counter

import pytest
from PIL import Image
from pydantic import ValidationError

from loadtests.reconcile import ClientTally, ServerSnapshot, reconcile
from loadtests.shape import SalesEventSchedule
from loadtests.slo import RunFigures, check_slos
from loadtests.sse_client import measure_sse
from loadtests.workload import (
    DEFAULT_WORKLOAD,
    SLO,
    Workload,
    WorkloadConfig,
    image_data_url,
    load_workload,
)
from router.api.protocol import ChatCompletionRequest


@pytest.fixture(scope="module")
def config() -> WorkloadConfig:
    return load_workload(DEFAULT_WORKLOAD)


# --- workload --------------------------------------------------------------------------------------

def test_requests_follow_the_configured_mix(config):
    workload = Workload(config, random.Random(1))
    kinds = Counter(workload.next_request().kind for _ in range(3000))
    total = config.mix.text_single + config.mix.text_multi_turn + config.mix.vision
    for kind, weight in config.mix.model_dump().items():
        assert abs(kinds[kind] / 3000 - weight / total) < 0.03, (kind, kinds)


def test_every_request_is_a_valid_streaming_chat_request(config):
    workload = Workload(config, random.Random(2))
    for _ in range(200):
        request = workload.next_request()
        parsed = ChatCompletionRequest.model_validate(request.body)  # the server's own schema
        assert parsed.stream and parsed.stream_options.include_usage
        assert config.output_tokens.min <= parsed.max_tokens <= config.output_tokens.max
        assert parsed.has_images() == (request.route == "vision")
        assert parsed.messages[-1].role == "user"


def test_both_languages_and_multi_turn_history_are_sent(config):
    workload = Workload(config, random.Random(3))
    texts = [workload.body_for("text_single")["messages"][0]["content"] for _ in range(200)]
    assert any(t.isascii() for t in texts) and any(not t.isascii() for t in texts)
    history = workload.body_for("text_multi_turn")["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user"]


@pytest.mark.parametrize("kind", ["product", "parcel"])
def test_generated_images_are_real_jpegs_of_the_requested_size(kind):
    url = image_data_url(kind, (480, 640))
    raw = base64.b64decode(url.split(",", 1)[1])
    image = Image.open(io.BytesIO(raw))
    assert image.format == "JPEG" and image.size == (480, 640)
    assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or ()) > 3  # not a flat fill


def test_config_errors_are_reported(config):
    raw = config.model_dump()
    raw["mix"] = {"text_single": 0, "text_multi_turn": 0, "vision": 0}
    with pytest.raises(ValidationError, match="positive weight"):
        WorkloadConfig.model_validate(raw)
    raw = config.model_dump()
    raw["output_tokens"] = {"min": 50, "max": 10}
    with pytest.raises(ValidationError, match="above max"):
        WorkloadConfig.model_validate(raw)
    raw = config.model_dump()
    raw["surprise"] = 1
    with pytest.raises(ValidationError, match="surprise"):
        WorkloadConfig.model_validate(raw)


# --- schedule --------------------------------------------------------------------------------------

def test_sales_event_shape_at_full_scale(config):
    schedule = SalesEventSchedule(config.shape, time_scale=1.0)
    base = config.shape.baseline_users
    assert schedule.duration_s == 3600
    assert schedule.tick(0).users == base and schedule.tick(0).stage == "baseline"
    spike = schedule.tick(600)
    assert spike.stage == "spike" and spike.users == 10 * base
    # 10x within the spike stage's 60 s: the spawn rate gets there before the stage ends.
    assert (spike.users - base) / spike.spawn_rate <= 60
    assert schedule.tick(1000).stage == "peak" and schedule.tick(1000).users == 10 * base
    assert schedule.tick(3000).stage == "decay" and schedule.tick(3000).users == base
    assert schedule.tick(3600) is None


def test_one_factor_scales_the_whole_shape(config):
    full = SalesEventSchedule(config.shape, 1.0)
    ci = SalesEventSchedule(config.shape, 2 / 60)
    assert ci.duration_s == pytest.approx(120)
    for fraction in (0.05, 0.17, 0.2, 0.5, 0.8, 0.95):
        assert ci.tick(fraction * ci.duration_s).users == full.tick(fraction * 3600).users
    assert ci.peak_users == full.peak_users
    with pytest.raises(ValueError):
        SalesEventSchedule(config.shape, 0)


# --- SLO gates -------------------------------------------------------------------------------------

SLOS = SLO(max_error_rate=0.01, p95_ttft_s=2.0, p99_e2e_s=30.0)


def test_slos_pass_and_fail_on_each_limit():
    good = RunFigures(requests=1000, failures=10, p95_ttft_s=1.9, p99_e2e_s=29.0)
    assert all(r.passed for r in check_slos(good, SLOS))
    bad = RunFigures(requests=1000, failures=11, p95_ttft_s=2.1, p99_e2e_s=31.0)
    assert [r.name for r in check_slos(bad, SLOS) if not r.passed] == [
        "error_rate", "p95_ttft_s", "p99_e2e_s"]


def test_an_empty_run_fails_its_gates():
    results = check_slos(RunFigures(requests=0, failures=0, p95_ttft_s=None, p99_e2e_s=None), SLOS)
    assert not any(r.passed for r in results)
    assert "no data" in results[1].describe()


# --- reconciliation --------------------------------------------------------------------------------

def snapshot(requests: dict, tokens: dict) -> ServerSnapshot:
    return ServerSnapshot(requests, tokens)


BEFORE = snapshot({("text", "200"): 100.0, ("vision", "200"): 5.0}, {"text": 1000.0, "vision": 50.0})


def tally_of(*records) -> ClientTally:
    tally = ClientTally()
    for route, ok, tokens in records:
        tally.record(route, ok, tokens)
    return tally


def test_matching_counts_reconcile():
    tally = tally_of(("text", True, 10), ("text", True, 12), ("vision", True, 7))
    after = snapshot({("text", "200"): 102.0, ("vision", "200"): 6.0},
                     {"text": 1022.0, "vision": 57.0})
    rows = reconcile(tally, BEFORE, after)
    assert [r.route for r in rows] == ["text", "vision"]
    assert all(r.ok for r in rows), [r.describe() for r in rows]


def test_a_request_the_server_never_counted_is_lost():
    tally = tally_of(("text", True, 10), ("text", True, 10))
    after = snapshot({("text", "200"): 101.0, ("vision", "200"): 5.0},
                     {"text": 1010.0, "vision": 50.0})
    (text,) = reconcile(tally, BEFORE, after)
    assert text.lost == 1 and not text.ok and "lost 1" in text.describe()


def test_server_counts_nobody_sent_are_unaccounted():
    tally = tally_of(("text", True, 10))
    after = snapshot({("text", "200"): 101.0, ("vision", "200"): 6.0},
                     {"text": 1010.0, "vision": 60.0})
    rows = {r.route: r for r in reconcile(tally, BEFORE, after)}
    assert rows["text"].ok
    assert rows["vision"].unaccounted == 1 and not rows["vision"].ok


def test_failures_and_tokens_must_agree():
    tally = tally_of(("text", True, 10), ("text", False, 0))
    after = snapshot({("text", "200"): 101.0, ("text", "504"): 1.0, ("vision", "200"): 5.0},
                     {"text": 1013.0, "vision": 50.0})
    (text,) = reconcile(tally, BEFORE, after)
    assert text.client_failed == text.server_failed == 1
    assert not text.tokens_comparable and text.ok  # tokens of the failed stream are unknown
    after_ok = snapshot({("text", "200"): 102.0, ("vision", "200"): 5.0},
                        {"text": 1021.0, "vision": 50.0})
    (text,) = reconcile(tally_of(("text", True, 10), ("text", True, 10)), BEFORE, after_ok)
    assert not text.ok and "tokens client 20 / server 21" in text.describe()


def test_new_series_count_from_zero():
    tally = tally_of(("vision", False, 0))
    after = snapshot({**BEFORE.requests, ("vision", "503"): 1.0}, BEFORE.completion_tokens)
    rows = {r.route: r for r in reconcile(tally, BEFORE, after)}
    assert rows["vision"].server_failed == 1 and rows["vision"].ok


def test_requests_the_load_generator_cut_off_reconcile_but_are_not_server_errors():
    tally = tally_of(("text", True, 10))
    tally.record_interrupted("text")  # a user stopped mid-request: the server logged a 499
    after = snapshot({("text", "200"): 101.0, ("text", "499"): 1.0, ("vision", "200"): 5.0},
                     {"text": 1013.0, "vision": 50.0})
    (text,) = reconcile(tally, BEFORE, after)
    assert text.client_failed == text.server_failed == 1 and text.ok
    assert tally.server_failures == 0 and sum(tally.sent.values()) == 2


def test_a_request_cut_off_before_any_answer_may_be_missing_from_the_server():
    tally = tally_of(("text", True, 10))
    tally.record_interrupted("text", answered=False)  # stopped while Serve's proxy held it
    unseen = snapshot({("text", "200"): 101.0, ("vision", "200"): 5.0},
                      {"text": 1010.0, "vision": 50.0})
    (text,) = reconcile(tally, BEFORE, unseen)
    assert text.ok and text.lost == 0 and text.not_seen == 1
    seen = snapshot({("text", "200"): 101.0, ("text", "499"): 1.0, ("vision", "200"): 5.0},
                    {"text": 1010.0, "vision": 50.0})
    assert reconcile(tally, BEFORE, seen)[0].ok  # or the server saw it and counted a 499
    # A request that had its answer started cannot go missing: that is a loss.
    answered = tally_of(("text", True, 10))
    answered.record_interrupted("text", answered=True)
    (text,) = reconcile(answered, BEFORE, unseen)
    assert not text.ok and text.lost == 1


# --- SSE measurement -------------------------------------------------------------------------------

def clock(*times):
    values = iter(times)
    return lambda: next(values)


def test_sse_measurement_of_a_complete_stream():
    lines = [
        'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}', "",
        'data: {"choices":[{"delta":{"content":"Your "}}]}', "",
        'data: {"choices":[{"delta":{"content":"order"}}]}', "",
        'data: {"choices":[{"delta":{},"finish_reason":"stop"}]}', "",
        'data: {"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}',
        "data: [DONE]",
    ]
    result = measure_sse(200, lines, started=10.0, clock=clock(10.1, 10.5, 10.75, 10.8, 10.8, 10.9))
    assert result.ok and result.content == "Your order"
    assert result.ttft_s == pytest.approx(0.5)  # the role-only opening event is not a token
    assert result.itl_s == [pytest.approx(0.25)]
    assert result.e2e_s == pytest.approx(0.9)
    assert (result.prompt_tokens, result.completion_tokens) == (9, 2)


def test_a_batched_chunk_counts_as_its_tokens_in_the_per_token_gaps():
    from loadtests.benchmark import per_token_gaps

    word = " token"
    lines = [f'data: {{"choices":[{{"delta":{{"content":"{text}"}}}}]}}'
             for text in (word, word * 3, word)] + ["data: [DONE]"]
    result = measure_sse(200, lines, started=0.0, clock=clock(1.0, 1.06, 1.08, 1.1))
    assert result.itl_chars == [3 * len(word), len(word)]
    gaps = per_token_gaps([result], len(word))
    # 60 ms for three tokens is 20 ms per token, three times; then one token in 20 ms.
    assert gaps == [pytest.approx(0.02)] * 4


def test_sse_in_band_error_and_truncated_stream_are_failures():
    errored = measure_sse(200, ['data: {"choices":[{"delta":{"content":"a"}}]}',
                                'data: {"error":{"code":"request_timeout"}}', "data: [DONE]"],
                          started=0.0, clock=clock(1.0, 2.0, 3.0))
    assert not errored.ok and errored.error_code == "request_timeout"
    truncated = measure_sse(200, ['data: {"choices":[{"delta":{"content":"a"}}]}'],
                            started=0.0, clock=clock(1.0))
    assert not truncated.ok and not truncated.done


def test_percentile_is_a_nearest_rank_observed_value():
    from loadtests.stats import percentile

    values = [0.5, 0.1, 0.4, 0.2, 0.3]
    assert percentile(values, 0.5) == 0.3
    assert percentile(values, 0.95) == 0.5 and percentile(values, 0.2) == 0.1
    assert percentile([], 0.5) is None


class ScriptedPrometheus:
    """Answers the reconciliation queries from a script of (requests, in-flight) readings."""

    def __init__(self, readings):
        self.readings = list(readings)
        self.reads = 0

    def query(self, expr):
        requests, in_flight = self.readings[min(self.reads // 3, len(self.readings) - 1)]
        self.reads += 1
        if "in_flight" in expr:
            return [{"metric": {}, "value": in_flight}]
        if "completion" in expr:
            return [{"metric": {"route": "text"}, "value": 10.0}]
        return [{"metric": {"route": "text", "status": "200"}, "value": requests}]


def test_a_snapshot_is_not_settled_while_requests_are_in_flight():
    from loadtests.reconcile import settled_snapshot

    # Counters still for several polls while a cut-off request waits for its first token, then
    # its 499 is counted: the snapshot must include it.
    prom = ScriptedPrometheus([(5.0, 1.0)] * 4 + [(6.0, 0.0)] * 3)
    taken = settled_snapshot(prom, quiet_s=0.0, timeout_s=5, poll_s=0.0)
    assert taken.requests[("text", "200")] == 6.0 and taken.in_flight == 0
