"""A CPU engine started by a replica that Ray confined to other cores gets its own cores, and
the replica and vLLM's engine-core process give them back afterwards."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from deployments.cpu_placement import engine_cores


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
        import os, subprocess, sys
        from deployments.cpu_placement import engine_start_placement
        os.sched_setaffinity(0, {{{first}}})
        with engine_start_placement("{second}"):
            during = os.sched_getaffinity(0)
            engine = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
        print(sorted(during), sorted(os.sched_getaffinity(0)),
              sorted(os.sched_getaffinity(engine.pid)))
        engine.kill()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True, cwd=os.getcwd()).stdout.split("] [")
    during, after, engine_after = (set(map(int, part.strip("[]\n ").split(", "))) for part in out)
    assert during == {first, second}  # the engine can bind to its core while it starts
    assert after == {first}  # the replica gives it back
    assert engine_after == {first}  # and so does the engine-core process


def test_nothing_changes_when_the_replica_already_has_the_engine_cores():
    from deployments.cpu_placement import engine_start_placement

    before = os.sched_getaffinity(0)
    with engine_start_placement(",".join(map(str, before))):
        assert os.sched_getaffinity(0) == before
    assert os.sched_getaffinity(0) == before
