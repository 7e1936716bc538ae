"""The benchmark compares like with like: bare `vllm serve` gets exactly the engine arguments and
engine environment of the Serve stack's text model, and the Serve stack runs that model only."""

from __future__ import annotations

import json
import re

from configs.schema import PROJECT_ROOT, AppConfig
from loadtests.bench_report import markdown
from loadtests.benchmark import BENCHMARK_TIMEOUT_S, MODEL_DIR, VARIANTS, TextModelSettings
from tests.docs_pages import section

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
    assert args.shops is not None  # the shop workload's stack
    # Every shop message reaches the model, as every bare-vLLM request does: no curated
    # answers, no response cache (the workload repeats its messages at every level).
    assert args.shops.response_cache.enabled is False
    assert not any(shop.curated_answers.enabled for shop in args.shops.catalog)
    assert not any(shop.curated_answers.enabled for shop in SETTINGS.app_config().shops.catalog)
    # Bare vLLM has no request limit: Serve's must not cut off slow answers either.
    assert args.limits.request_timeout_s == BENCHMARK_TIMEOUT_S
    # Nor give up on a request that waits for a free engine slot, as bare vLLM never does.
    assert args.models[0].replica_wait.timeout_s >= BENCHMARK_TIMEOUT_S - 60
    assert config["http_options"]["request_timeout_s"] == BENCHMARK_TIMEOUT_S


def test_plain_workload_stack_has_no_shop_layer_and_variants_change_only_their_lever():
    plain = SETTINGS.serve_config_for_benchmark(1, with_shops=False)
    assert "shops" not in plain["applications"][0]["args"]
    off = SETTINGS.serve_config_for_benchmark(1, variant=VARIANTS["no-prefix-cache"])
    (model,) = off["applications"][0]["args"]["models"]
    assert model["engine"]["extra_engine_kwargs"] == {"enable_prefix_caching": False}
    baseline = SETTINGS.serve_config_for_benchmark(1)
    (model,) = baseline["applications"][0]["args"]["models"]
    assert "enable_prefix_caching" not in model["engine"].get("extra_engine_kwargs", {})


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


def _level(concurrency=4, **changes):
    level = dict(concurrency=concurrency, requests=8, failed=0, wall_s=10.0, output_tokens=400,
                 prompt_tokens=900, tokens_per_s=40.0, requests_per_s=0.8, ttft_p50_s=0.2,
                 ttft_p99_s=0.5, itl_p50_s=0.05, itl_p99_s=0.1, client_cpu_core_share=0.1,
                 client_cpu_of_busy=0.05,
                 cores_by_role={"vLLM worker (model compute)": 1.0, "Serve proxy": 0.1})
    return {**level, **changes}


def _results():
    hop = {"requests_per_s": 500.0, "p50_ms": 10.0, "p99_ms": 30.0, "requests": 5000,
           "client_cpu_core_share": 0.5, "cores_by_role": {}}
    workload = {"serve": {"baseline": [_level(1), _level(16, tokens_per_s=30.0)],
                          "shipped": [_level(1), _level(16, tokens_per_s=49.0)]},
                "bare": [_level(1, tokens_per_s=50.0, ttft_p50_s=0.15),
                         _level(16, tokens_per_s=50.0, itl_p99_s=0.05)],
                "replicas": {}}
    return {"setup": {"date": "2026-11-26", "quick": False, "model": "Qwen3-0.6B", "engine": {},
                      "engine_env": {}, "output_tokens": 48, "sampling": {},
                      "concurrency": [1, 16], "requests_per_level": 8,
                      "machine": {"cpus": 2, "cpu_model": "x", "memory_gib": 24,
                                  "python": "3.11", "kernel": "6"},
                      "versions": {"ray": "2.60.0"},
                      "variants": {"baseline": {"description": "defaults"},
                                   "shipped": {"description": "ours: HAProxy"}},
                      "workloads": {"shop": "the shop's prompts"}},
            "workloads": {"shop": workload},
            "hops": {"baseline": {"/health": {"1": hop, "16": hop}},
                     "plain uvicorn": {"/health": {"1": hop, "16": {**hop, "requests_per_s": 2000.0}}}}}


def test_report_shows_each_variant_against_the_same_bare_run():
    table = markdown(_results())
    summary = [line for line in table.splitlines() if line.startswith("| shop |")]
    assert summary == ["| shop | baseline | 0.80 | 0.60 |", "| shop | shipped | 0.80 | 0.98 |"]
    row = next(line for line in table.splitlines() if line.startswith("| 1 | 40.0 / 50.0 |"))
    assert "(+50 ms)" in row
    assert "| 16 | 30.0 / 50.0 | 0.60 |" in table and "(2.00) |" in table  # ITL p99 ratio
    assert "plain uvicorn" in table and "`shipped`: ours: HAProxy" in table
    assert "| vLLM worker (model compute) | 1.00 |" in table


def test_benchmark_page_table_is_replaced_between_its_markers(tmp_path):
    from loadtests import bench_report

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "results.json").write_text(json.dumps(_results()))
    page = tmp_path / "benchmarks.md"
    page.write_text(f"intro\n{bench_report.TABLE_START}\nold table\n"
                    f"{bench_report.TABLE_END}\nafter\n")
    bench_report.update_benchmark_page(folder, page)
    text = page.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("after\n")
    assert "| shop | before (Serve defaults) | 0.80 | 0.60 | +50 ms / n/a | 2.00 |" in text
    assert "| shop | after (shipped) | 0.80 | 0.98 |" in text
    assert "plain uvicorn 2000 req/s" in text


def test_benchmark_page_table_is_the_one_its_run_generates():
    """docs/benchmarks.md's table is generated: it must equal what bench_report writes from the
    results.json of the run it names (an edit by hand, or a new run not regenerated, fails)."""
    from loadtests import bench_report

    text = bench_report.BENCHMARK_PAGE.read_text()
    assert text.count(bench_report.TABLE_START) == 1 and text.count(bench_report.TABLE_END) == 1
    table = text[text.index(bench_report.TABLE_START) + len(bench_report.TABLE_START):
                 text.index(bench_report.TABLE_END)].strip("\n")
    assert table in section("benchmarks.md", "Benchmark against bare vLLM")
    folder = re.match(r"From `([^`]+)/`", table)[1]
    results = json.loads((PROJECT_ROOT / folder / "results.json").read_text())
    assert table == bench_report.summary_table(results, folder)


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
