"""loadtests/cpu_decode.py: each variant is the shipped text engine with one setting changed."""

from __future__ import annotations

from configs.schema import PROJECT_ROOT, app_config_from_serve_config, load_serve_config
from loadtests.cpu_decode import VARIANTS, shipped_engine


def test_the_shipped_variant_is_the_local_config_text_engine():
    kwargs, env, sampling = shipped_engine()
    serve_config = load_serve_config(PROJECT_ROOT / "configs" / "local-cpu.yaml")
    app = app_config_from_serve_config(serve_config, serve_config["applications"][0]["name"])
    engine = next(m for m in app.models if m.modality == "text").engine
    assert (kwargs["dtype"], kwargs["max_model_len"], kwargs["enforce_eager"]) == (
        engine.dtype, engine.max_model_len, engine.enforce_eager)
    assert kwargs["load_format"] == "dummy"  # no weights to download
    assert "VLLM_CPU_OMP_THREADS_BIND" in env and "VLLM_CPU_KVCACHE_SPACE" in env
    assert VARIANTS["shipped"][1:] == ({}, {})


def test_every_other_variant_changes_something_the_shipped_engine_has():
    kwargs, env, sampling = shipped_engine()
    known = set(kwargs) | set(env) | set(sampling)
    for name, (_, engine_over, env_over) in VARIANTS.items():
        if name == "shipped":
            continue
        changed = set(engine_over) | set(env_over)
        assert changed and changed <= known, name
        assert any({**kwargs, **env, **sampling}[k] != v
                   for k, v in {**engine_over, **env_over}.items()), name
