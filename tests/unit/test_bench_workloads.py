"""The benchmark sends both servers the same prompts: the shop workload's bare-vLLM bodies are the
shop layer's own prompt for the shopper's messages; and the CPU profile names each process by its
part in the request path."""

from __future__ import annotations

import yaml

from loadtests import process_cpu
from loadtests.bench_workloads import EVAL_MESSAGES, plain_workload, shop_workload
from loadtests.benchmark import TextModelSettings

SETTINGS = TextModelSettings.load()
SAMPLING = {"temperature": 0.3, "top_p": 0.8}


def test_shop_workload_sends_shoppers_messages_to_serve_and_the_built_prompt_to_vllm():
    workload = shop_workload(SETTINGS.app_config(), "m", 48, SAMPLING)
    assert len(workload.requests) >= 50
    shops = {r.serve_headers["X-Shop-Id"] for r in workload.requests}
    assert shops == {"demo-apparel", "demo-electronics"}
    for r in workload.requests:
        serve, bare = r.serve_body, r.bare_body
        # The shopper's own turns go to Serve; vLLM gets the system prompt the shop adds.
        assert serve["messages"][0]["role"] == "user"
        assert bare["messages"][0]["role"] == "system"
        assert bare["messages"][-1] == serve["messages"][-1]
        same = {k: v for k, v in serve.items() if k != "messages"}
        assert same == {k: v for k, v in bare.items() if k != "messages"}
        assert same["chat_template_kwargs"] == {"enable_thinking": False}
        assert same["max_tokens"] == 48 and same["temperature"] == 0.3
    # Persona and facts make the prompt long, as in production.
    assert sorted(workload.prompt_chars)[len(workload.prompt_chars) // 2] > 500
    assert any(len(r.serve_body["messages"]) > 1 for r in workload.requests)  # multi-turn too
    chinese = [r for r in workload.requests
               if any("\u4e00" <= ch <= "\u9fff" for ch in r.serve_body["messages"][-1]["content"])]
    assert 0 < len(chinese) < len(workload.requests)


def test_shop_workload_leaves_out_messages_answered_without_the_model():
    workload = shop_workload(SETTINGS.app_config(), "m", 48, SAMPLING)
    sent = [r.serve_body["messages"] for r in workload.requests]
    cases = yaml.safe_load(EVAL_MESSAGES.read_text(encoding="utf-8"))["cases"]
    handed_off = [c["messages"] for c in cases if c["expected_handoff"] in ("requested", "complaint")]
    assert handed_off and not any(messages in sent for messages in handed_off)


def test_plain_workload_is_the_same_body_on_both_sides():
    (request,) = plain_workload("m", 48, SAMPLING).requests
    assert request.serve_body == request.bare_body and request.serve_headers == {}


def test_process_roles_follow_the_request_path():
    assert process_cpu.role_of("VLLM::Worker", "python -c from multiprocessing.spawn") == \
        "vLLM worker (model compute)"
    assert process_cpu.role_of("VLLM::EngineCor", "VLLM::EngineCore").startswith("vLLM engine core")
    assert process_cpu.role_of("ray::ServeRepli", "ray::ServeReplica:cs-assistant:Ingress") == \
        "ingress replica"
    assert process_cpu.role_of("ray::ServeRepli",
                               "ray::ServeReplica:cs-assistant:TextModel") == "model replica"
    assert process_cpu.role_of("ray::ProxyActor", "ray::ProxyActor") == "Serve proxy"
    assert process_cpu.role_of("bash", "bash") is None


def test_cores_by_role_counts_new_processes_from_zero():
    before = process_cpu.Snapshot({1: ("Serve proxy", 10.0)})
    after = process_cpu.Snapshot({1: ("Serve proxy", 12.0), 2: ("raylet", 1.0)})
    assert process_cpu.cores_by_role(before, after, wall_s=4.0) == {
        "Serve proxy": 0.5, "raylet": 0.25}
