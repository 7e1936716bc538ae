"""vLLM general plugin: per-process set-up that vLLM's own processes need in this deployment.

vLLM loads `vllm.general_plugins` entry points in the process that creates the engine and in every
engine-core and worker process before the model runs. Registered in pyproject.toml under
[project.entry-points."vllm.general_plugins"]. Two things happen here, both per process:

1. AMX permission (CPU, bf16). bf16 makes vLLM's CPU attention pick an AMX kernel. Linux lets a
   process execute AMX tile instructions only after it asked with `arch_prctl(ARCH_REQ_XCOMP_PERM)`;
   without it the first AMX instruction kills the process with SIGILL (the worker "died
   unexpectedly", exit code -4). oneDNN asks only when its own AMX GEMMs run, which small models
   never trigger, so the first attention call faults. `torch.cpu._init_amx()` makes the request.

2. Die with the parent. The engine core is a child process of the Serve replica. When the replica
   is killed hard (SIGKILL after the graceful-shutdown timeout, `ray stop --force`, a crash), the
   engine core was seen to live on as an orphan holding its memory and cores. PR_SET_PDEATHSIG asks
   the kernel to SIGKILL it when the replica goes. Only multiprocessing children do this: the
   replica itself is a Ray worker and must not tie its life to the raylet's thread.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal

logger = logging.getLogger("cs_assistant.vllm_process_plugin")

_PR_SET_PDEATHSIG = 1


def setup_vllm_process() -> None:
    """The entry point vLLM calls in each of its processes."""
    request_amx_permission()
    if multiprocessing.parent_process() is not None:
        die_with_parent()


def request_amx_permission() -> bool:
    """Ask the kernel for AMX permission in this process; False where AMX is absent."""
    try:
        import torch
    except ImportError:  # pragma: no cover - vLLM always brings torch
        return False
    init_amx = getattr(torch.cpu, "_init_amx", None)
    if init_amx is None:
        return False
    granted = bool(init_amx())
    logger.debug("AMX permission requested: %s", granted)
    return granted


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent exits (Linux; no-op elsewhere)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            logger.warning("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
            return
    except (OSError, AttributeError):
        return
    # The parent may have died between fork and prctl; then the signal will never come.
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)
