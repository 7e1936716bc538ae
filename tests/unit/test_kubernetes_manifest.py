"""deploy/kubernetes/: the KubeRay RayService of the production application and its image.

The manifest is checked against the KubeRay CRD vendored at the pinned release (no download),
and against the Serve config it deploys with this file's own arithmetic, not render.py's. The
core objects (the NetworkPolicies, the RayService's pod templates) are checked against the API
schema of the pinned Kubernetes release, from the kubernetes-validate package (no download).
Nothing here needs Kubernetes, Docker or Ray.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from configs.schema import APP_NAME, app_config_from_serve_config, load_serve_config
from configs.serve_env import load_serve_env
from tests.conftest import PRODUCTION_CONFIG, PROJECT_ROOT
from tests.docs_pages import section

KUBE_DIR = PROJECT_ROOT / "deploy" / "kubernetes"
MANIFEST_PATH = KUBE_DIR / "rayservice.yaml"
CRD_PATH = KUBE_DIR / "crd" / "ray.io_rayservices-v1.7.0.yaml"
DOCKERFILE = KUBE_DIR / "Dockerfile"
# `git rev-parse v1.7.0:ray-operator/config/crd/bases/ray.io_rayservices.yaml` in
# ray-project/kuberay (tag v1.7.0 = commit 59d663aeec13760646da3db9c1cf8cfe883e30b7).
CRD_GIT_BLOB = "7ee63d6ddd11237a5649e04b3a8db3c52074c867"
KUBERAY_VERSION = "v1.7.0"
# The Kubernetes release the manifests are for: the one KubeRay v1.7.0's end-to-end tests run on
# (ci/kind-config-buildkite.yml at tag v1.7.0: kindest/node:v1.35.0). Named in the manifests'
# headers; kubernetes-validate ships its API schema.
KUBERNETES_VERSION = "1.35"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD is 1 MB of YAML


def _load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


MANIFEST = _load(MANIFEST_PATH.read_text(encoding="utf-8"))
CLUSTER = MANIFEST["spec"]["rayClusterConfig"]
HEAD = CLUSTER["headGroupSpec"]
HEAD_CONTAINER = HEAD["template"]["spec"]["containers"][0]
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
SERVE_CONFIG = load_serve_config(PRODUCTION_CONFIG)
DEPLOYMENTS = {d["name"]: d for d in SERVE_CONFIG["applications"][0]["deployments"]}
SERVE_PORT = SERVE_CONFIG["http_options"]["port"]


def gpu_group() -> dict:
    groups = [g for g in CLUSTER["workerGroupSpecs"]
              if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]]
    assert len(groups) == 1, "expected exactly one GPU worker group"
    return groups[0]


def ray_containers() -> list[tuple[str, dict]]:
    """(where, container) of every container the manifest declares (head and worker groups)."""
    found = [(f"head/{c['name']}", c) for c in HEAD["template"]["spec"]["containers"]]
    for group in CLUSTER["workerGroupSpecs"]:
        found += [(f"{group['groupName']}/{c['name']}", c)
                  for c in group["template"]["spec"]["containers"]]
    return found


def pod_specs() -> list[tuple[str, dict]]:
    return [("head", HEAD["template"]["spec"])] + [
        (g["groupName"], g["template"]["spec"]) for g in CLUSTER["workerGroupSpecs"]]


def quantity(value: str | int) -> float:
    """A Kubernetes CPU or count quantity ("500m", "6", 1) as a number."""
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def gpu_deployments() -> list[dict]:
    return [d for d in DEPLOYMENTS.values() if d.get("ray_actor_options", {}).get("num_gpus")]


# --- The CRD's OpenAPI v3 schema as JSON Schema -------------------------------------------------

def crd_json_schema(crd: dict, version: str = "v1") -> dict:
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version]
    assert served["served"] and served["storage"]
    return to_json_schema(served["schema"]["openAPIV3Schema"])


def to_json_schema(node: Any) -> Any:
    """Kubernetes structural schema -> JSON Schema, as the API server applies it with strict
    field validation (kubectl's default): unknown fields are errors, except under
    x-kubernetes-preserve-unknown-fields; int-or-string accepts both; nullable allows null.
    Other x-kubernetes-* keys (list types, CEL rules) are the server's business and dropped."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: to_json_schema(value) for key, value in node.items()
           if not key.startswith("x-kubernetes-")}
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    if (node.get("type") == "object" and "properties" in node
            and "additionalProperties" not in node
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


CRD = _load(CRD_PATH.read_text(encoding="utf-8"))
SCHEMA = crd_json_schema(CRD)
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def schema_errors(document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in VALIDATOR.iter_errors(document)]


def core_schema_errors(document: dict) -> list[str]:
    """Errors of a core Kubernetes object against the API schema of KUBERNETES_VERSION, in
    strict mode: unknown fields refused, as the API server's strict field validation (kubectl's
    default) does. The schema files ship inside kubernetes-validate; nothing is downloaded."""
    try:
        used = kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"]
    # The package falls back to an older release's schema when it lacks the one asked for.
    assert used == KUBERNETES_VERSION, f"validated against Kubernetes {used}"
    return []


# --- The manifest is generated and matches the pinned CRD ---------------------------------------

def load_render_module():
    spec = importlib.util.spec_from_file_location("kubernetes_render", KUBE_DIR / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_manifest_is_the_current_output_of_render_py():
    render = load_render_module()
    assert MANIFEST_PATH.read_text(encoding="utf-8") == render.render(), (
        "deploy/kubernetes/rayservice.yaml is stale: run "
        ".venv/bin/python deploy/kubernetes/render.py")


def test_vendored_crd_is_kuberay_v1_7_0_rayservice_byte_for_byte():
    data = CRD_PATH.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    assert blob == CRD_GIT_BLOB
    assert CRD["metadata"]["name"] == "rayservices.ray.io"
    assert CRD["spec"]["names"]["kind"] == MANIFEST["kind"] == "RayService"
    assert MANIFEST["apiVersion"] == f"{CRD['spec']['group']}/v1"


def test_manifest_is_valid_for_the_rayservice_crd_schema():
    assert schema_errors(MANIFEST) == []


@pytest.mark.parametrize("mutate, expected", [
    # A misspelt field, which Kubernetes' strict field validation refuses.
    (lambda m: m["spec"]["rayClusterConfig"]["workerGroupSpecs"][0].update(maxReplica=3),
     "maxReplica"),
    (lambda m: m["spec"]["rayClusterConfig"]["authOptions"].update(mode="tokens"), "tokens"),
    (lambda m: m["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["template"]["spec"]
     ["containers"][0]["resources"]["limits"].update({"nvidia.com/gpu": "one"}), "one"),
    (lambda m: m["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]
     ["containers"][0]["env"].append({"name": "X", "value": 1}), "1"),
])
def test_schema_validation_rejects_what_the_api_server_would(mutate, expected):
    # Guards the conversion above: a validator that accepted anything would pass the test above.
    broken = copy.deepcopy(MANIFEST)
    mutate(broken)
    errors = schema_errors(broken)
    assert errors and any(expected in error for error in errors), errors


def pod_template(where: str, template: dict) -> dict:
    """A RayService pod template as the core PodTemplate object KubeRay makes pods from."""
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": where},
            "template": template}


def test_pod_templates_are_valid_for_the_pinned_kubernetes_release():
    # The CRD embeds the pod schema of the Kubernetes API KubeRay was built with (newer than the
    # cluster's), so a field the cluster's API server does not know could pass the CRD check.
    templates = [("head", HEAD["template"])] + [
        (g["groupName"], g["template"]) for g in CLUSTER["workerGroupSpecs"]]
    for where, template in templates:
        assert core_schema_errors(pod_template(where, template)) == [], where


def test_pod_template_check_refuses_an_unknown_field():
    template = copy.deepcopy(HEAD["template"])
    template["spec"]["containers"][0]["resources"]["limit"] = {"cpu": "1"}
    errors = core_schema_errors(pod_template("head", template))
    assert errors and "'limit' was unexpected" in errors[0], errors


def test_manifests_name_the_pinned_kubernetes_release():
    for path in (MANIFEST_PATH, KUBE_DIR / "networkpolicy.yaml"):
        assert f"Kubernetes {KUBERNETES_VERSION}" in path.read_text(encoding="utf-8"), path.name


# --- The Serve application is the production config ---------------------------------------------

def test_serve_config_v2_is_the_production_serve_config():
    embedded = _load(MANIFEST["spec"]["serveConfigV2"])
    assert embedded["applications"] == SERVE_CONFIG["applications"]
    assert embedded["http_options"]["port"] == SERVE_PORT
    assert embedded == SERVE_CONFIG
    # And what KubeRay submits passes the application's own deploy-time validation.
    app_config_from_serve_config(embedded, APP_NAME)


def test_ray_version_and_image_follow_pyproject():
    (ray,) = [Requirement(r) for r in PYPROJECT["project"]["dependencies"]
              if Requirement(r).name == "ray"]
    assert CLUSTER["rayVersion"] == str(ray.specifier).removeprefix("==")
    expected = f"ghcr.io/<placeholder-org>/cs-assistant:{PYPROJECT['project']['version']}"
    for where, container in ray_containers():
        assert container["image"] == expected, where


# --- Placement and scaling agree with the Serve config ------------------------------------------

def test_head_has_no_gpu_and_hosts_no_replica():
    params = HEAD["rayStartParams"]
    assert params["num-gpus"] == "0"
    for _, container in [(w, c) for w, c in ray_containers() if w.startswith("head/")]:
        for kind in ("requests", "limits"):
            assert not any("gpu" in name for name in container["resources"].get(kind, {}))
    # No custom resource on the head: the Serve config asks for none, so it could only attract
    # replicas that name it. Every deployment asks for CPUs the head does not advertise.
    assert "resources" not in params and not HEAD.get("resources")
    assert params["num-cpus"] == "0"
    for name, deployment in DEPLOYMENTS.items():
        options = deployment.get("ray_actor_options", {})
        assert not options.get("resources"), name
        assert options.get("num_cpus", 1) > 0 or options.get("num_gpus", 0) > 0, name


def test_gpu_worker_group_bounds_cover_every_model_replica():
    group = gpu_group()
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    gpus_per_pod = quantity(limits["nvidia.com/gpu"])
    assert gpus_per_pod == 1
    models = gpu_deployments()
    assert {d["name"] for d in models} == {"TextModel", "VisionModel"}
    gpus_at_max = sum(d["ray_actor_options"]["num_gpus"] * d["autoscaling_config"]["max_replicas"]
                      for d in models)
    gpus_at_min = sum(d["ray_actor_options"]["num_gpus"] * d["autoscaling_config"]["min_replicas"]
                      for d in models)
    assert group["maxReplicas"] * gpus_per_pod >= gpus_at_max  # 16 = 12 text + 4 vision
    assert group["minReplicas"] * gpus_per_pod >= gpus_at_min  # TextModel's 2 always placed
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # Not more than the cluster launcher's ceiling either: both deployments cost the same.
    cluster = yaml.safe_load((PROJECT_ROOT / "cluster.yaml").read_text())
    assert group["maxReplicas"] == cluster["available_node_types"]["gpu_worker"]["max_workers"]
    assert CLUSTER["enableInTreeAutoscaling"] is True


def test_the_sales_calendar_floors_fit_in_the_gpu_worker_group():
    floors = {}
    for deployment in gpu_deployments():
        policy = deployment["autoscaling_config"].get("policy", {})
        for event in policy.get("policy_kwargs", {}).get("events", []):
            floors.setdefault(event["name"], 0)
            floors[event["name"]] += (event["min_replicas"].get(deployment["name"], 0)
                                      * deployment["ray_actor_options"]["num_gpus"])
    assert floors, "the production config has a sales calendar"
    assert max(floors.values()) <= gpu_group()["maxReplicas"]


def test_every_replica_fits_on_a_gpu_worker_pod():
    # The head advertises no CPU (num-cpus 0), so Ingress replicas run on the GPU pods too.
    resources = gpu_group()["template"]["spec"]["containers"][0]["resources"]
    cpus = quantity(resources["limits"]["cpu"])
    assert quantity(resources["requests"]["cpu"]) == cpus  # Ray counts the limit
    model_cpus = max(d["ray_actor_options"]["num_cpus"] for d in gpu_deployments())
    assert model_cpus <= cpus
    # One model replica per pod (one GPU each); the Ingress replicas share what it leaves.
    ingress = DEPLOYMENTS["Ingress"]
    assert not ingress["ray_actor_options"].get("num_gpus")
    per_pod = (cpus - model_cpus) // ingress["ray_actor_options"]["num_cpus"]
    group = gpu_group()
    # Always-on Ingress replicas on the always-on pods; at the maximum, all of them somewhere.
    assert ingress["autoscaling_config"]["min_replicas"] <= group["minReplicas"] * per_pod
    assert ingress["autoscaling_config"]["max_replicas"] <= group["maxReplicas"] * per_pod


def test_gpu_pods_request_one_gpu_and_land_on_gpu_nodes():
    spec = gpu_group()["template"]["spec"]
    resources = spec["containers"][0]["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"
    assert spec["nodeSelector"]["node.kubernetes.io/instance-type"].startswith(("g", "p"))
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])


# --- Exposure, fault tolerance, authentication --------------------------------------------------

def test_serve_port_and_dashboard_port_are_exposed():
    head_ports = {p["name"]: p["containerPort"] for p in HEAD_CONTAINER["ports"]}
    assert head_ports["serve"] == SERVE_PORT  # KubeRay's Services find the port by this name
    assert head_ports["dashboard"] == 8265  # the operator submits serveConfigV2 through it
    assert head_ports["gcs-server"] == 6379
    assert HEAD["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    for group in CLUSTER["workerGroupSpecs"]:
        ports = {p["name"]: p["containerPort"]
                 for p in group["template"]["spec"]["containers"][0]["ports"]}
        assert ports["serve"] == SERVE_PORT, group["groupName"]
    # Client traffic only through the workers, which keep serving while the head restarts.
    assert MANIFEST["spec"]["excludeHeadPodFromServeSvc"] is True


def test_gcs_fault_tolerance_uses_an_external_redis_with_a_password_from_a_secret():
    ft = CLUSTER["gcsFaultToleranceOptions"]
    assert ft.get("backend", "redis") == "redis"
    host, _, port = ft["redisAddress"].removeprefix("redis://").rpartition(":")
    assert host and port.isdigit()
    access = app_config_from_serve_config(SERVE_CONFIG, APP_NAME).access
    assert host not in (access.rate_limit_store or "")  # not the rate-limit counters' Redis
    password = ft["redisPassword"]
    assert "value" not in password  # never inline in the manifest
    secret = password["valueFrom"]["secretKeyRef"]
    assert secret["name"] and secret["key"]
    # KubeRay refuses the older ways of passing it alongside gcsFaultToleranceOptions.
    assert "redis-password" not in HEAD["rayStartParams"]
    assert "ray.io/ft-enabled" not in MANIFEST["metadata"].get("annotations", {})
    names = {e["name"] for e in HEAD_CONTAINER["env"]}
    assert not names & {"REDIS_PASSWORD", "RAY_REDIS_ADDRESS"}


def test_ingress_pods_get_the_rate_limit_redis_password_from_a_secret():
    access = app_config_from_serve_config(SERVE_CONFIG, APP_NAME).access
    assert access.rate_limit_store and access.rate_limit_store_password_env
    assert "@" not in access.rate_limit_store  # no credentials in the URL
    # Ingress replicas run where there are CPUs for them: the head has none (num-cpus 0).
    assert HEAD["rayStartParams"]["num-cpus"] == "0"
    container = gpu_group()["template"]["spec"]["containers"][0]
    (entry,) = [e for e in container["env"] if e["name"] == access.rate_limit_store_password_env]
    assert "value" not in entry  # never inline in the manifest
    secret = entry["valueFrom"]["secretKeyRef"]
    assert secret["name"] and secret["key"] and not secret.get("optional")


def test_ray_token_authentication_is_enabled():
    auth = CLUSTER["authOptions"]
    assert auth["mode"] == "token"
    assert auth["secretName"] and not auth.get("enableK8sTokenAuth")  # unsupported for RayService
    major, minor, *_ = map(int, CLUSTER["rayVersion"].split("."))
    assert (major, minor) >= (2, 52)  # the first Ray KubeRay allows token auth with
    for where, container in ray_containers():
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env.get("RAY_AUTH_MODE", "token") == "token", where  # no override


# --- Every container --------------------------------------------------------------------------

def test_every_container_has_resource_requests_limits_and_probes():
    for where, container in ray_containers():
        resources = container["resources"]
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(resources[kind]), (where, kind)
        assert quantity(resources["requests"]["cpu"]) <= quantity(resources["limits"]["cpu"])
        for probe in ("readinessProbe", "livenessProbe"):
            action = container[probe]
            assert action.get("httpGet") or action.get("exec") or action.get("tcpSocket"), \
                (where, probe)
            assert action["periodSeconds"] and action["failureThreshold"], (where, probe)
    autoscaler = CLUSTER["autoscalerOptions"]["resources"]
    assert {"cpu", "memory"} <= set(autoscaler["requests"]) <= set(autoscaler["limits"])


def test_worker_probes_check_the_serve_proxy_and_the_raylet():
    container = gpu_group()["template"]["spec"]["containers"][0]
    ready = container["readinessProbe"]["httpGet"]
    assert (ready["path"], ready["port"]) == ("/-/healthz", SERVE_PORT)
    live = container["livenessProbe"]
    assert live["httpGet"]["path"] == "/api/healthz"  # the node, not a model
    # Never restart a pod while an engine loads weights (minutes): 10 minutes of failures.
    assert live["periodSeconds"] * live["failureThreshold"] >= 600


def test_every_ray_container_gets_the_ray_serve_env():
    expected = load_serve_env()
    assert expected  # HAProxy, throughput mode, ...
    for where, container in ray_containers():
        env = {e["name"]: e.get("value") for e in container["env"]}
        for name, value in expected.items():
            assert env.get(name) == value, (where, name)


def test_api_keys_secret_is_mounted_where_the_production_config_reads_it():
    keys_file = Path(app_config_from_serve_config(SERVE_CONFIG, APP_NAME).access.keys_file)
    for where, spec in pod_specs():
        volumes = {v["name"]: v for v in spec["volumes"]}
        container = spec["containers"][0]
        mounts = [m for m in container["volumeMounts"]
                  if "secret" in volumes[m["name"]]]
        paths = set()
        for mount in mounts:
            assert "subPath" not in mount, where  # a subPath never sees the Secret change
            secret = volumes[mount["name"]]["secret"]
            for item in secret["items"]:
                paths.add(Path(mount["mountPath"]) / item["path"])
        assert keys_file in paths, where
        assert all(m.get("readOnly") for m in mounts), where


def test_pods_run_as_a_non_root_user():
    for where, spec in pod_specs():
        context = spec["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, where


# --- The image --------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        if not current and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        current += raw.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        lines.append(current)
        current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in lines]


INSTRUCTIONS = dockerfile_instructions()


def test_dockerfile_base_image_pins_the_locked_ray_and_python_3_11():
    (base,) = [args for op, args in INSTRUCTIONS if op == "FROM"]
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py(\d)(\d+)-cu(\d+)", base)
    assert match, base
    assert match.group(1) == CLUSTER["rayVersion"]  # = pyproject's ray[serve] pin
    python = f"{match.group(2)}.{match.group(3)}"
    requires = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert python == "3.11" and f"{python}.0" in requires and f"{python}.99" in requires
    # The CUDA of the locked torch wheels (nvidia-cuda-runtime 13.x).
    lock = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
    runtime = {p["version"].split(".")[0] for p in lock["package"]
               if p["name"] == "nvidia-cuda-runtime"}
    assert match.group(4)[:-1] in runtime, (match.group(4), runtime)


def test_dockerfile_installs_the_locked_gpu_set_with_the_pinned_uv():
    setup = (PROJECT_ROOT / "scripts" / "setup.sh").read_text()
    uv_version = re.search(r"^UV_VERSION=(\S+)$", setup, re.M).group(1)
    assert ("ARG", f"UV_VERSION={uv_version}") in INSTRUCTIONS
    assert any(op == "RUN" and '"uv==${UV_VERSION}"' in args for op, args in INSTRUCTIONS)
    syncs = [shlex.split(args) for op, args in INSTRUCTIONS if op == "RUN" and "uv sync" in args]
    assert syncs
    for words in syncs:
        assert "--locked" in words and "--no-dev" in words
        assert words[words.index("--extra") + 1] == "gpu" and words.count("--extra") == 1


def test_dockerfile_copies_exactly_what_the_application_needs():
    copied = set()
    for op, args in INSTRUCTIONS:
        if op == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            copied.update(w.rstrip("/") for w in words[:-1])
    packages = set(PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    # The project (pyproject + lock, and the readme its metadata names) and its packages.
    assert copied == packages | {"pyproject.toml", "uv.lock", PYPROJECT["project"]["readme"]}
    # The knowledge bases the production shops read are inside a copied package.
    for shop in SERVE_CONFIG["applications"][0]["args"]["shops"]["catalog"]:
        assert Path(shop["knowledge_base"]).parts[0] in copied, shop["id"]
    # And the build context sends them (everything else is ignored).
    ignore = [line.strip() for line in
              (KUBE_DIR / "Dockerfile.dockerignore").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"
    for name in copied:
        assert f"!{name}" in ignore or f"!{name}/" in ignore, name


def test_dockerfile_bakes_the_production_shops_vectors_where_the_pods_read_them():
    env = dict(args.split("=", 1) for op, args in INSTRUCTIONS if op == "ENV" and "=" in args
               and " " not in args)
    store = env["CS_ASSISTANT_CACHE_DIR"]
    (workdir,) = [args for op, args in INSTRUCTIONS if op == "WORKDIR"]
    assert store.startswith(workdir + "/")  # the non-root user's, writable at run time
    warm = [i for i, (op, args) in enumerate(INSTRUCTIONS)
            if op == "RUN" and "shop.knowledge.warm_store" in args]
    assert len(warm) == 1
    op, args = INSTRUCTIONS[warm[0]]
    assert shlex.split(args)[-2:] == ["--config", "configs/production-gpu.yaml"]
    # After the environment is on PATH (`python` is the locked one) and the store is named.
    names = [(op, args) for op, args in INSTRUCTIONS[:warm[0]] if op == "ENV"]
    assert any("PATH=/home/ray/cs-assistant/.venv/bin" in args for _, args in names)
    assert any(args.startswith("CS_ASSISTANT_CACHE_DIR=") for _, args in names)


def test_dockerfile_runs_as_a_non_root_user():
    users = [args for op, args in INSTRUCTIONS if op == "USER"]
    final = users[-1].split(":")[0]
    assert final not in ("root", "0") and final.isdigit(), users  # numeric: runAsNonRoot checks it
    for where, spec in pod_specs():
        assert spec["securityContext"]["runAsUser"] == int(final), where


# --- The deploy page's Kubernetes section (docs/deploy.md) -------------------------------------

def kubernetes_section() -> str:
    return section("deploy.md", "Deploy on Kubernetes")


def test_deploy_page_creates_every_secret_and_pins_the_operator():
    text = kubernetes_section()
    secrets = {CLUSTER["authOptions"]["secretName"],
               CLUSTER["gcsFaultToleranceOptions"]["redisPassword"]["valueFrom"]
               ["secretKeyRef"]["name"]}
    for _, spec in pod_specs():
        secrets |= {v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        secrets |= {e["valueFrom"]["secretKeyRef"]["name"] for e in spec["containers"][0]["env"]
                    if "secretKeyRef" in e.get("valueFrom", {})}
    for name in secrets:
        assert re.search(rf"kubectl (-n \S+ )?create secret generic {re.escape(name)}\b", text), \
            name
    assert f"--version {KUBERAY_VERSION.removeprefix('v')}" in text  # the CRD's release
    assert f"Kubernetes {KUBERNETES_VERSION} cluster" in text  # the API schema's release


def test_a_drained_gpu_pod_gives_serve_its_graceful_shutdown():
    # Kubernetes' default grace (30 s) is shorter than the replicas' graceful_shutdown_timeout_s
    # (60 s): a drained node would cut the streams Serve is finishing.
    grace = gpu_group()["template"]["spec"]["terminationGracePeriodSeconds"]
    longest = max(d["graceful_shutdown_timeout_s"] for d in DEPLOYMENTS.values()
                  if "graceful_shutdown_timeout_s" in d)
    assert longest == 60 and grace >= longest + 30


# --- NetworkPolicies ---------------------------------------------------------------------------

POLICIES = list(yaml.safe_load_all((KUBE_DIR / "networkpolicy.yaml").read_text()))


def pod_labels() -> dict[str, dict[str, str]]:
    """The labels of each pod template of the RayService: head and worker groups."""
    labels = {"head": HEAD["template"]["metadata"]["labels"]}
    for group in CLUSTER["workerGroupSpecs"]:
        labels[group["groupName"]] = group["template"]["metadata"]["labels"]
    return labels


def selects(selector: dict, labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, selector  # matchExpressions would need more here
    return selector["matchLabels"].items() <= labels.items()


def allowed_ports(pod: str, source: str) -> set[int] | None:
    """Ports of `pod` open to clients matching `source` ("ray-pod" or a namespace name), or
    None for every port. Policies are additive, as Kubernetes applies them."""
    ports: set[int] = set()
    for policy in POLICIES:
        if not selects(policy["spec"]["podSelector"], pod_labels()[pod]):
            continue
        for rule in policy["spec"]["ingress"]:
            for peer in rule["from"]:
                if source == "ray-pod":
                    match = "podSelector" in peer and "namespaceSelector" not in peer and \
                        selects(peer["podSelector"], pod_labels()["head"])
                else:
                    names = peer.get("namespaceSelector", {}).get("matchLabels", {})
                    match = names.get("kubernetes.io/metadata.name") == source
                if match:
                    if "ports" not in rule:
                        return None
                    ports |= {p["port"] for p in rule["ports"]}
    return ports


def test_network_policies_are_well_formed_and_select_every_ray_pod():
    assert {p["kind"] for p in POLICIES} == {"NetworkPolicy"}
    assert {p["apiVersion"] for p in POLICIES} == {"networking.k8s.io/v1"}
    for policy in POLICIES:
        spec = policy["spec"]
        assert spec["policyTypes"] == ["Ingress"]  # egress: weights download, both Redis
        for rule in spec["ingress"]:
            assert rule["from"], policy["metadata"]["name"]  # never "from anywhere"
            for port in rule.get("ports", []):
                assert port["protocol"] == "TCP" and isinstance(port["port"], int)
    for pod, labels in pod_labels().items():
        assert any(selects(p["spec"]["podSelector"], labels) for p in POLICIES), pod


@pytest.mark.parametrize("index", range(len(POLICIES)))
def test_network_policy_is_valid_for_the_pinned_kubernetes_schema(index):
    assert core_schema_errors(POLICIES[index]) == [], POLICIES[index]["metadata"]["name"]


def _rename(node: dict, old: str, new: str) -> None:
    node[new] = node.pop(old)


@pytest.mark.parametrize("mutate, expected", [
    # Misspelt fields: dropped silently by a lenient client, refused by strict validation.
    (lambda p: _rename(p["spec"], "podSelector", "podSelecter"), "'podSelecter' was unexpected"),
    (lambda p: _rename(p["spec"], "policyTypes", "policyType"), "'policyType' was unexpected"),
    (lambda p: _rename(p["spec"]["ingress"][0]["from"][0], "podSelector", "podselector"),
     "'podselector' was unexpected"),
    (lambda p: p["metadata"].update(label={"a": "b"}), "'label' was unexpected"),
    # Wrong types and values.
    (lambda p: p["spec"]["ingress"][1]["ports"][0].update(port=[8080]), "is not valid under"),
    (lambda p: p["spec"].update(policyTypes="Ingress"), "is not of type 'array'"),
    (lambda p: p.update(kind="NetworkPolicies"), "NetworkPolicies"),
], ids=["podSelecter", "policyType", "peer-podselector", "metadata-label", "port-list",
        "policyTypes-string", "kind-plural"])
def test_network_policy_schema_check_refuses_what_the_api_server_would(mutate, expected):
    # Guards the check above: a validator that accepted anything would pass it too.
    broken = copy.deepcopy(POLICIES[0])
    mutate(broken)
    try:
        errors = core_schema_errors(broken)
    except kubernetes_validate.SchemaNotFoundError as missing:  # a kind with no schema at all
        errors = [missing.message]
    assert errors and expected in errors[0], errors


def test_ray_pods_reach_each_other_on_every_port():
    for pod in pod_labels():
        assert allowed_ports(pod, "ray-pod") is None, pod


def test_outside_clients_reach_only_their_port_on_their_pods():
    serve = SERVE_PORT
    dashboard = next(p["containerPort"] for p in HEAD_CONTAINER["ports"] if p["name"] == "dashboard")
    metrics = int(HEAD["rayStartParams"]["metrics-export-port"])
    # The operator's namespace is the one step 1 of docs/deploy.md installs it into.
    operator_ns = re.search(r"helm install kuberay-operator .*\n\s+--namespace (\S+)",
                            kubernetes_section())[1]
    assert allowed_ports("head", operator_ns) == {dashboard}
    (dashboard_rule,) = [rule for p in POLICIES for rule in p["spec"]["ingress"]
                         if dashboard in {port["port"] for port in rule.get("ports", [])}]
    (peer,) = dashboard_rule["from"]  # the operator's pods, not its whole namespace
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "kuberay-operator"}
    assert allowed_ports("gpu-worker", operator_ns) == set()
    assert allowed_ports("gpu-worker", "ingress-nginx") == {serve}
    assert allowed_ports("head", "ingress-nginx") == set()  # excludeHeadPodFromServeSvc
    for pod in pod_labels():
        assert allowed_ports(pod, "monitoring") == {metrics}, pod
        assert allowed_ports(pod, "some-other-namespace") == set(), pod
    # The worker containers publish the ports the policies open.
    worker = gpu_group()["template"]["spec"]["containers"][0]
    assert {serve, metrics} <= {p["containerPort"] for p in worker["ports"]}


def test_deploy_page_applies_the_network_policies():
    assert ("kubectl -n cs-assistant apply -f deploy/kubernetes/networkpolicy.yaml"
            in kubernetes_section())
