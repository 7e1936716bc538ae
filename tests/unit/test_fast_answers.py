"""The fast-answers benchmark's setup and arithmetic (loadtests/fast_answers.py): the stack it
starts, the peak mix it sends, and the GPU time it reports."""

from __future__ import annotations

from collections import Counter

import pytest

from configs.schema import AppConfig
from loadtests.fast_answers import (
    A10_ANSWERS_PER_S,
    MIX,
    gpu_savings,
    markdown,
    peak_mix,
    stack_config,
    written_questions,
)


def test_the_stack_is_the_shipped_config_with_one_text_replica_and_no_calendar():
    config = stack_config(port=23456)
    assert config["http_options"]["port"] == 23456
    app = config["applications"][0]
    AppConfig.model_validate(app["args"])  # still a valid app config
    text = next(d for d in app["deployments"] if d["name"] == "TextModel")
    assert text["num_replicas"] == 1 and "autoscaling_config" not in text
    vision = next(d for d in app["deployments"] if d["name"] == "VisionModel")
    assert vision["autoscaling_config"]["policy"]["policy_kwargs"] == {"events": []}
    shops = app["args"]["shops"]
    assert shops.get("response_cache", {}).get("enabled", True)  # the fast answers stay on
    assert all(s["curated_answers"]["enabled"] for s in shops["catalog"])


def test_the_peak_mix_has_its_shares_repeats_and_valid_requests():
    config = stack_config(port=1)
    mix = peak_mix(config, 400)
    kinds = Counter(r["kind"] for r in mix)
    for kind, share in MIX.items():
        assert kinds[kind] / 400 == pytest.approx(share, abs=0.06), kind
    hot = [r["body"]["messages"][0]["content"] for r in mix if r["kind"] == "hot"]
    assert Counter(hot).most_common(1)[0][1] >= 10  # a hot question is asked again and again
    assert set(hot) <= {q for _, q in written_questions(config)}
    images = [r for r in mix if r["kind"] == "image"]
    assert all(part["type"] == "image_url" for r in images
               for part in r["body"]["messages"][0]["content"][1:])
    assert peak_mix(config, 400) == mix  # a fixed seed: the same mix every run


def test_gpu_savings_follow_the_share_answered_without_a_model():
    mix = {"answered_without_model_share": 0.4, "model_answer_share": 0.5}
    saved = gpu_savings(mix, 1_000_000)
    assert saved["model_answers_avoided"] == 400_000
    assert saved["gpu_seconds_saved"] == round(400_000 / A10_ANSWERS_PER_S)
    assert saved["a10s_busy_with_caches"] < saved["a10s_busy_without_caches"]


def test_the_report_shows_the_targets_and_figures():
    run = {"clients": 32, "stream": False, "answers_per_s": 812.3, "requests": 100,
           "outcomes": {"faq": 100}, "p50_ms": 20.0, "p99_ms": 41.5, "client_cpu_core_share": 0.5}
    mix = {"requests": 10, "by_kind": {"hot": 10}, "clients": 4, "seconds": 1.0,
           "answered_without_model_share": 0.5, "response_cache_hit_rate": 0.25,
           "by_cache": {"faq": 5, "miss": 5}, "by_kind_and_cache": {}, "model_answers": 5,
           "model_answer_share": 0.5, "mean_completion_tokens": 40.0,
           "p50_s_by_cache": {"faq": 0.01, "miss": 2.0}, "errors": 0}
    results = {"setup": {"date": "2026-11-26", "quick": True, "versions": {"ray": "2.60.0"},
                         "machine": {"cpus": 2, "cpu_model": "x", "memory_gib": 24}},
               "curated": [run], "mix": mix, "gpu": gpu_savings(mix, 1_000_000)}
    text = markdown(results)
    assert "| JSON | 32 | 812 | 20.0 | 41.5 |" in text
    assert "at least 500 answers/s at p99 under 50 ms" in text
    assert "**50.0%**" in text
