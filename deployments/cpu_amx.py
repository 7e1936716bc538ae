"""vLLM general plugin: let vLLM processes execute AMX instructions on CPU before they need them.

Why: with bf16 on a CPU with AMX, vLLM's CPU attention picks an AMX kernel. Linux lets a process
execute AMX tile instructions only after it asked for the permission with
`arch_prctl(ARCH_REQ_XCOMP_PERM)`; without it the first AMX instruction kills the process with
SIGILL (the worker "died unexpectedly", exit code -4). oneDNN asks only when its own AMX GEMMs run,
which small models never trigger, so the first attention call faults. `torch.cpu._init_amx()` makes
that request. vLLM loads `vllm.general_plugins` entry points in the engine core and in every worker
process before the model runs, which is exactly where the permission is needed (it is per process).

Registered in pyproject.toml under [project.entry-points."vllm.general_plugins"].
"""

from __future__ import annotations

import logging

logger = logging.getLogger("cs_assistant.cpu_amx")


def request_amx_permission() -> None:
    """Ask the kernel for AMX permission in this process; a no-op where AMX is absent or on GPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover - vLLM always brings torch
        return
    init_amx = getattr(torch.cpu, "_init_amx", None)
    if init_amx is None:
        logger.debug("torch.cpu._init_amx not available; skipping AMX permission request")
        return
    granted = bool(init_amx())
    logger.debug("AMX permission requested: %s", granted)
