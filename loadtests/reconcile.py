"""Reconciliation: what the load client sent and got, against the server's own Prometheus
counters for the same window. Requests, failures and completion tokens are compared per route;
any difference is reported as lost (client sent, server never counted) or unaccounted (server
counted more than the client sent) and fails the run.

The window is two settled snapshots: before the first request and after the last, each taken once
the server has no request in flight and its counters have stopped moving for `quiet_s` (the Ray
export interval plus Prometheus's scrape interval), so nothing is in transit. The in-flight
condition matters for requests the load generator cut off while they waited for their first
token: the server notices the disconnect only when that token comes, and counts them (499) then,
which can be well after its counters last moved. Other traffic to the same server in that window
shows up as unaccounted requests, as it should.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

from loadtests.prometheus_api import PrometheusAPI

REQUESTS = "sum by (route, status) (ray_cs_requests_total)"
IN_FLIGHT = "sum(ray_cs_requests_in_flight)"
COMPLETION_TOKENS = "sum by (route) (ray_cs_completion_tokens_total)"


@dataclass
class ClientTally:
    """Per route: requests sent, failed (any non-200, in-band error or transport error), and
    completion tokens of successful requests (from their usage event)."""

    sent: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    completion_tokens: Counter = field(default_factory=Counter)
    # Among `failed`: requests the load generator itself cut off (a user stopped mid-request at a
    # ramp-down or at the end). The server counts them (499), so reconciliation keeps them; they
    # are not server errors, so the error-rate SLO does not.
    interrupted: Counter = field(default_factory=Counter)
    # Among `interrupted`: cut off before any response header came back. The server may never
    # have seen these (still in the client's connection or Serve's proxy when the user stopped),
    # so reconciliation accepts them missing from the server's counts.
    unanswered: Counter = field(default_factory=Counter)

    def record(self, route: str, ok: bool, completion_tokens: int) -> None:
        self.sent[route] += 1
        if ok:
            self.completion_tokens[route] += completion_tokens
        else:
            self.failed[route] += 1

    def record_interrupted(self, route: str, answered: bool = True) -> None:
        self.record(route, ok=False, completion_tokens=0)
        self.interrupted[route] += 1
        if not answered:
            self.unanswered[route] += 1

    @property
    def server_failures(self) -> int:
        return sum(self.failed.values()) - sum(self.interrupted.values())


@dataclass(frozen=True)
class ServerSnapshot:
    requests: dict[tuple[str, str], float]  # (route, status) -> count
    completion_tokens: dict[str, float]
    in_flight: float = 0.0  # requests the ingress replicas are serving now

    def total(self) -> float:
        return sum(self.requests.values())


def snapshot(prom: PrometheusAPI) -> ServerSnapshot:
    requests = {(r["metric"].get("route", ""), r["metric"].get("status", "")): r["value"]
                for r in prom.query(REQUESTS)}
    tokens = {r["metric"].get("route", ""): r["value"] for r in prom.query(COMPLETION_TOKENS)}
    in_flight = sum(r["value"] for r in prom.query(IN_FLIGHT))
    return ServerSnapshot(requests, tokens, in_flight)


def settled_snapshot(prom: PrometheusAPI, quiet_s: float, timeout_s: float,
                     poll_s: float = 1.0) -> ServerSnapshot:
    """A snapshot once nothing is in flight and the counters have not changed for `quiet_s`."""
    deadline = time.monotonic() + timeout_s
    current = snapshot(prom)
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < quiet_s or current.in_flight > 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"server counters still moving (or {current.in_flight:.0f} "
                               f"requests in flight) after {timeout_s:.0f}s")
        time.sleep(poll_s)
        latest = snapshot(prom)
        if latest != current:
            current, stable_since = latest, time.monotonic()
    return current


@dataclass(frozen=True)
class RouteReconciliation:
    route: str
    client_sent: int
    server_counted: int
    client_failed: int
    server_failed: int
    client_tokens: int
    server_tokens: int
    client_unanswered: int = 0  # cut off by the client before any answer (see ClientTally)

    @property
    def not_seen(self) -> int:
        """Requests the client sent that the server never counted."""
        return max(0, self.client_sent - self.server_counted)

    @property
    def lost(self) -> int:
        """Not seen by the server, beyond those the client itself cut off before any answer."""
        return max(0, self.not_seen - self.client_unanswered)

    @property
    def unaccounted(self) -> int:
        return max(0, self.server_counted - self.client_sent)

    @property
    def tokens_comparable(self) -> bool:
        # The client learns the token count of successful streams only.
        return self.client_failed == 0 and self.server_failed == 0

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.unaccounted == 0
                and self.client_failed - self.not_seen == self.server_failed
                and (not self.tokens_comparable or self.client_tokens == self.server_tokens))

    def describe(self) -> str:
        tokens = (f"tokens client {self.client_tokens} / server {self.server_tokens}"
                  if self.tokens_comparable else
                  f"tokens server {self.server_tokens} (not comparable: failed streams)")
        unseen = (f", {self.not_seen} cut off by the client before any answer and not seen "
                  "by the server" if self.not_seen and not self.lost else "")
        return (f"{'OK  ' if self.ok else 'FAIL'} route={self.route}: requests client "
                f"{self.client_sent} / server {self.server_counted} (lost {self.lost}, "
                f"unaccounted {self.unaccounted}{unseen}); failures client {self.client_failed} "
                f"/ server {self.server_failed}; {tokens}")


def reconcile(tally: ClientTally, before: ServerSnapshot,
              after: ServerSnapshot) -> list[RouteReconciliation]:
    def delta_requests(route: str, failed_only: bool) -> int:
        return round(sum(
            value - before.requests.get(key, 0.0)
            for key, value in after.requests.items()
            if key[0] == route and (not failed_only or key[1] != "200")
        ))

    routes = sorted(set(tally.sent) | {route for route, _ in after.requests
                                       if delta_requests(route, False)})
    return [
        RouteReconciliation(
            route=route,
            client_sent=tally.sent[route],
            server_counted=delta_requests(route, False),
            client_failed=tally.failed[route],
            server_failed=delta_requests(route, True),
            client_tokens=tally.completion_tokens[route],
            client_unanswered=tally.unanswered[route],
            server_tokens=round(after.completion_tokens.get(route, 0.0)
                                - before.completion_tokens.get(route, 0.0)),
        )
        for route in routes
    ]
