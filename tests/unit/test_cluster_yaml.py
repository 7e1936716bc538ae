"""cluster.yaml: valid for the Ray cluster launcher's schema, GPU workers, private Ray ports."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import ray.autoscaler
import yaml

from tests.conftest import PROJECT_ROOT
from tests.docs_pages import section

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


def test_nothing_is_open_to_the_internet():
    # The launcher's own security group always opens SSH to 0.0.0.0/0; every node uses the
    # group made from deploy/aws/security-group-rules.json instead.
    assert "security_group" not in CLUSTER["provider"]
    for node_type in CLUSTER["available_node_types"].values():
        assert node_type["node_config"]["SecurityGroupIds"]
    rules = json.loads((PROJECT_ROOT / "deploy" / "aws" / "security-group-rules.json").read_text())
    text = json.dumps(rules)
    assert "0.0.0.0/0" not in text and "::/0" not in text
    ports = {(r.get("FromPort"), r["IpProtocol"]): r for r in rules}
    assert set(ports) == {(None, "-1"), (8000, "tcp"), (22, "tcp")}
    assert ports[(8000, "tcp")]["UserIdGroupPairs"][0]["GroupId"] == "LOAD_BALANCER_SG"
    assert ports[(22, "tcp")]["IpRanges"][0]["CidrIp"] == "OPERATOR_CIDR"
    assert ports[(None, "-1")]["UserIdGroupPairs"][0]["GroupId"] == "CLUSTER_SG"
    assert all(rule["_why"] for rule in rules)
    head_start = " ".join(CLUSTER["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start


def test_every_node_gets_the_api_keys_the_production_config_reads():
    from configs.schema import APP_NAME, app_config_from_serve_config, load_serve_config
    from tests.conftest import PRODUCTION_CONFIG

    config = app_config_from_serve_config(load_serve_config(PRODUCTION_CONFIG), APP_NAME)
    assert not config.access.allow_anonymous
    mounted = {Path(remote.replace("~", "/home/" + CLUSTER["auth"]["ssh_user"]))
               for remote in CLUSTER["file_mounts"]}
    assert Path(config.access.keys_file) in mounted


def test_installs_the_gpu_dependency_set():
    setup = " ".join(CLUSTER["setup_commands"])
    assert "--extra gpu" in setup and "--locked" in setup and "--extra cpu" not in setup
    # After the sync, the production shops' vectors are stored on the VM (shop/knowledge/).
    sync = next(i for i, c in enumerate(CLUSTER["setup_commands"]) if "uv sync" in c)
    assert any("shop.knowledge.warm_store --config configs/production-gpu.yaml" in c
               for c in CLUSTER["setup_commands"][sync + 1:])


def test_ray_token_authentication_is_on_for_every_ray_process():
    for kind in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in CLUSTER[kind] if "ray start" in c]
        assert len(starts) == 1, kind
        assert "export RAY_AUTH_MODE=token;" in starts[0]
        # Serve's request path (HAProxy, direct ingress) is read by each Ray process at start.
        # So is the rate-limit Redis password, which the ingress replicas inherit.
        assert ("set -a; . ~/cs-assistant/configs/ray-serve.env; "
                ". ~/.cs-assistant/limits-redis.env; set +a;") in starts[0], kind
        assert starts[0].index("limits-redis.env") < starts[0].index("ray start")
    # The same token on every node, from the operator's machine (never from the repository).
    assert CLUSTER["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    assert any("RAY_AUTH_MODE=token" in c and ".bashrc" in c for c in CLUSTER["setup_commands"])


def test_the_rate_limit_redis_password_reaches_every_node_outside_the_config():
    from configs.schema import APP_NAME, app_config_from_serve_config, load_serve_config
    from tests.conftest import PRODUCTION_CONFIG

    access = app_config_from_serve_config(load_serve_config(PRODUCTION_CONFIG), APP_NAME).access
    env_file = "~/.cs-assistant/limits-redis.env"
    assert CLUSTER["file_mounts"][env_file] == env_file  # from the operator's machine
    assert any("chmod 600" in c and env_file in c for c in CLUSTER["setup_commands"])
    # The variable the file must define is the one the production config reads.
    deploy = section("deploy.md", "Deploy to a GPU cluster")
    assert f"{access.rate_limit_store_password_env}=" in deploy and env_file in deploy


def test_head_hosts_no_model_replica_and_gpu_workers_cover_the_serve_config():
    from configs.schema import load_serve_config
    from tests.conftest import PRODUCTION_CONFIG

    head_start = " ".join(CLUSTER["head_start_ray_commands"])
    assert "--num-gpus=0" in head_start
    deployments = load_serve_config(PRODUCTION_CONFIG)["applications"][0]["deployments"]
    gpu_replicas = [d["autoscaling_config"] for d in deployments
                    if d["ray_actor_options"].get("num_gpus")]
    gpu = CLUSTER["available_node_types"]["gpu_worker"]
    # One GPU per node (g5.2xlarge): every model replica at its maximum finds a node, and the
    # always-on replicas never wait for one.
    assert gpu["max_workers"] >= sum(a["max_replicas"] for a in gpu_replicas)
    assert gpu["min_workers"] >= sum(a["min_replicas"] for a in gpu_replicas)
