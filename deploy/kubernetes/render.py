r"""Render deploy/kubernetes/rayservice.yaml, the KubeRay RayService of the production application.

The manifest is generated, never edited by hand, so that it cannot drift from what it deploys:

- serveConfigV2 is the text of configs/production-gpu.yaml, embedded byte for byte (comments,
  anchors and all): `serve deploy` on the VM cluster and KubeRay on Kubernetes run one config;
- the GPU worker group's minReplicas/maxReplicas are computed from that config's model
  deployments (their autoscaling bounds times the GPUs each replica asks for);
- every Ray container gets the environment of configs/ray-serve.env (read with the same parser
  the integration tests and the benchmark use);
- the image tag and rayVersion come from pyproject.toml.

Usage (from the repository root, with the project's environment):
    .venv/bin/python deploy/kubernetes/render.py            # rewrite rayservice.yaml
    .venv/bin/python deploy/kubernetes/render.py --check    # exit 1 if it is stale
    .venv/bin/python deploy/kubernetes/render.py --output - \
        --image-repository ghcr.io/acme/cs-assistant \
        --gcs-redis-address redis.example.internal:6379     # a deployable copy, on stdout

tests/unit/test_kubernetes_manifest.py checks that the committed rayservice.yaml is this
script's current output, and checks the manifest against the vendored KubeRay CRD and against
the Serve config with its own arithmetic.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tomllib
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make `configs` importable
    sys.path.insert(0, str(PROJECT_ROOT))

from configs.schema import APP_NAME, app_config_from_serve_config  # noqa: E402
from configs.serve_env import SERVE_ENV_FILE, load_serve_env  # noqa: E402

SERVE_CONFIG = PROJECT_ROOT / "configs" / "production-gpu.yaml"
PYPROJECT = PROJECT_ROOT / "pyproject.toml"
MANIFEST = Path(__file__).resolve().parent / "rayservice.yaml"

# Deliberately NOT a valid image reference (`<` and `>` are not allowed in one): a manifest
# applied without choosing a registry fails with InvalidImageName instead of pulling whatever
# someone might publish under a guessable organisation name. Render with --image-repository.
PLACEHOLDER_REPOSITORY = "ghcr.io/<placeholder-org>/cs-assistant"

# One NVIDIA A10G (24 GB) per GPU pod, as cluster.yaml's g5.2xlarge workers: the engine settings
# (gpu_memory_utilization 0.9, VisionModel's max_model_len 16384) are sized for it.
GPUS_PER_WORKER = 1
GPU_INSTANCE_TYPE = "g5.2xlarge"

# Secrets the manifest reads; created by hand (docs/deploy.md "Deploy on Kubernetes"), never
# committed.
RAY_TOKEN_SECRET = "cs-assistant-ray-token"  # key `auth_token`: the name KubeRay requires
GCS_REDIS_SECRET = "cs-assistant-gcs-redis"  # key `password`
API_KEYS_SECRET = "cs-assistant-api-keys"  # key = the keys file's name
LIMITS_REDIS_SECRET = "cs-assistant-limits-redis"  # key `password`: access.rate_limit_store's

# The Redis that keeps the GCS tables across head restarts (a placeholder host, as the
# production config's rate-limit store is; render with --gcs-redis-address). Not the rate-limit
# Redis of access.rate_limit_store: GCS data must never be evicted and must persist (AOF), while
# the rate-limit counters are disposable and take a write on every request.
GCS_REDIS_ADDRESS = "cs-assistant-gcs.internal:6379"


def project_version() -> str:
    return tomllib.loads(PYPROJECT.read_text())["project"]["version"]


def ray_version() -> str:
    """The version of the `ray` requirement pinned in pyproject.toml (ray[serve]==X)."""
    from packaging.requirements import Requirement

    for text in tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]:
        requirement = Requirement(text)
        if requirement.name == "ray":
            (spec,) = requirement.specifier
            if spec.operator != "==":
                raise ValueError(f"pyproject.toml must pin ray exactly, got {text!r}")
            return spec.version
    raise ValueError("pyproject.toml has no ray requirement")


def _replicas(deployment: dict[str, Any], bound: str) -> int:
    autoscaling = deployment.get("autoscaling_config")
    if autoscaling:
        return int(autoscaling[bound])
    return int(deployment.get("num_replicas", 1))


def gpu_worker_bounds(serve_config: dict[str, Any]) -> tuple[int, int]:
    """(minReplicas, maxReplicas) of the GPU worker group: every model replica at its bound on
    its own GPUs. The Ray autoscaler only adds a pod when Serve asks for a replica that does not
    fit, so the maximum is a ceiling, not a cost."""
    low = high = 0.0
    for app in serve_config["applications"]:
        for deployment in app.get("deployments", []):
            gpus = float(deployment.get("ray_actor_options", {}).get("num_gpus", 0))
            if gpus:
                low += gpus * _replicas(deployment, "min_replicas")
                high += gpus * _replicas(deployment, "max_replicas")
    return math.ceil(low / GPUS_PER_WORKER), math.ceil(high / GPUS_PER_WORKER)


def termination_grace_s(serve_config: dict[str, Any]) -> int:
    """A worker pod's termination grace: the longest graceful shutdown of any deployment plus
    30 s for Ray to stop."""
    longest = max(d.get("graceful_shutdown_timeout_s", 20)  # Serve's default
                  for d in serve_config["applications"][0]["deployments"])
    return int(longest) + 30


def _block(text: str, indent: int) -> str:
    """`text` as the body of a YAML literal block scalar at `indent` spaces."""
    if "\t" in text or text[:1].isspace() or not text.endswith("\n") or text.endswith("\n\n"):
        raise ValueError("the Serve config must start unindented, hold no tabs and end with "
                         "exactly one newline to embed as a literal block")
    pad = " " * indent
    return "".join(pad + line if line.strip() else "\n" for line in text.splitlines(True))


def _env(env: dict[str, str], indent: int, secrets: dict[str, tuple[str, str]] | None = None,
         ) -> str:
    """Container env entries: plain values, then `secrets` ({name: (Secret, key)}) by reference,
    so a password is never inline in the manifest."""
    pad = " " * indent
    text = "".join(f"{pad}- name: {name}\n{pad}  value: {json.dumps(value)}\n"
                   for name, value in env.items())
    return text + "".join(
        f"{pad}- name: {name}\n{pad}  valueFrom:\n{pad}    secretKeyRef: "
        f"{{name: {secret}, key: {key}}}\n" for name, (secret, key) in (secrets or {}).items())


TEMPLATE = """\
# GENERATED by deploy/kubernetes/render.py from configs/production-gpu.yaml, configs/ray-serve.env
# and pyproject.toml: do not edit. Change those files (or render.py), then run
#   .venv/bin/python deploy/kubernetes/render.py
# tests/unit/test_kubernetes_manifest.py fails while this file is not the script's output.
#
# KubeRay RayService (ray.io/v1, CRD of KubeRay v1.7.0 in crd/) running the production Serve
# application on one Ray cluster: a CPU head and autoscaled one-GPU worker pods, the Kubernetes
# form of cluster.yaml. docs/deploy.md "Deploy on Kubernetes" has the whole sequence.
# For Kubernetes 1.35, the release KubeRay v1.7.0's end-to-end tests run on: the tests validate
# the pod templates below and networkpolicy.yaml against that release's API schema.
#
# Image: @@IMAGE@@ (tag: pyproject.toml's version).
# The committed manifest names a placeholder repository, on purpose not a valid image reference
# (nothing can be pulled by mistake). Build and push deploy/kubernetes/Dockerfile under your own
# name, then apply the output of
#   render.py --image-repository ghcr.io/<your-org>/cs-assistant \\
#             --gcs-redis-address HOST:PORT --output -
#
# Secrets read here (create them first, never commit them):
#   @@RAY_TOKEN_SECRET@@ (key auth_token)     Ray token authentication of every Ray process
#   @@GCS_REDIS_SECRET@@ (key password)       the Redis that keeps the GCS across head restarts
#   @@API_KEYS_SECRET@@  (key @@KEYS_NAME@@)   the API keys file (access.keys_file)
#   @@LIMITS_REDIS_SECRET@@ (key password)  the rate-limit Redis (access.rate_limit_store)
apiVersion: ray.io/v1
kind: RayService
metadata:
  name: cs-assistant
  labels:
    app.kubernetes.io/name: cs-assistant
    app.kubernetes.io/version: "@@VERSION@@"
spec:
  # Clients reach the Serve port through the Service KubeRay makes, cs-assistant-serve-svc:@@SERVE_PORT@@,
  # which selects pods whose Serve proxy is healthy. The head is kept out of it: it runs no
  # ingress replica (num-cpus 0 below), so its HAProxy would only add a hop, and a head restart
  # would cut every stream passing through it. Worker pods answer while the head restarts.
  excludeHeadPodFromServeSvc: true
  # The Serve config is configs/production-gpu.yaml, verbatim. KubeRay submits it through the
  # head's dashboard (port 8265, with the Ray token) and re-applies it when it changes, without
  # a new Ray cluster. Scaling options change without restarting engines, as with `serve deploy`.
  serveConfigV2: |
@@SERVE_CONFIG@@
  rayClusterConfig:
    # Must equal the Ray of the image (the locked ray[serve] of pyproject.toml / uv.lock).
    rayVersion: "@@RAY_VERSION@@"
    # The Ray autoscaler (a sidecar of the head pod) adds GPU worker pods when Serve asks for
    # replicas that do not fit, and removes pods idle for 10 minutes: cluster.yaml's
    # idle_timeout_minutes. Conservative is cluster.yaml's upscaling_speed 1.0 (at most as many
    # pending pods as running ones); the sales calendar raises floors 45-60 minutes ahead.
    enableInTreeAutoscaling: true
    autoscalerOptions:
      upscalingMode: Conservative
      idleTimeoutSeconds: 600
      resources:
        requests: {cpu: 500m, memory: 1Gi}
        limits: {cpu: "1", memory: 1Gi}
      securityContext:
        allowPrivilegeEscalation: false
        capabilities: {drop: [ALL]}
    # Ray token authentication (Ray >= 2.52): KubeRay sets RAY_AUTH_MODE=token and RAY_AUTH_TOKEN
    # from this Secret in every Ray container, so GCS, dashboard, jobs API and Ray client calls
    # without the token are refused (ShadowRay, CVE-2023-48022), as cluster.yaml does on VMs.
    # A named Secret rather than one KubeRay generates per RayCluster: the token stays the same
    # when an upgrade replaces the cluster, and operators know where to read it.
    authOptions:
      mode: token
      secretName: @@RAY_TOKEN_SECRET@@
    # GCS fault tolerance: the GCS keeps its tables (actors, placement groups, the Serve
    # controller's checkpoint of applications and replicas) in an external Redis. When the head
    # pod restarts, worker pods keep running and serving (KubeRay gives their raylets 600 s to
    # reconnect), and the new head's GCS and Serve controller take the running replicas back.
    gcsFaultToleranceOptions:
      redisAddress: "@@GCS_REDIS_ADDRESS@@"
      redisPassword:
        valueFrom:
          secretKeyRef:
            name: @@GCS_REDIS_SECRET@@
            key: password
    headGroupSpec:
      rayStartParams:
        # The Serve config's model deployments each ask for num_gpus 1 and the Ingress for
        # num_cpus 1; neither asks for a custom resource, so a custom "head" resource would
        # change nothing. Zero GPUs keeps model replicas off the head (cluster.yaml: --num-gpus=0),
        # and zero CPUs keeps the Ingress replicas off it too (unlike cluster.yaml's head): a
        # head restart then takes no replica with it. The Serve controller and proxy need no CPU.
        num-cpus: "0"
        num-gpus: "0"
        # Unlike cluster.yaml (127.0.0.1), the dashboard must listen on the pod IP: the KubeRay
        # operator submits the Serve config and reads its status through it. Token auth guards it.
        dashboard-host: "0.0.0.0"
        metrics-export-port: "8080"
      template:
        metadata:
          labels:
            app.kubernetes.io/name: cs-assistant
            app.kubernetes.io/component: ray-head
        spec:
          # The image's user (uid 1000, group 100: the Ray base image's `ray` user). fsGroup makes
          # the mounted Secret readable by it without making it world-readable.
          securityContext:
            runAsNonRoot: true
            runAsUser: 1000
            runAsGroup: 100
            fsGroup: 100
          containers:
            - name: ray-head
              image: "@@IMAGE@@"
              imagePullPolicy: IfNotPresent
              # configs/ray-serve.env: read by every Ray process when it starts (HAProxy on the
              # Serve port, direct ingress, gRPC between replicas), so it is set on every node.
              env:
@@ENV@@
              ports:
                - {name: gcs-server, containerPort: 6379}
                - {name: dashboard, containerPort: 8265}
                - {name: serve, containerPort: @@SERVE_PORT@@}
                - {name: metrics, containerPort: 8080}
                # The Ray client (10001) is not used: not published on the head Service.
              # GCS, dashboard, Serve controller, HAProxy, the app build. The head of cluster.yaml
              # is an m6i.2xlarge (8 vCPU, 32 GiB); this leaves room for the autoscaler sidecar.
              resources:
                requests: {cpu: "4", memory: 16Gi, ephemeral-storage: 20Gi}
                limits: {cpu: "4", memory: 16Gi, ephemeral-storage: 30Gi}
              # Ray's unified node health endpoint on the dashboard agent (raylet, and on the
              # head the GCS too); public even with token auth. KubeRay's own defaults for Ray
              # >= 2.53, written out. Liveness tolerates 10 minutes of failure (a GCS waiting
              # for Redis) before restarting the head.
              readinessProbe:
                httpGet: {path: /api/healthz, port: 52365}
                initialDelaySeconds: 10
                periodSeconds: 5
                timeoutSeconds: 5
                failureThreshold: 10
              livenessProbe:
                httpGet: {path: /api/healthz, port: 52365}
                initialDelaySeconds: 30
                periodSeconds: 5
                timeoutSeconds: 5
                failureThreshold: 120
              securityContext:
                allowPrivilegeEscalation: false
                capabilities: {drop: [ALL]}
              volumeMounts:
                # access.keys_file is @@KEYS_FILE@@. The
                # Secret is mounted as a directory (not subPath) so that a changed Secret reaches
                # the file, which the ingress re-reads within reload_check_s.
                - name: api-keys
                  mountPath: @@KEYS_DIR@@
                  readOnly: true
          volumes:
            - name: api-keys
              secret:
                secretName: @@API_KEYS_SECRET@@
                defaultMode: 0440
                items:
                  - {key: @@KEYS_NAME@@, path: @@KEYS_NAME@@}
    workerGroupSpecs:
      # One GPU per pod, one model replica per GPU (every model deployment asks for num_gpus 1).
      # minReplicas = the model deployments' min_replicas (TextModel's always-on replicas are
      # always placed); maxReplicas = the sum of their max_replicas, as cluster.yaml's max_workers.
      - groupName: gpu-worker
        replicas: @@MIN_WORKERS@@
        minReplicas: @@MIN_WORKERS@@
        maxReplicas: @@MAX_WORKERS@@
        # Ray's CPUs, GPUs and memory come from the container's limits below.
        rayStartParams: {}
        template:
          metadata:
            labels:
              app.kubernetes.io/name: cs-assistant
              app.kubernetes.io/component: gpu-worker
          spec:
            # A drained node (scale-down, node upgrade) lets Serve finish the replicas' streams:
            # longer than the longest graceful_shutdown_timeout_s in the Serve config (the
            # Kubernetes default, 30 s, would cut them).
            terminationGracePeriodSeconds: @@TERMINATION_GRACE_S@@
            securityContext:
              runAsNonRoot: true
              runAsUser: 1000
              runAsGroup: 100
              fsGroup: 100
            # The engines are sized for an A10G (24 GB); nvidia.com/gpu alone would accept any
            # GPU. GPU node pools are usually tainted so that nothing else lands on them.
            nodeSelector:
              node.kubernetes.io/instance-type: @@GPU_INSTANCE_TYPE@@
            tolerations:
              - {key: nvidia.com/gpu, operator: Exists, effect: NoSchedule}
            # Spread over zones where possible (cluster.yaml uses two): a zone outage then does not
            # take both always-on text replicas.
            topologySpreadConstraints:
              - maxSkew: 1
                topologyKey: topology.kubernetes.io/zone
                whenUnsatisfiable: ScheduleAnyway
                labelSelector:
                  matchLabels:
                    app.kubernetes.io/name: cs-assistant
                    app.kubernetes.io/component: gpu-worker
            containers:
              - name: ray-worker
                image: "@@IMAGE@@"
                imagePullPolicy: IfNotPresent
                # configs/ray-serve.env, and the rate-limit Redis password from its Secret
                # (access.rate_limit_store_password_env): the ingress replicas run on these pods.
                env:
@@WORKER_ENV@@
                ports:
                  - {name: serve, containerPort: @@SERVE_PORT@@}
                  - {name: metrics, containerPort: 8080}
                # A g5.2xlarge has 8 vCPU and 32 GiB; this is what is left after the kubelet and
                # daemon sets. 6 CPUs = one model replica (num_cpus 4) + two Ingress replicas
                # (num_cpus 1 each), which run on the GPU pods since the head has no CPU for them.
                # Requests equal limits (Guaranteed QoS): a GPU pod is the last to be evicted.
                resources:
                  requests: {cpu: "6", memory: 26Gi, nvidia.com/gpu: "@@GPUS_PER_WORKER@@", ephemeral-storage: 50Gi}
                  limits: {cpu: "6", memory: 26Gi, nvidia.com/gpu: "@@GPUS_PER_WORKER@@", ephemeral-storage: 60Gi}
                # Ready = this pod's HAProxy on the Serve port has an ingress replica to forward
                # to (Serve's /-/healthz; it fails as soon as Serve drains the node, so
                # failureThreshold 1 takes the pod out of cs-assistant-serve-svc at once). This is
                # what KubeRay's default readiness probe checks on RayService workers.
                readinessProbe:
                  httpGet: {path: /-/healthz, port: @@SERVE_PORT@@}
                  initialDelaySeconds: 10
                  periodSeconds: 5
                  timeoutSeconds: 2
                  failureThreshold: 1
                # Alive = the raylet answers. Not the model: Serve replaces a failed replica
                # itself (health_check_period_s), and an engine loading weights for minutes must
                # not get its pod restarted.
                livenessProbe:
                  httpGet: {path: /api/healthz, port: 52365}
                  initialDelaySeconds: 30
                  periodSeconds: 5
                  timeoutSeconds: 2
                  failureThreshold: 120
                securityContext:
                  allowPrivilegeEscalation: false
                  capabilities: {drop: [ALL]}
                volumeMounts:
                  - name: api-keys
                    mountPath: @@KEYS_DIR@@
                    readOnly: true
                  # Model weights, downloaded from the Hugging Face hub when a replica first starts
                  # on this pod (Qwen3-0.6B ~1.5 GB, Qwen2.5-VL-3B ~7.5 GB), counted against the
                  # pod's ephemeral storage instead of filling the node's image layer.
                  - name: hf-cache
                    mountPath: /home/ray/.cache/huggingface
            volumes:
              - name: api-keys
                secret:
                  secretName: @@API_KEYS_SECRET@@
                  defaultMode: 0440
                  items:
                    - {key: @@KEYS_NAME@@, path: @@KEYS_NAME@@}
              - name: hf-cache
                emptyDir: {sizeLimit: 40Gi}
"""


def render(image_repository: str = PLACEHOLDER_REPOSITORY,
           gcs_redis_address: str = GCS_REDIS_ADDRESS) -> str:
    """The manifest text for the current configs (the committed one with the defaults)."""
    import yaml

    serve_text = SERVE_CONFIG.read_text(encoding="utf-8")
    serve_config = yaml.safe_load(serve_text)
    app = app_config_from_serve_config(serve_config, APP_NAME)  # the deploy-time validation
    if not app.access.keys_file or not app.access.keys_file.startswith("/"):
        raise ValueError("the production config's access.keys_file must be an absolute path")
    keys_file = Path(app.access.keys_file)
    if not app.access.rate_limit_store_password_env:
        raise ValueError("the production config's access.rate_limit_store_password_env must "
                         "name the rate-limit Redis password's variable (set from a Secret)")
    worker_secrets = {app.access.rate_limit_store_password_env: (LIMITS_REDIS_SECRET, "password")}
    min_workers, max_workers = gpu_worker_bounds(serve_config)
    env = load_serve_env(SERVE_ENV_FILE)
    version = project_version()
    values = {
        "IMAGE": f"{image_repository}:{version}",
        "VERSION": version,
        "RAY_VERSION": ray_version(),
        "SERVE_CONFIG": _block(serve_text, 4).rstrip("\n"),
        "SERVE_PORT": str(serve_config["http_options"]["port"]),
        "ENV": _env(env, 16).rstrip("\n"),
        "WORKER_ENV": _env(env, 18, worker_secrets).rstrip("\n"),
        "MIN_WORKERS": str(min_workers),
        "TERMINATION_GRACE_S": str(termination_grace_s(serve_config)),
        "MAX_WORKERS": str(max_workers),
        "GPUS_PER_WORKER": str(GPUS_PER_WORKER),
        "GPU_INSTANCE_TYPE": GPU_INSTANCE_TYPE,
        "RAY_TOKEN_SECRET": RAY_TOKEN_SECRET,
        "GCS_REDIS_SECRET": GCS_REDIS_SECRET,
        "GCS_REDIS_ADDRESS": gcs_redis_address,
        "API_KEYS_SECRET": API_KEYS_SECRET,
        "LIMITS_REDIS_SECRET": LIMITS_REDIS_SECRET,
        "KEYS_FILE": str(keys_file),
        "KEYS_DIR": str(keys_file.parent),
        "KEYS_NAME": keys_file.name,
    }
    text = TEMPLATE
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    if "@@" in text:
        raise ValueError(f"unfilled placeholder in the template: {text[text.index('@@'):][:40]}")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-repository", default=PLACEHOLDER_REPOSITORY,
                        help="image name without tag (default: the committed placeholder)")
    parser.add_argument("--gcs-redis-address", default=GCS_REDIS_ADDRESS,
                        help="host:port of the GCS fault-tolerance Redis (default: placeholder)")
    parser.add_argument("--output", default=str(MANIFEST),
                        help="file to write, or - for stdout (default: %(default)s)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the committed manifest is stale")
    args = parser.parse_args(argv)
    text = render(args.image_repository, args.gcs_redis_address)
    if args.check:
        if (args.image_repository, args.gcs_redis_address) != (PLACEHOLDER_REPOSITORY,
                                                                GCS_REDIS_ADDRESS):
            parser.error("--check compares the committed manifest: no other options")
        current = MANIFEST.read_text(encoding="utf-8") if MANIFEST.exists() else ""
        if current != text:
            print(f"{MANIFEST.relative_to(PROJECT_ROOT)} is stale: run "
                  f"deploy/kubernetes/render.py", file=sys.stderr)
            return 1
        return 0
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
