"""The sales-event schedule: how many shoppers are active at each moment of a run.

Stage durations scale by one factor, so the same shape runs for 2 minutes in CI or an hour against
a cluster. Within a stage the user count moves from the previous stage's level to this stage's at
a spawn rate that arrives exactly at the stage's end (the spike reaches its peak within its 60 s),
then holds. Pure; `locustfile.SalesEventShape` asks it every second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from loadtests.workload import Shape


@dataclass(frozen=True)
class Tick:
    stage: str
    users: int
    spawn_rate: float


class SalesEventSchedule:
    def __init__(self, shape: Shape, time_scale: float):
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.shape = shape
        self.time_scale = time_scale
        self._stages = [
            (stage.name, stage.duration_s * time_scale,
             max(0, round(stage.users * shape.baseline_users)))
            for stage in shape.stages
        ]

    @property
    def duration_s(self) -> float:
        return sum(duration for _, duration, _ in self._stages)

    @property
    def peak_users(self) -> int:
        return max(users for _, _, users in self._stages)

    def tick(self, run_time_s: float) -> Tick | None:
        """The target at `run_time_s` into the run; None once the shape is over."""
        previous = self._stages[0][2]
        start = 0.0
        for name, duration, users in self._stages:
            if run_time_s < start + duration:
                change = abs(users - previous)
                # Users are added/removed at this rate, reaching the level by the stage's end.
                rate = max(1.0, math.ceil(change / duration)) if change else 1.0
                return Tick(name, users, rate)
            start += duration
            previous = users
        return None
