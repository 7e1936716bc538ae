"""The soak's arithmetic (loadtests/soak.py): requests grouped into latency windows with their
errors, a memory slope that shows a leak and not a flat line, and PSS read from /proc."""

from __future__ import annotations

import os
import time

import pytest

from loadtests.soak import MemoryTrack, markdown, pss_mib, soak_workload, windows


def record(t: float, ok: bool = True, ttft: float = 0.5, e2e: float = 2.0, error=None,
           status: int = 200) -> dict:
    return {"t": t, "route": "text", "status": status, "ok": ok, "ttft_s": ttft if ok else None,
            "e2e_s": e2e, "error": error}


def test_windows_split_requests_by_time_and_count_errors_by_kind():
    start = 1000.0
    records = ([record(start + i, ttft=0.1 * (i + 1)) for i in range(10)]
               + [record(start + 301, ok=False, error="model_unavailable"),
                  record(start + 302, ok=False, status=503), record(start + 303, ttft=3.0)])
    first, second = windows(records, start, 300)
    assert (first["window"], first["requests"], first["errors"]) == ("0-5 min", 10, 0)
    # Nearest-rank percentiles, as every other report here (loadtests/stats.py).
    assert first["ttft_p50_s"] == pytest.approx(0.5) and first["ttft_p99_s"] == pytest.approx(1.0)
    assert (second["requests"], second["errors"]) == (3, 2)
    assert second["error_kinds"] == {"model_unavailable": 1, "HTTP 503": 1}
    assert second["ttft_p95_s"] == 3.0  # failed requests have no TTFT to count


def test_a_growing_process_has_a_slope_and_a_flat_one_has_none_after_warm_up():
    leaking = MemoryTrack("ingress replica", 1, [(t, 500 + t / 60) for t in range(0, 1800, 15)])
    flat = MemoryTrack("model replica", 2, [(t, 800.0 if t >= 300 else 200 + t)
                                            for t in range(0, 1800, 15)])
    assert leaking.slope_mib_per_hour(after_s=300) == pytest.approx(60.0)
    # The warm-up (memory filling in the first window) is not a leak.
    assert flat.slope_mib_per_hour(after_s=300) == pytest.approx(0.0, abs=1e-9)
    assert MemoryTrack("x", 3, [(0, 1.0)]).slope_mib_per_hour(0) is None


def test_pss_of_this_process_is_read_and_a_gone_process_is_none():
    assert pss_mib(os.getpid()) > 1
    assert pss_mib(2**22 + 12345) is None


def test_the_workload_is_steady_for_the_asked_time_and_the_report_renders():
    workload = soak_workload(30, 4)
    assert workload["shape"]["stages"] == [{"name": "soak", "duration_s": 1800, "users": 1}]
    assert workload["shape"]["baseline_users"] == 4 and workload["text_questions"]
    text = markdown({"minutes": 30, "users": 4, "requests": 2, "errors": 0, "host": "h",
                     "sample_s": 15, "window_min": 5,
                     "memory": [{"process": "p (pid 1)", "first_mib": 1, "last_mib": 2,
                                 "peak_mib": 2, "slope_mib_per_hour": None}],
                     "windows": windows([record(0.0), record(1.0)], 0.0, 300)})
    assert "| p (pid 1) | 1 | 2 | 2 | - |" in text and "| 0-5 min | 2 | 0 |" in text


def test_the_sampler_tracks_this_process_and_stops_when_asked():
    from loadtests.soak import MemorySampler

    sampler = MemorySampler(0.05)
    sampler.start()
    time.sleep(0.3)
    sampler.stop()
    assert not sampler.is_alive()
    assert all(mib > 0 for t in sampler.tracks.values() for _, mib in t.samples)
