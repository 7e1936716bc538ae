"""The Serve config files: valid for Ray Serve's own schema, valid app args, consistent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from configs.schema import AppConfig, app_config_from_serve_config, load_serve_config
from tests.conftest import APP_NAME, LOCAL_CONFIG, PRODUCTION_CONFIG, model_for

CONFIGS = [LOCAL_CONFIG, PRODUCTION_CONFIG]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_valid_for_serve(path):
    schema = ServeDeploySchema.model_validate(load_serve_config(path))
    assert [app.name for app in schema.applications] == [APP_NAME]
    assert schema.applications[0].import_path == "router.app:build_app"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_app_args_and_deployments_agree(path):
    raw = load_serve_config(path)
    config = app_config_from_serve_config(raw, APP_NAME)
    declared = {d["name"] for d in raw["applications"][0]["deployments"]}
    expected = {m.deployment_name for m in config.models} | {config.ingress_deployment_name}
    assert declared == expected
    assert {m.modality for m in config.models} == {"text", "vision"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_real_model_ids(path):
    config = app_config_from_serve_config(load_serve_config(path), APP_NAME)
    assert model_for(config, "text").source == "Qwen/Qwen3-0.6B"
    assert model_for(config, "vision").source == "Qwen/Qwen2.5-VL-3B-Instruct"


def test_production_runs_one_gpu_per_model_replica_and_no_substitutes():
    raw = load_serve_config(PRODUCTION_CONFIG)
    config = app_config_from_serve_config(raw, APP_NAME)
    deployments = {d["name"]: d for d in raw["applications"][0]["deployments"]}
    for model in config.models:
        assert deployments[model.deployment_name]["ray_actor_options"]["num_gpus"] == 1
        assert model.local_substitute is None
        assert model.engine.load_format == "auto"
    assert raw["http_options"]["host"] == "0.0.0.0"


def test_local_binds_loopback_and_pins_engines_to_different_cores():
    raw = load_serve_config(LOCAL_CONFIG)
    assert raw["http_options"]["host"] == "127.0.0.1"
    envs = [d["ray_actor_options"].get("runtime_env", {}).get("env_vars", {})
            for d in raw["applications"][0]["deployments"] if d["name"] != "Ingress"]
    binds = [env["VLLM_CPU_OMP_THREADS_BIND"] for env in envs]
    assert len(set(binds)) == len(binds) == 2
    assert all(env["HF_HUB_OFFLINE"] == "1" and int(env["VLLM_CPU_KVCACHE_SPACE"]) <= 4 for env in envs)  # GiB, allocated at start


def base_args() -> dict:
    return load_serve_config(LOCAL_CONFIG)["applications"][0]["args"]


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda a: a["models"][0].update(typo_field=1), "typo_field"),
        (lambda a: a["models"][0]["engine"].update(max_model_len=0), "max_model_len"),
        (lambda a: a["models"][0]["engine"].update(limit_images_per_prompt=2), "limit_images_per_prompt"),
        (lambda a: a["models"][1]["engine"].update(limit_images_per_prompt=0), "limit_images_per_prompt"),
        (lambda a: a["models"][1].update(modality="text", engine={"max_model_len": 10}), "modalities"),
        (lambda a: a["models"][1].update(name=a["models"][0]["name"]), "unique"),
        (lambda a: a["limits"].update(request_timeout_s=float("inf")), "finite"),
        (lambda a: a["models"][0]["sampling"].update(temperature=5), "temperature"),
    ],
)
def test_bad_app_args_fail_with_a_message(mutate, fragment):
    args = base_args()
    mutate(args)
    with pytest.raises(ValidationError) as err:
        AppConfig.model_validate(args)
    assert fragment in str(err.value)


def model_deployments(path) -> list[tuple]:
    """(model config, its Serve deployment entry) for each model of a shipped config."""
    raw = load_serve_config(path)
    config = app_config_from_serve_config(raw, APP_NAME)
    entries = {d["name"]: d for d in raw["applications"][0]["deployments"]}
    return [(model, entries[model.deployment_name]) for model in config.models]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_the_ingress_queue_is_bounded_and_answers_503_with_retry_after(path):
    raw = load_serve_config(path)
    app = raw["applications"][0]
    ingress = next(d for d in app["deployments"]
                   if d["name"] == app["args"].get("ingress_deployment_name", "Ingress"))
    assert 0 < ingress["max_queued_requests"] <= ingress["max_ongoing_requests"]
    assert ingress["backpressure_config"] == {"status_code": 503, "retry_after_s": 5}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_model_pool_autoscales_with_a_bounded_queue_answered_by_429(path):
    from ray.serve.config import AutoscalingConfig

    for model, entry in model_deployments(path):
        # Building Serve's own object also imports and pickles the custom policy, as a deploy does.
        scaling = AutoscalingConfig(**entry["autoscaling_config"])
        assert scaling.policy.policy_function == (
            "model_server.autoscaling_policy:SalesCalendarPolicy")
        assert scaling.max_replicas > scaling.min_replicas
        assert entry["max_queued_requests"] > 0
        assert entry["backpressure_config"]["status_code"] == 429
        assert entry["backpressure_config"]["retry_after_s"] >= 1
        # Admitted requests run in the engine's batch instead of waiting, unseen, inside it.
        assert scaling.target_ongoing_requests <= entry["max_ongoing_requests"]
        assert entry["max_ongoing_requests"] <= model.engine.max_num_seqs
        if model.modality == "text":
            assert scaling.min_replicas >= 1  # text is always answered without a cold start
        else:
            assert scaling.min_replicas == 0  # vision scales to zero off-peak
            assert model.replica_wait.retry_after_s >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_sales_calendar_is_shared_valid_and_within_replica_bounds(path):
    from model_server.autoscaling_policy import SalesCalendarPolicy

    pairs = model_deployments(path)
    calendars = [entry["autoscaling_config"]["policy"]["policy_kwargs"]["events"]
                 for _, entry in pairs]
    assert all(calendar == calendars[0] for calendar in calendars)
    events = SalesCalendarPolicy(calendars[0]).events
    assert events
    limits = {entry["name"]: entry["autoscaling_config"]["max_replicas"] for _, entry in pairs}
    for event in events:
        assert set(event.min_replicas) <= set(limits), event.name
        for deployment, floor in event.min_replicas.items():
            assert 1 <= floor <= limits[deployment], (event.name, deployment)
