"""A small client of Prometheus's HTTP API (instant queries, rules, targets), stdlib only.

Used by the metrics integration test and by the load test's reconciliation of client counts with
the server's counters.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request


class PromQLError(RuntimeError):
    """Prometheus refused a query (bad PromQL, or an evaluation error)."""


class PrometheusAPI:
    def __init__(self, url: str, timeout_s: float = 10.0, attempts: int = 3):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.attempts = attempts

    def _get(self, path: str, **params: str) -> dict:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        for attempt in range(1, self.attempts + 1):
            try:
                with urllib.request.urlopen(f"{self.url}{path}{query}", timeout=self.timeout_s) as r:
                    body = json.load(r)
                break
            except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error as JSON
                body = json.load(exc)
                break
            except (TimeoutError, ConnectionError, urllib.error.URLError) as exc:
                if isinstance(exc, urllib.error.URLError) and not isinstance(
                        exc.reason, (TimeoutError, ConnectionError)):
                    raise
                # A 2-core host running vLLM, Serve and traffic can starve Prometheus for
                # longer than one timeout (seen once in CI): a slow answer is not a wrong one.
                if attempt == self.attempts:
                    raise TimeoutError(f"Prometheus did not answer {path} {params} "
                                       f"in {self.attempts} x {self.timeout_s:g} s") from exc
        if body.get("status") != "success":
            raise PromQLError(f"{body.get('errorType')}: {body.get('error')} ({params or path})")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """Instant vector/scalar result of `expr`: [{"metric": {...}, "value": float}, ...]."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = self._get("/api/v1/query", **params)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": float(data["result"][1])}]
        if data["resultType"] != "vector":
            raise PromQLError(f"{expr!r} gave a {data['resultType']}, not an instant vector")
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in data["result"]]

    def value(self, expr: str, at: float | None = None) -> float:
        """The sum of an instant query's values; 0.0 when it has no series."""
        return sum(r["value"] for r in self.query(expr, at) if not math.isnan(r["value"]))

    def rules(self) -> list[dict]:
        return [rule for group in self._get("/api/v1/rules")["groups"] for rule in group["rules"]]

    def targets(self) -> list[dict]:
        return self._get("/api/v1/targets")["activeTargets"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=self.timeout_s) as r:
                return r.status == 200
        except OSError:
            return False
