"""Replica counts per deployment from Serve's status API, and a timeline of their changes.

Reads the Ray dashboard's REST endpoint behind `serve status` (`GET /api/serve/applications/`),
with the cluster's Ray auth token when token authentication is on. Used by the autoscaling tests;
during a load test, operators can watch scaling with

    python -m loadtests.serve_status --dashboard-url http://127.0.0.1:8265

which prints one line per change of a deployment's target or running replicas.
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from configs.schema import APP_NAME

DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8265"


@dataclass(frozen=True)
class Replicas:
    """One deployment's replica counts as Serve reports them."""

    status: str  # HEALTHY, UPSCALING, DOWNSCALING, UPDATING, UNHEALTHY, ...
    target: int
    running: int
    starting: int


def ray_auth_token() -> str | None:
    """The token Ray's own clients would send: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, or
    ~/.ray/auth_token (the order of Ray's token loader)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    return path.read_text().strip() if path.is_file() else None


class ServeStatus:
    def __init__(self, dashboard_url: str = DEFAULT_DASHBOARD_URL, timeout_s: float = 10.0):
        self.url = f"{dashboard_url.rstrip('/')}/api/serve/applications/"
        self.timeout_s = timeout_s
        token = ray_auth_token()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def application(self, app: str = APP_NAME) -> dict:
        """Serve's details of `app` (status, deployments, their replicas with pid and node);
        empty while the app is not deployed."""
        request = urllib.request.Request(self.url, headers=self._headers)
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            details = json.load(response)
        return (details.get("applications") or {}).get(app) or {}

    def deployments(self, app: str = APP_NAME) -> dict[str, Replicas]:
        """{deployment name: Replicas} of `app`; empty while the app is not deployed."""
        application = self.application(app)
        if not application:
            return {}
        return {name: _replicas(d) for name, d in application["deployments"].items()}


def _replicas(deployment: dict) -> Replicas:
    states = [r["state"] for r in deployment.get("replicas", [])]
    return Replicas(
        status=deployment["status"],
        target=int(deployment.get("target_num_replicas", 0)),
        running=states.count("RUNNING"),
        starting=sum(s in ("STARTING", "PENDING_MIGRATION") for s in states),
    )


@dataclass(frozen=True)
class Change:
    """A deployment's counts from `at_s` (seconds since the timeline started) on."""

    at_s: float
    deployment: str
    replicas: Replicas


class ReplicaTimeline:
    """Polls ServeStatus in a background thread and keeps every change of target/running."""

    def __init__(self, status: ServeStatus, app: str = APP_NAME, poll_s: float = 1.0):
        self.status = status
        self.app = app
        self.poll_s = poll_s
        self.changes: list[Change] = []
        self.errors = 0
        self.started = time.monotonic()
        self._last: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="replica-timeline", daemon=True)

    def __enter__(self) -> ReplicaTimeline:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=self.status.timeout_s + self.poll_s)

    def now_s(self) -> float:
        return time.monotonic() - self.started

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                current = self.status.deployments(self.app)
            except OSError:
                self.errors += 1  # dashboard busy or restarting: try again next poll
            else:
                at = self.now_s()
                with self._lock:
                    for name, replicas in sorted(current.items()):
                        key = (replicas.target, replicas.running)
                        if self._last.get(name) != key:
                            self._last[name] = key
                            self.changes.append(Change(at, name, replicas))
            self._stop.wait(self.poll_s)

    def latest(self, deployment: str) -> Replicas | None:
        with self._lock:
            for change in reversed(self.changes):
                if change.deployment == deployment:
                    return change.replicas
        return None

    def first(self, deployment: str, after_s: float, predicate) -> float | None:
        """When (timeline seconds) `deployment` first satisfied `predicate` at or after
        `after_s`, taking the state in force at `after_s` into account; None if never yet."""
        with self._lock:
            changes = [c for c in self.changes if c.deployment == deployment]
        in_force = [c for c in changes if c.at_s <= after_s]
        if in_force and predicate(in_force[-1].replicas):
            return after_s
        return next((c.at_s for c in changes if c.at_s > after_s and predicate(c.replicas)),
                    None)

    def wait_for(self, deployment: str, predicate, timeout_s: float,
                 after_s: float = 0.0) -> float | None:
        """Block until `first(...)` finds a time, or `timeout_s` passes (then None)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = self.first(deployment, after_s, predicate)
            if found is not None:
                return found
            time.sleep(self.poll_s / 2)
        return None

    def describe(self) -> str:
        with self._lock:
            return "\n".join(
                f"{c.at_s:7.1f}s  {c.deployment:<12} target {c.replicas.target}  "
                f"running {c.replicas.running}  starting {c.replicas.starting}  "
                f"({c.replicas.status})"
                for c in self.changes
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dashboard-url", default=DEFAULT_DASHBOARD_URL)
    parser.add_argument("--app", default=APP_NAME)
    parser.add_argument("--poll-s", type=float, default=1.0)
    args = parser.parse_args()
    timeline = ReplicaTimeline(ServeStatus(args.dashboard_url), args.app, args.poll_s)
    printed = 0
    with timeline:
        try:
            while True:
                time.sleep(args.poll_s)
                lines = timeline.describe().splitlines()
                for line in lines[printed:]:
                    print(line, flush=True)
                printed = len(lines)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
