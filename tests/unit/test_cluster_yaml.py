"""cluster.yaml: valid for the Ray cluster launcher's schema, GPU workers, private Ray ports."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray.autoscaler
import yaml

from tests.conftest import PROJECT_ROOT

CLUSTER = yaml.safe_load((PROJECT_ROOT / "cluster.yaml").read_text())


def test_matches_the_launcher_schema():
    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(CLUSTER, schema)


def test_head_is_cpu_only_and_gpu_workers_autoscale():
    nodes = CLUSTER["available_node_types"]
    head = nodes[CLUSTER["head_node_type"]]
    assert head["node_config"]["InstanceType"].startswith(("m", "c", "r"))  # no GPU family
    assert head["max_workers"] == 0
    gpu = nodes["gpu_worker"]
    assert gpu["node_config"]["InstanceType"].startswith(("g", "p"))
    assert 1 <= gpu["min_workers"] < gpu["max_workers"] <= CLUSTER["max_workers"]


def test_only_the_serve_port_is_public():
    permissions = CLUSTER["provider"]["security_group"]["IpPermissions"]
    public = {(p["FromPort"], p["ToPort"]) for p in permissions
              if any(r["CidrIp"] == "0.0.0.0/0" for r in p.get("IpRanges", []))}
    assert public == {(8000, 8000)}
    head_start = " ".join(CLUSTER["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start


def test_installs_the_gpu_dependency_set():
    setup = " ".join(CLUSTER["setup_commands"])
    assert "--extra gpu" in setup and "--locked" in setup and "--extra cpu" not in setup
