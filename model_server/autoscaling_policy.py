"""Reactive autoscaling plus a sales calendar: the custom Serve autoscaling policy of the models.

Serve's default policy reacts to load: replicas = ongoing requests / `target_ongoing_requests`,
after `upscale_delay_s` / `downscale_delay_s`. A sales event moves faster than that: traffic jumps
10-50x within minutes, and a GPU replica (plus, often, a new GPU node) takes minutes to be ready.
So for each event on the calendar the replica floor of a model is raised `lead_time_min` before the
event starts and released when it ends. Inside a window the policy returns
max(reactive decision, event floor), so reactive scaling still adds replicas above the floor; after
the window the floor is gone and the reactive policy scales down after its usual delay.

Configured per deployment in the Serve config (`autoscaling_config.policy`):

    policy_function: model_server.autoscaling_policy:SalesCalendarPolicy
    policy_kwargs:
      events:
        - name: double-12
          start: "2026-12-12T00:00:00+08:00"   # ISO 8601 with a UTC offset
          end: "2026-12-13T02:00:00+08:00"
          lead_time_min: 60
          min_replicas: {TextModel: 8, VisionModel: 2}   # by deployment name

Serve applies `upscaling_factor`, the delays and the min/max bounds to what this returns, so a
floor above `max_replicas` is capped there. Time is the controller's `ctx.current_time` (wall
clock), which tests inject.

This module imports only the standard library and Ray: Serve pickles it by value into its
controller, where the project's other modules may not be importable.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ray.serve.autoscaling_policy import replica_queue_length_autoscaling_policy
from ray.serve.config import AutoscalingContext

logger = logging.getLogger("ray.serve")

EVENT_KEYS = {"name", "start", "end", "lead_time_min", "min_replicas"}


@dataclass(frozen=True)
class SalesEvent:
    """One calendar entry: replica floors per deployment over [start - lead time, end)."""

    name: str
    start: datetime
    end: datetime
    lead_time: timedelta
    min_replicas: Mapping[str, int]

    @property
    def window_start(self) -> datetime:
        return self.start - self.lead_time

    def floor(self, deployment: str, now: datetime) -> int:
        """The replica floor this event sets for `deployment` at `now` (0 outside its window)."""
        if self.window_start <= now < self.end:
            return self.min_replicas.get(deployment, 0)
        return 0


def parse_events(raw_events: Iterable[Mapping[str, Any]]) -> tuple[SalesEvent, ...]:
    """Validate the calendar from the config; raise ValueError naming the bad entry."""
    events: list[SalesEvent] = []
    for index, raw in enumerate(raw_events):
        where = f"sales calendar entry {index}"
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
        unknown = set(raw) - EVENT_KEYS
        missing = EVENT_KEYS - {"lead_time_min"} - set(raw)
        if unknown or missing:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}, missing {sorted(missing)}")
        name = raw["name"]
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}: name must be a non-empty string")
        where = f"sales event {name!r}"
        start, end = (_aware_datetime(raw[key], f"{where}: {key}") for key in ("start", "end"))
        if end <= start:
            raise ValueError(f"{where}: end ({end.isoformat()}) must be after start")
        lead = raw.get("lead_time_min", 0)
        if isinstance(lead, bool) or not isinstance(lead, (int, float)) or not (
            math.isfinite(lead) and lead >= 0
        ):
            raise ValueError(f"{where}: lead_time_min must be a number >= 0, got {lead!r}")
        floors = raw["min_replicas"]
        if not isinstance(floors, Mapping) or not floors or not all(
            isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
            for k, v in floors.items()
        ):
            raise ValueError(
                f"{where}: min_replicas must map deployment names to integers >= 0, "
                f"got {floors!r}"
            )
        events.append(SalesEvent(name, start, end, timedelta(minutes=lead), dict(floors)))
    names = [e.name for e in events]
    if len(set(names)) != len(names):
        raise ValueError(f"sales event names must be unique, got {names}")
    return tuple(events)


def _aware_datetime(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{where}: {value!r} is not an ISO 8601 date-time") from None
    else:
        raise ValueError(f"{where}: expected an ISO 8601 string, got {type(value).__name__}")
    if parsed.tzinfo is None:
        # A calendar shared by teams in several time zones must say which one it means.
        raise ValueError(f"{where}: {value!r} has no UTC offset (write e.g. +08:00 or Z)")
    return parsed


class SalesCalendarPolicy:
    """Serve's reactive queue-length policy with calendar floors (see the module docstring).

    Serve instantiates it once per deployment with `policy_kwargs` and calls it every
    control-loop tick, so a malformed calendar fails the deploy with parse_events' message.
    """

    def __init__(self, events: Iterable[Mapping[str, Any]] = ()):
        self.events = parse_events(events)
        self._active: dict[str, tuple[str, ...]] = {}  # per deployment, for transition logs

    def floor(self, deployment: str, now_s: float) -> tuple[int, tuple[str, ...]]:
        """The calendar's floor for `deployment` at Unix time `now_s`, and the events setting it."""
        now = datetime.fromtimestamp(now_s).astimezone()
        floors = {e.name: e.floor(deployment, now) for e in self.events}
        active = tuple(name for name, floor in floors.items() if floor > 0)
        return max(floors.values(), default=0), active

    def __call__(self, ctx: AutoscalingContext) -> tuple[float, dict[str, Any]]:
        desired, state = replica_queue_length_autoscaling_policy(ctx)
        now_s = ctx.current_time if ctx.current_time is not None else time.time()
        floor, active = self.floor(ctx.deployment_name, now_s)
        if active != self._active.get(ctx.deployment_name, ()):
            self._active[ctx.deployment_name] = active
            if active:
                logger.info("sales calendar: %s holds at least %d replicas (events: %s)",
                            ctx.deployment_name, floor, ", ".join(active))
            else:
                logger.info("sales calendar: no event window for %s; reactive scaling only",
                            ctx.deployment_name)
        return max(desired, floor), state
