"""A real local stack for integration tests: `serve run` of the local CPU config, with the tiny
random-weight checkpoints of the production architectures as model sources (vLLM CPU engines).

The config is the shipped `configs/local-cpu.yaml` with the port, the model sources and an empty
sales calendar; the shared stack also pins one replica per model, and test_autoscaling.py runs its
own variant (see the variants' docstrings). Everything else is the deployment options users run.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from configs.schema import load_serve_config
from configs.serve_env import load_serve_env
from loadtests.prometheus_api import PrometheusAPI
from loadtests.server_process import ServerProcess, ServerStartError, free_port, url_answers
from shop.orders.intent import recognise
from tests.conftest import LOCAL_CONFIG, PROJECT_ROOT
from tests.order_stack import point_shops_at, set_fault

STARTUP_TIMEOUT_S = 420
# Replicas push metrics to the node's agent every 10 s by default; 1 s keeps tests short.
METRICS_REPORT_INTERVAL_MS = 1000
RAY_SESSION = Path("/tmp/ray/session_latest")
# An ingress replica's line about a chat request in Serve's text format, "<LEVEL> <date> <time>
# <app>_Ingress <replica id> [<request id>] -- request <id> key=..." (router/routes.py).
INGRESS_REQUEST_LINE = re.compile(r"^[A-Z]+ \S+ \S+ \S+_Ingress (?P<replica>\S+) (?:\S+ )?"
                                  r"-- request (?P<request_id>\S+) key=")
TINY_MODELS = {"text": ".models/tiny-qwen3", "vision": ".models/tiny-qwen2.5-vl"}
PROMETHEUS_CONFIGS = PROJECT_ROOT / "configs" / "prometheus"
PROMETHEUS_STARTUP_TIMEOUT_S = 60


def processes() -> list[tuple[int, int, str]]:
    """(pid, parent pid, full command line) of every process on this machine."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True,
                         text=True).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split(None, 2)
        if len(fields) == 3:
            rows.append((int(fields[0]), int(fields[1]), fields[2]))
    return rows


class OrderServiceProcess:
    """The reference order service (order_service/) as its own process on a loopback port,
    for the whole session: every test stack's shops look orders up in it, and the chaos test
    kills, slows and breaks it. Its secrets directory holds the shops' token secrets."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = workdir / "orders.sqlite"
        self.secrets_dir = workdir / "secrets"
        self.log_path = PROJECT_ROOT / ".run" / "integration-order-service.log"
        self.server: ServerProcess | None = None
        self.start(reseed=True)

    def start(self, reseed: bool = False) -> None:
        """Start it (again, on the same port and database after a kill)."""
        self.log_path.parent.mkdir(exist_ok=True)
        command = [sys.executable, "-m", "order_service", "--port", str(self.port),
                   "--db", str(self.db), "--allow-faults", *(["--reseed"] if reseed else [])]
        self.server = ServerProcess("order service", command, self.log_path, PROJECT_ROOT, {})
        try:
            self.server.wait_until_ready(url_answers(f"{self.url}/health"), 60)
        except ServerStartError as exc:
            pytest.fail(str(exc))

    def kill(self) -> None:
        """SIGKILL, as a crashed order system: connections refused until `start`."""
        self.server.process.kill()
        self.server.process.wait()

    def set_fault(self, mode: str, delay_s: float = 5.0) -> None:
        set_fault(self.url, mode, delay_s)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(timeout_s=10)


# The session's order service (the `order_service` fixture starts it before any stack).
ORDER_SERVICE: dict[str, OrderServiceProcess] = {}
# The test stacks' order look-up: short enough that a slow order system costs a test seconds,
# and a breaker that opens and closes within one test.
TEST_ORDER_BACKEND = {"timeout_s": 1.0, "breaker_failures": 3, "breaker_open_s": 3.0}


@pytest.fixture(scope="session", autouse=True)
def order_service(tmp_path_factory) -> OrderServiceProcess:
    service = OrderServiceProcess(tmp_path_factory.mktemp("order-service"))
    ORDER_SERVICE["current"] = service
    yield service
    ORDER_SERVICE.pop("current", None)
    service.stop()


def write_test_config(dest: Path, port: int, customize=None) -> Path:
    """The shipped local config with the test port and tiny models. The sales calendar is
    emptied so the date the suite runs on cannot change replica counts, the shops read
    copies of their knowledge bases beside `dest`, do not guard answers and look orders up in
    the session's order service; `customize(raw)` may change more (the autoscaling tests use
    small bounds)."""
    raw = load_serve_config(LOCAL_CONFIG)
    raw["http_options"]["port"] = port
    app = raw["applications"][0]
    for model in app["args"]["models"]:
        model["source"] = str(PROJECT_ROOT / TINY_MODELS[model["modality"]])
        model["local_substitute"] = None
    for deployment in app["deployments"]:
        policy = deployment.get("autoscaling_config", {}).get("policy")
        if policy:
            policy["policy_kwargs"] = {"events": []}
    # The stack reads copies of the knowledge bases, so a test may edit them while it runs.
    for shop in app["args"].get("shops", {}).get("catalog", []):
        copy = dest.parent / "shops" / shop["id"]
        if not copy.exists():
            shutil.copytree(PROJECT_ROOT / shop["knowledge_base"], copy)
        shop["knowledge_base"] = str(copy)
        # A random-weight model never writes an answer the answer guard passes, and these
        # stacks test serving (sources, caching, faults), not answers. The default shop's guard
        # is off (its answers are cached and replayed as written); the other shop's only flags,
        # which changes nothing a client sees but `service.guard`, so the guard's metrics and
        # dashboard panels have data. It replaces answers, as shipped, in test_run_local.py,
        # where the real stand-in model answers.
        shop["guard"] = {"mode": "off" if shop["id"] == app["args"]["shops"]["default"]
                         else "flag"}
    orders = ORDER_SERVICE.get("current")
    if orders is not None:
        point_shops_at(raw, orders.url, orders.secrets_dir)
        for shop in app["args"].get("shops", {}).get("catalog", []):
            if "orders" in shop:
                shop["orders"]["backend"].update(TEST_ORDER_BACKEND)
    if customize is not None:
        customize(raw)
    dest.write_text(yaml.safe_dump(raw, sort_keys=False))
    return dest


class LocalStack:
    """Handle on the running stack: its URL, log, and the config it was started with."""

    def __init__(self, url: str, log_path: Path, config_path: Path):
        self.url = url
        self.log_path = log_path
        self.config_path = config_path
        self.startup_s: float | None = None

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout)

    def metrics(self) -> dict[tuple[str, frozenset], float]:
        """Samples from Ray's metrics agent on this node: {(name, labels): value}."""
        from prometheus_client.parser import text_string_to_metric_families

        port_files = sorted(RAY_SESSION.glob("metrics_export_port_*"))
        assert port_files, f"no metrics export port file in {RAY_SESSION}"
        port = int(port_files[-1].read_text().strip())
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def metric_sum(self, name: str, **labels: str) -> float:
        """Sum of `name` over all series whose labels include `labels` (e.g. over replicas)."""
        wanted = set(labels.items())
        return sum(value for (sample, series), value in self.metrics().items()
                   if sample == name and wanted <= series)

    def ingress_replicas(self) -> set[str]:
        """Ids of the running ingress replicas, as Serve's status API lists them."""
        from loadtests.serve_status import ServeStatus

        replicas = ServeStatus().application()["deployments"]["Ingress"]["replicas"]
        return {r["replica_id"] for r in replicas if r["state"] == "RUNNING"}

    def ingress_replica_of(self, request_ids, timeout_s: float = 15.0) -> dict[str, str]:
        """{request id: id of the ingress replica that served it}, for /v1/chat/completions
        requests sent with their own X-Request-ID. The ingress logs one line per such request,
        admitted or refused, as it happens; Serve prefixes it with the replica's id and writes
        it to the replica's stderr (`logs/worker-*.err`) and its own file in `logs/serve/`
        (both are read, as loadtests/replica_logs.py does)."""
        wanted, found = set(request_ids), {}
        logs = RAY_SESSION / "logs"
        deadline = time.monotonic() + timeout_s
        while True:
            for path in [*logs.glob("worker-*.err"), *logs.glob("serve/replica_*_Ingress_*.log*")]:
                with path.open(encoding="utf-8", errors="replace") as lines:
                    for line in lines:
                        match = INGRESS_REQUEST_LINE.match(line)
                        if match and match["request_id"] in wanted:
                            replica = found.setdefault(match["request_id"], match["replica"])
                            assert replica == match["replica"], \
                                f"request {match['request_id']} is in two ingress replicas' logs"
            if found.keys() == wanted or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert found.keys() == wanted, f"not in any ingress replica's log: {wanted - found.keys()}"
        return found

    def wait_for_metric(self, name: str, expected: float, timeout_s: float = 15.0,
                        **labels: str) -> float:
        """`metric_sum` once it equals `expected` (replicas export every interval), or its
        value when `timeout_s` runs out."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.metric_sum(name, **labels)
            if value == expected or time.monotonic() > deadline:
                return value
            time.sleep(0.5)


class StackRunner:
    """Runs at most one local stack at a time (one Ray instance per machine): asking for another
    variant stops the running one first. Tests that need their own variant run last."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._bin = Path(sys.executable).parent
        self._running: tuple[str, ServerProcess, LocalStack] | None = None

    def get(self, variant: str, customize=None, env: dict[str, str] | None = None) -> LocalStack:
        """The running stack `variant`, started with `customize(raw_config)` applied and `env`
        added to the environment Ray starts in (its replicas inherit it)."""
        if self._running is not None and self._running[0] == variant:
            return self._running[2]
        self.stop()
        for name, path in TINY_MODELS.items():
            if not (PROJECT_ROOT / path / ".complete").exists():
                pytest.fail(f"{path} missing: run scripts/setup.sh (prepares the {name} model)")
        port = free_port()
        config = write_test_config(self._tmp.mktemp(variant) / "serve-config.yaml", port,
                                   customize)
        log_path = PROJECT_ROOT / ".run" / f"integration-serve-{variant}.log"
        log_path.parent.mkdir(exist_ok=True)
        server = ServerProcess(
            f"serve run ({variant})", [str(self._bin / "serve"), "run", str(config)], log_path,
            PROJECT_ROOT,
            # The request path the product ships with (HAProxy, direct ingress).
            {**load_serve_env(),
             "RAY_metrics_report_interval_ms": str(METRICS_REPORT_INTERVAL_MS), **(env or {})},
        )
        stack = LocalStack(f"http://127.0.0.1:{port}", log_path, config)
        self._running = (variant, server, stack)
        try:
            stack.startup_s = server.wait_until_ready(url_answers(f"{stack.url}/ready"),
                                                      STARTUP_TIMEOUT_S)
        except ServerStartError as exc:
            self.stop()
            pytest.fail(str(exc))
        print(f"\n[integration] {variant} stack ready in {stack.startup_s:.0f}s at {stack.url}")
        return stack

    def stop(self) -> None:
        if self._running is None:
            return
        _, server, _ = self._running
        self._running = None
        server.stop()
        subprocess.run([str(self._bin / "ray"), "stop", "--force"], capture_output=True)


@pytest.fixture(scope="session")
def stacks(tmp_path_factory) -> StackRunner:
    runner = StackRunner(tmp_path_factory)
    try:
        yield runner
    finally:
        runner.stop()


def one_replica_each(raw: dict) -> None:
    """Pin every model to one running replica. On 2 cores a second text engine only shares the
    first one's core, and a cold start would land inside whichever test sends the first image:
    the tests on the shared stack measure serving; test_autoscaling.py measures scaling."""
    for deployment in raw["applications"][0]["deployments"]:
        scaling = deployment.get("autoscaling_config")
        if scaling:
            scaling.update(min_replicas=1, initial_replicas=1, max_replicas=1)


def model_questions(workload: dict) -> dict:
    """The workload (the YAML's dict) without its order questions, which the order desk
    answers (a sign-in reply to these anonymous shoppers) without a model."""
    workload["text_questions"] = [q for q in workload["text_questions"] if recognise(q) is None]
    return workload


REDIS_STARTUP_TIMEOUT_S = 30


@dataclass(frozen=True)
class RedisStore:
    url: str  # without the password: the stack reads it from REDIS_PASSWORD_ENV, as production can
    password: str


REDIS_PASSWORD_ENV = "CS_LIMITS_REDIS_PASSWORD"


@pytest.fixture(scope="session")
def redis_store(tmp_path_factory) -> RedisStore:
    """A real Redis (Debian's redis-server) on a loopback port, without persistence and with a
    password: the shared stack's rate-limit store. Its log is .run/integration-redis.log."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: scripts/setup.sh --test installs it")
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    store = RedisStore(f"redis://127.0.0.1:{port}/0", secrets.token_urlsafe(16))
    # The password goes in a config file, not the command line (visible in `ps`).
    (workdir / "redis.conf").write_text(f"requirepass {store.password}\n")
    server = ServerProcess(
        "redis-server",
        [binary, str(workdir / "redis.conf"), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        PROJECT_ROOT / ".run" / "integration-redis.log", PROJECT_ROOT,
    )

    def answers() -> bool:
        import redis

        try:
            return redis.Redis.from_url(store.url, password=store.password,
                                        socket_timeout=1).ping()
        except redis.RedisError:
            return False

    try:
        try:
            server.wait_until_ready(answers, REDIS_STARTUP_TIMEOUT_S, poll_s=0.2)
        except ServerStartError as exc:
            pytest.fail(str(exc))
        yield store
    finally:
        server.stop(timeout_s=10)


@dataclass(frozen=True)
class StackKey:
    key: str
    entry: dict

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


# The shared stack's API keys: (id, shops, role, limits). The stack also serves requests without
# a key (access.allow_anonymous), so tests that are not about keys send none.
STACK_KEYS = (
    ("widget-apparel", ["demo-apparel"], "widget", {"requests_per_minute": 1000}),
    ("electronics", ["demo-electronics"], "backend", {"requests_per_minute": 1000}),
    ("quiet", "*", "backend", {"requests_per_minute": 1000}),
    ("burst", "*", "backend", {"requests_per_minute": 20}),
    ("tokens", "*", "backend", {"tokens_per_minute": 50}),
    ("streams", "*", "backend", {"concurrent_requests": 1}),
    ("fuzz", "*", "backend", {}),
    ("over-budget", "*", "backend", {"tokens_per_minute": 50}),  # test_prometheus's 429s
    # test_front_door's limits across the two ingress replicas; a request costs 1-2k tokens.
    ("tokens-shared", "*", "backend", {"tokens_per_minute": 12_000}),
    ("tokens-burst", "*", "backend", {"tokens_per_minute": 12_000}),
    ("two-streams", "*", "backend", {"concurrent_requests": 2}),
    ("page-limited", ["demo-apparel"], "widget", {"requests_per_minute": 1}),  # chat page test
)


@pytest.fixture(scope="session")
def stack_keys() -> dict[str, StackKey]:
    from router.access.api_keys import key_entry, new_key

    keys = {}
    for key_id, shops, role, limits in STACK_KEYS:
        key = new_key()
        keys[key_id] = StackKey(key, key_entry(key, key_id, shops, role, limits))
    return keys


def front_door(raw: dict, keys: dict[str, StackKey], redis_url: str, keys_file: Path) -> None:
    """The production front door on the test stack: API keys from a file (anonymous requests
    still served, so other tests need no key), limits counted in a password-protected Redis by
    two ingress replicas (the password from the environment), and image URLs fetched from a CDN
    on loopback (http and loopback allowed here only)."""
    keys_file.write_text(yaml.safe_dump({"keys": [k.entry for k in keys.values()]}))
    app = raw["applications"][0]
    app["args"]["access"] = {"keys_file": str(keys_file), "allow_anonymous": True,
                             "rate_limit_store": redis_url,
                             "rate_limit_store_password_env": REDIS_PASSWORD_ENV,
                             "store_timeout_s": 2.0, "reload_check_s": 1}
    app["args"]["remote_images"] = {"allowed_domains": ["127.0.0.1"], "allow_http": True,
                                    "allowed_networks": ["127.0.0.1/32"]}
    for deployment in app["deployments"]:
        if deployment["name"] == "Ingress":
            deployment["num_replicas"] = 2


@pytest.fixture(scope="session")
def stack(stacks, redis_store, stack_keys, tmp_path_factory) -> LocalStack:
    """The shared stack: the shipped local config with tiny models, one replica per model, and
    the front door of production (`front_door`)."""
    keys_file = tmp_path_factory.mktemp("keys") / "api-keys.yaml"

    def shared(raw: dict) -> None:
        one_replica_each(raw)
        front_door(raw, stack_keys, redis_store.url, keys_file)

    return stacks.get("shared", shared, env={REDIS_PASSWORD_ENV: redis_store.password})


def write_prometheus_config(dest: Path) -> Path:
    """The shipped local scrape config, with 1 s intervals and absolute rule paths."""
    config = yaml.safe_load((PROMETHEUS_CONFIGS / "local.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS_CONFIGS / name) for name in config["rule_files"]]
    dest.write_text(yaml.safe_dump(config, sort_keys=False))
    return dest


@pytest.fixture(scope="session")
def prometheus(stack, prometheus_server) -> PrometheusAPI:
    """Prometheus once it scrapes the shared stack."""
    deadline = time.monotonic() + PROMETHEUS_STARTUP_TIMEOUT_S
    while not any(t["health"] == "up" for t in prometheus_server.targets()):
        if time.monotonic() > deadline:
            pytest.fail("Prometheus has no healthy scrape target")
        time.sleep(1)
    return prometheus_server


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory) -> PrometheusAPI:
    """A real Prometheus server (Debian's package) with the shipped scrape config and SLO
    rules. It scrapes whatever Ray cluster runs on this machine (the targets come from Ray's
    service-discovery file), so it follows the stack variants; its log is
    .run/integration-prometheus.log."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: scripts/setup.sh --test installs Debian's package")
    workdir = tmp_path_factory.mktemp("prometheus")
    config = write_prometheus_config(workdir / "prometheus.yml")
    port = free_port()
    log_path = PROJECT_ROOT / ".run" / "integration-prometheus.log"
    server = ServerProcess(
        "prometheus",
        [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        log_path, PROJECT_ROOT,
    )
    api = PrometheusAPI(f"http://127.0.0.1:{port}")
    try:
        try:
            server.wait_until_ready(api.ready, PROMETHEUS_STARTUP_TIMEOUT_S, poll_s=1.0)
        except ServerStartError as exc:
            pytest.fail(str(exc))
        yield api
    finally:
        server.stop(timeout_s=30)
