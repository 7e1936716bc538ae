"""The sales-calendar autoscaling policy, driven by an injected clock (`ctx.current_time`): the
floor rises a lead time before an event and is released at its end, reactive scaling still adds
replicas above it, and malformed calendars fail with a message that names the entry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from ray.serve.autoscaling_policy import _apply_autoscaling_config
from ray.serve.config import AutoscalingConfig, AutoscalingContext

from model_server.autoscaling_policy import SalesCalendarPolicy, parse_events
from tests.conftest import APP_NAME

CST = timezone(timedelta(hours=8))
START = datetime(2026, 12, 12, 0, 0, tzinfo=CST)
EVENT = {
    "name": "double-12",
    "start": START.isoformat(),
    "end": (START + timedelta(hours=2)).isoformat(),
    "lead_time_min": 60,
    "min_replicas": {"TextModel": 4, "VisionModel": 2},
}


def at(moment: datetime) -> float:
    return moment.timestamp()


def context(now: float, deployment: str = "TextModel", running: int = 1, ongoing: float = 0.0,
            target: float = 2.0, **config) -> AutoscalingContext:
    autoscaling = AutoscalingConfig(min_replicas=0, max_replicas=8,
                                    target_ongoing_requests=target, upscale_delay_s=0,
                                    downscale_delay_s=0, **config)
    return AutoscalingContext(
        deployment_id=None, deployment_name=deployment, app_name=APP_NAME,
        current_num_replicas=running, target_num_replicas=running,
        running_replicas=[], total_num_requests=ongoing, total_queued_requests=0.0,
        aggregated_metrics={}, raw_metrics={}, capacity_adjusted_min_replicas=0,
        capacity_adjusted_max_replicas=8, policy_state={}, last_scale_up_time=None,
        last_scale_down_time=None, current_time=now, config=autoscaling,
    )


def decide(policy, ctx) -> float:
    replicas, _ = policy(ctx)
    return replicas


@pytest.mark.parametrize("moment, deployment, expected", [
    (START - timedelta(hours=2), "TextModel", 0.5),      # before the window: reactive only
    (START - timedelta(minutes=61), "TextModel", 0.5),
    (START - timedelta(minutes=60), "TextModel", 4),      # lead time starts: floor raised
    (START - timedelta(minutes=1), "VisionModel", 2),
    (START + timedelta(hours=1), "TextModel", 4),
    (START + timedelta(hours=2) - timedelta(seconds=1), "TextModel", 4),
    (START + timedelta(hours=2), "TextModel", 0.5),       # end: released
    (START + timedelta(hours=1), "Ingress", 0.5),          # not on the event's list
])
def test_floor_follows_the_calendar(moment, deployment, expected):
    policy = SalesCalendarPolicy([EVENT])
    # One running replica with one ongoing request against a target of 2: reactive wants 0.5.
    assert decide(policy, context(at(moment), deployment, running=1, ongoing=1)) == expected


def test_reactive_scaling_still_adds_replicas_above_the_floor():
    policy = SalesCalendarPolicy([EVENT])
    busy = context(at(START), running=4, ongoing=24)  # 6 per replica against a target of 2
    assert decide(policy, busy) == 12


def test_overlapping_events_take_the_highest_floor():
    later = {**EVENT, "name": "flash-sale", "start": (START + timedelta(minutes=30)).isoformat(),
             "lead_time_min": 0, "min_replicas": {"TextModel": 6}}
    policy = SalesCalendarPolicy([EVENT, later])
    assert decide(policy, context(at(START + timedelta(minutes=10)))) == 4
    assert decide(policy, context(at(START + timedelta(minutes=45)))) == 6
    assert policy.floor("TextModel", at(START + timedelta(minutes=45)))[1] == (
        "double-12", "flash-sale")


def test_empty_calendar_is_serves_default_policy():
    policy = SalesCalendarPolicy()
    assert decide(policy, context(at(START), running=2, ongoing=8)) == 4


def test_timeline_through_serves_wrapper_raises_and_releases_the_floor():
    """The policy as the controller runs it (factors, delays, cold start), idle traffic, one tick
    every 10 minutes; Serve then clamps the result to [min_replicas, max_replicas]."""
    policy = _apply_autoscaling_config(SalesCalendarPolicy([EVENT]))
    replicas, timeline = 0, []
    moment = START - timedelta(hours=2)
    while moment < START + timedelta(hours=3):
        decision, _ = policy(context(at(moment), "VisionModel", running=replicas, ongoing=0))
        replicas = min(max(decision, 0), 8)
        timeline.append(replicas)
        moment += timedelta(minutes=10)
    # 2 h before: 0 (scaled to zero); from 1 h before the start to the end: 2; after: back to
    # zero, through 1 (Serve only ever scales to zero from one replica).
    assert timeline == [0] * 6 + [2] * 18 + [1] + [0] * 5


def test_scale_to_zero_model_is_woken_by_the_floor_without_traffic():
    policy = _apply_autoscaling_config(SalesCalendarPolicy([EVENT]))
    decision, _ = policy(context(at(START), "VisionModel", running=0, ongoing=0))
    assert decision == 2


@pytest.mark.parametrize("change, message", [
    ({"start": "2026-12-12T00:00:00"}, "no UTC offset"),
    ({"start": "12/12/2026"}, "not an ISO 8601"),
    ({"end": "2026-12-11T00:00:00+08:00"}, "must be after start"),
    ({"lead_time_min": -5}, "lead_time_min"),
    ({"min_replicas": {"TextModel": -1}}, "min_replicas"),
    ({"min_replicas": {}}, "min_replicas"),
    ({"min_replicas": {"TextModel": 1.5}}, "min_replicas"),
    ({"typo": 1}, "unknown keys \\['typo'\\]"),
    ({"name": ""}, "name"),
])
def test_malformed_events_are_refused_with_the_entry_named(change, message):
    with pytest.raises(ValueError, match=message):
        SalesCalendarPolicy([{**EVENT, **change}])


def test_missing_keys_and_duplicate_names_are_refused():
    with pytest.raises(ValueError, match="missing \\['end'\\]"):
        parse_events([{k: v for k, v in EVENT.items() if k != "end"}])
    with pytest.raises(ValueError, match="unique"):
        parse_events([EVENT, EVENT])


def test_zulu_and_offset_times_mean_the_same_instant():
    zulu = {**EVENT, "start": "2026-12-11T16:00:00Z", "end": "2026-12-11T18:00:00Z"}
    assert parse_events([zulu])[0].start == parse_events([EVENT])[0].start
