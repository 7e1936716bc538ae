"""The shipped Prometheus configs, SLO rules and Grafana dashboard, checked without a server:
promtool accepts them, the dashboard is the generator's output and imports with the datasource as
a variable, and every ingress metric is on the dashboard under its exported name. (A real
Prometheus runs every query against the live stack in tests/integration/test_prometheus.py.)"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from router.observability.metrics import INGRESS_METRICS
from tests.conftest import PROJECT_ROOT
from tests.docs_pages import section
from tests.observability import DASHBOARD, RULES, dashboard, dashboard_queries, rules, series_names

PROMETHEUS_DIR = PROJECT_ROOT / "configs" / "prometheus"
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: scripts/setup.sh --test installs Debian's prometheus")
    return path


@pytest.mark.parametrize("config", ["local.yml", "cluster.yml"])
def test_scrape_configs_pass_promtool(config):
    result = subprocess.run([promtool(), "check", "config", str(PROMETHEUS_DIR / config)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = yaml.safe_load((PROMETHEUS_DIR / config).read_text())
    assert loaded["rule_files"] == ["rules.yml"]
    # Ray's dashboard writes this file with every live node's metrics-agent address.
    sd_files = loaded["scrape_configs"][0]["file_sd_configs"][0]["files"]
    assert sd_files == ["/tmp/ray/prom_metrics_service_discovery.json"]


def test_rules_pass_promtool():
    result = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alerts_cover_the_slos_and_carry_routing_metadata():
    alerts = [r for r in rules() if "alert" in r]
    read = set().union(*(series_names(a["expr"]) for a in alerts))
    # Error rate, p95 TTFT, queue growth (the SLOs) and the always-on text model.
    assert {"cs:server_errors:ratio_rate5m", "cs:ttft_seconds:p95_5m", "cs:router_queue:sum",
            "cs:engine_waiting:sum"} <= read
    for alert in alerts:
        assert alert["labels"]["severity"] in {"page", "ticket"}, alert["alert"]
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        assert re.fullmatch(r"\d+m", alert["for"]), alert["alert"]


def test_dashboard_is_the_generators_output():
    spec = importlib.util.spec_from_file_location(
        "build_grafana_dashboard", PROJECT_ROOT / "scripts" / "build_grafana_dashboard.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), (
        "configs/grafana dashboard is stale: run scripts/build_grafana_dashboard.py")


def test_dashboard_imports_with_the_datasource_as_a_variable():
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["model"]["datasource"]["uid"] == "${datasource}"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert 0 <= grid["x"] and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["description"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_every_ingress_metric_is_on_the_dashboard_under_its_exported_name():
    read = set().union(*(series_names(expr) for _, expr in dashboard_queries()))
    exported = {spec.exported_name for spec in INGRESS_METRICS}
    ours = {name for name in read if name.startswith("ray_cs_")}

    def metric_of(series: str) -> str:
        for suffix in HISTOGRAM_SUFFIXES:
            if series.endswith(suffix) and series.removesuffix(suffix) in exported:
                return series.removesuffix(suffix)
        return series

    assert {metric_of(name) for name in ours} & exported == exported
    unknown = {name for name in ours if metric_of(name) not in exported}
    assert not unknown, f"dashboard reads ingress metrics that do not exist: {unknown}"


def test_dashboard_covers_the_operators_questions():
    titles = " | ".join(p["title"] for p in dashboard()["panels"]).lower()
    for topic in ("requests/s", "tokens/s", "time to first token", "inter-token",
                  "end-to-end", "in flight and queued", "replicas", "kv-cache", "rejected",
                  "failed"):
        assert topic in titles, topic


def test_operations_page_documents_every_ingress_metric_and_alert():
    metrics = section("operations.md", "Ingress metrics")
    alerts = section("operations.md", "Alerts (`configs/prometheus/rules.yml`)")
    for spec in INGRESS_METRICS:
        assert f"`{spec.exported_name}`" in metrics, spec.exported_name
    for rule in rules():
        if "alert" in rule:
            assert f"`{rule['alert']}`" in alerts, rule["alert"]
