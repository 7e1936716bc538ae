"""A CPU engine started by a replica that Ray confined to other cores gets its own cores, and
the replica and vLLM's engine-core process give them back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from model_server.vllm.cpu_placement import engine_cores


@pytest.mark.parametrize("bind, cores", [
    ("1", {1}), ("0-3", {0, 1, 2, 3}), ("0,2", {0, 2}), ("0-1|2-3", {0, 1, 2, 3}),
    ("auto", set()), ("nobind", set()), (None, set()), ("", set()),
])
def test_engine_cores_follow_vllms_bind_syntax(bind, cores):
    assert engine_cores(bind) == cores


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_cores_are_lent_for_the_start_and_then_left_to_the_engine_alone():
    first, second = sorted(os.sched_getaffinity(0))[:2]
    # In a child process: it confines itself to one core as `taskset` would, then starts an
    # "engine" (a child process) inside the placement context.
    script = textwrap.dedent(f"""
        import os, subprocess, sys, threading, time
        from model_server.vllm.cpu_placement import engine_start_placement
        os.sched_setaffinity(0, {{{first}}})
        stop = threading.Event()
        with engine_start_placement("{second}"):
            during = os.sched_getaffinity(0)
            # An engine process with a helper thread, and a thread of the replica's own, both
            # started while the cores are lent.
            engine = subprocess.Popen([sys.executable, "-c", "import threading, time; "
                                       "threading.Thread(target=time.sleep, args=(30,)).start(); "
                                       "time.sleep(30)"])
            helper = threading.Thread(target=stop.wait)
            helper.start()
            time.sleep(1)  # the engine's thread is up
        def union(pid):
            return set().union(*(os.sched_getaffinity(int(t))
                                 for t in os.listdir(f"/proc/{{pid}}/task")))
        print(sorted(during), sorted(union(os.getpid())), sorted(union(engine.pid)))
        stop.set()
        engine.kill()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=os.getcwd()).stdout.split("] [")
    during, after, engine_after = (set(map(int, part.strip("[]\n ").split(", "))) for part in out)
    assert during == {first, second}  # the engine can bind to its core while it starts
    assert after == {first}  # the replica gives it back, on every thread
    assert engine_after == {first}  # and so does the engine-core process, on every thread


def test_nothing_changes_when_the_replica_already_has_the_engine_cores():
    from model_server.vllm.cpu_placement import engine_start_placement

    before = os.sched_getaffinity(0)
    with engine_start_placement(",".join(map(str, before))):
        assert os.sched_getaffinity(0) == before
    assert os.sched_getaffinity(0) == before


def test_ray_gets_every_core_but_the_text_engines():
    from model_server.vllm.cpu_placement import cores_for_ray

    assert cores_for_ray("1", available={0, 1}) == {0}
    assert cores_for_ray("2-3", available={0, 1, 2, 3}) == {0, 1}
    # Nothing to keep free: unbound engine, or an engine bound to every core there is.
    assert cores_for_ray("auto", available={0, 1}) == set()
    assert cores_for_ray("0,1", available={0, 1}) == set()
    assert cores_for_ray("5", available={0, 1}) == set()


def test_run_local_starts_ray_off_the_engine_core_of_its_config():
    from tests.conftest import LOCAL_CONFIG, PROJECT_ROOT

    script = (PROJECT_ROOT / "scripts" / "run-local.sh").read_text()
    assert '.venv/bin/python -m model_server.vllm.cpu_placement "$CONFIG"' in script
    assert 'launcher=(taskset -c "$ray_cores")' in script
    out = subprocess.run([sys.executable, "-m", "model_server.vllm.cpu_placement", str(LOCAL_CONFIG)],
                         capture_output=True, text=True, check=True, cwd=PROJECT_ROOT).stdout
    expected = sorted(os.sched_getaffinity(0) - {1}) if 1 in os.sched_getaffinity(0) else []
    assert out.strip() == ",".join(map(str, expected))
