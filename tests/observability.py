"""Reading the shipped observability configs: the Grafana dashboard's queries and the Prometheus
rules, in the form the unit and integration tests check them."""

from __future__ import annotations

import json
import re

import yaml

from tests.conftest import PROJECT_ROOT

DASHBOARD = PROJECT_ROOT / "configs" / "grafana" / "cs-assistant-dashboard.json"
RULES = PROJECT_ROOT / "configs" / "prometheus" / "rules.yml"
# A series name in PromQL: ours (ray_*) or a recording rule's (level:metric:operations).
SERIES_NAME = re.compile(r"\b(ray_[a-z0-9_]+|cs:[a-z0-9_:]+)\b")


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def dashboard_queries(rate_interval: str = "1m", model: str = ".*") -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target, with Grafana's variables filled in."""
    queries = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", rate_interval).replace("$model", model)
            queries.append((panel["title"], expr))
    return queries


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def series_names(expr: str) -> set[str]:
    """Metric and recorded-series names an expression reads (label values excluded)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(SERIES_NAME.findall(without_strings))
