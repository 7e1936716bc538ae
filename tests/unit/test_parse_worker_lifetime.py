"""The ingress's body-parsing worker process leaves when its replica is killed
(router/api/parse_offload.py): a SIGKILLed replica cannot shut its pool down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from configs.schema import PROJECT_ROOT

REPLICA = """
import time
from configs.schema import RequestLimits
from router.api.parse_offload import BodyParser
parser = BodyParser(RequestLimits())
parser.start()
while not parser._pool._processes:
    time.sleep(0.05)
print(*parser._pool._processes, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False


def test_the_worker_exits_when_the_replica_that_started_it_is_killed():
    replica = subprocess.Popen([sys.executable, "-c", REPLICA], cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, text=True)
    try:
        worker = int(replica.stdout.readline().split()[0])
        time.sleep(1.0)
        assert alive(worker)  # it runs while its replica does
        replica.send_signal(signal.SIGKILL)
        replica.wait(timeout=10)
        deadline = time.monotonic() + 15
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(worker), f"worker {worker} outlived its killed replica"
    finally:
        replica.kill()
        try:
            os.kill(worker, signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError):
            pass
