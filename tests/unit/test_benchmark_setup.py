"""The benchmark compares like with like: bare `vllm serve` gets exactly the engine arguments and
engine environment of the Serve stack's text model, and the Serve stack runs that model only."""

from __future__ import annotations

from configs.schema import AppConfig
from loadtests.benchmark import MODEL_DIR, TextModelSettings, markdown

SETTINGS = TextModelSettings.load()


def flag(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_serve_stack_runs_only_the_text_model_with_dummy_weights():
    config = SETTINGS.serve_config_for_benchmark(port=12345)
    app = config["applications"][0]
    args = AppConfig.model_validate(app["args"])  # still a valid app config
    (model,) = args.models
    assert model.modality == "text" and model.source == str(MODEL_DIR)
    assert model.engine.load_format == "dummy"
    assert {d["name"] for d in app["deployments"]} == {"Ingress", model.deployment_name}
    assert config["http_options"]["port"] == 12345


def test_bare_vllm_gets_the_same_engine_arguments_and_environment():
    served = AppConfig.model_validate(
        SETTINGS.serve_config_for_benchmark(1)["applications"][0]["args"])
    engine = served.models[0].engine
    command = SETTINGS.vllm_serve_command(port=1)
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert flag(command, "--model") == str(MODEL_DIR)
    assert flag(command, "--served-model-name") == SETTINGS.model.name
    assert int(flag(command, "--max-model-len")) == engine.max_model_len
    assert flag(command, "--dtype") == engine.dtype
    assert int(flag(command, "--max-num-seqs")) == engine.max_num_seqs
    assert flag(command, "--load-format") == engine.load_format == "dummy"
    assert ("--enforce-eager" in command) == engine.enforce_eager
    assert "VLLM_CPU_OMP_THREADS_BIND" in SETTINGS.engine_env


def test_report_table_shows_ratios_and_differences():
    level = dict(concurrency=4, requests=8, failed=0, wall_s=10.0, output_tokens=400,
                 tokens_per_s=40.0, requests_per_s=0.8, ttft_p50_s=0.2, ttft_p99_s=0.5,
                 itl_p50_s=0.05, itl_p99_s=0.1, client_cpu_core_share=0.1, client_cpu_of_busy=0.05)
    bare = {**level, "tokens_per_s": 50.0, "requests_per_s": 1.0, "ttft_p50_s": 0.15}
    tax = {"requests_per_s": 500.0, "p50_ms": 10.0, "p99_ms": 30.0, "requests": 5000,
           "client_cpu_core_share": 0.5}
    table = markdown({"serve": [level], "vllm": [bare],
                      "framework_tax": {"serve": tax, "uvicorn": tax, "concurrency": 8,
                                        "duration_s": 10},
                      "setup": {"model": "Qwen3-0.6B", "engine": {}, "engine_env": {},
                                "output_tokens": 48}})
    row = next(line for line in table.splitlines() if line.startswith("| 4 |"))
    assert "| 40.0 | 50.0 | 0.80 |" in row and "(+50 ms)" in row
    assert "plain uvicorn" in table


def test_both_servers_get_the_same_explicit_sampling():
    """Server-side defaults differ (the ingress applies the config's, vLLM the model's), so the
    benchmark must send them itself."""
    raw_model = next(m for m in SETTINGS.serve_config["applications"][0]["args"]["models"]
                     if m["modality"] == "text")
    assert SETTINGS.sampling() == {"temperature": raw_model["sampling"]["temperature"],
                                   "top_p": raw_model["sampling"]["top_p"]}


def test_serve_side_runs_exactly_one_engine_like_bare_vllm():
    # No autoscaling and no calendar floor: a second engine would start mid-run, on the same
    # cores as the first, while bare vLLM runs one.
    for deployment in SETTINGS.serve_config_for_benchmark(1)["applications"][0]["deployments"]:
        assert "autoscaling_config" not in deployment, deployment["name"]
        assert deployment["num_replicas"] == 1, deployment["name"]


def test_a_level_with_other_than_one_replica_fails_the_run():
    from loadtests.benchmark import replica_problems

    one = {"status": "HEALTHY", "target": 1, "running": 1, "starting": 0}
    assert replica_problems({"Ingress": one, "TextModel": one}) == []
    scaled = {**one, "target": 2, "starting": 1, "status": "UPSCALING"}
    assert replica_problems({"Ingress": one, "TextModel": scaled}) == [f"TextModel: {scaled}"]
