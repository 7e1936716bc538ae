"""The shop layer on the real local stack (Ray Serve + vLLM CPU engines, tiny models): answers
grounded in the knowledge base with their sources in both languages, a hand-off answered with no
engine call, `service` in the last stream chunk, an unknown shop, and a knowledge-base file
edited while the stack runs."""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.integration.test_local_stack import SAMPLE, TEXT_MODEL

pytestmark = pytest.mark.integration
ENGINE_FINISHED = "ray_vllm_request_success_total"
SETTLE_S = 4.0  # 4 metric report intervals of the test stack
RELOAD_TIMEOUT_S = 30.0  # reload_check_s (2 s) + indexing + margin, on every ingress replica


def ask(stack, text: str, shop: str | None = None, request_id: str | None = None, **fields):
    headers = {"X-Shop-Id": shop} if shop else {}
    if request_id:
        headers["X-Request-ID"] = request_id
    with stack.client() as client:
        return client.post("/v1/chat/completions", headers=headers, json={
            "messages": [{"role": "user", "content": text}], **SAMPLE, **fields})


def settled(stack, name: str, **labels) -> float:
    """A counter's value once it has not moved for SETTLE_S."""
    last, since, deadline = stack.metric_sum(name, **labels), time.monotonic(), time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = stack.metric_sum(name, **labels)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= SETTLE_S:
            return now
    pytest.fail(f"{name} still changing")


@pytest.mark.parametrize(
    ("shop", "question", "source"),
    # Questions that need more than one FAQ answer (a written FAQ question is a curated answer).
    [("demo-apparel", "下午三点付款的话，今天能发货吗？新疆几天能到？", "faq/shipping-cutoff"),
     ("demo-apparel", "Is shipping free to Xinjiang if I order two hoodies?", "faq/shipping-fee"),
     ("demo-electronics", "公司要开专票，开票信息怎么填", "faq/invoice-vat-special"),
     ("demo-electronics", "How long is the warranty on a power bank, and do I need the receipt?",
      "faq/warranty-length")],
)
def test_questions_are_answered_by_the_model_with_their_sources(stack, shop, question, source):
    response = ask(stack, question, shop)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["usage"]["completion_tokens"] >= 1 and body["model"] == TEXT_MODEL
    service = body["service"]
    # Single-turn and grounded: cacheable, and not cached yet (cut at max_tokens, never stored).
    assert service["shop"] == shop and service["handoff"] is None and service["cache"] == "miss"
    assert source in [s["id"] for s in service["sources"]]


def test_a_curated_answer_and_a_cache_hit_call_no_engine(stack):
    before = settled(stack, ENGINE_FINISHED, model_name=TEXT_MODEL)
    curated = ask(stack, "包郵嗎？").json()  # a written FAQ question, in traditional script
    assert curated["service"]["cache"] == "faq" and curated["usage"]["total_tokens"] == 0
    assert curated["choices"][0]["message"]["content"].startswith("中通快递发全国大陆地区包邮")
    assert settled(stack, ENGINE_FINISHED, model_name=TEXT_MODEL) == before
    # A model answer that ends by itself is cached, and the same question (another script,
    # case or punctuation) is then answered from the cache. The random tiny model ends an
    # answer only at a stop string; one that stops before any text is not cached (the shop
    # sends its no-answer message instead, as a hand-off), so a few questions are tried.
    stop = list("aeionst ")  # max_stop_sequences is 8
    for question in ("Can I return a sweater I already washed once?",
                     "Can I return a scarf that I already wore twice?",
                     "Can I return the jeans if the tags are cut off?",
                     "Can I return a coat bought during the 11.11 sale?",
                     "Can I return a hoodie that I shrank in the dryer?"):
        first = ask(stack, question, max_tokens=64, stop=stop).json()
        assert first["service"]["cache"] == "miss", first
        if first["choices"][0]["finish_reason"] == "stop" and first["service"]["handoff"] is None:
            break
    else:
        pytest.fail("no question got a complete, non-empty model answer to cache")
    # The shared stack has two ingress replicas, each with its own cache (docs/shops.md "Fast
    # answers"): the question is asked until the replica that cached it answers.
    answers = {first["choices"][0]["message"]["content"]}
    for _ in range(6):
        engine_calls = settled(stack, ENGINE_FINISHED, model_name=TEXT_MODEL)
        again = ask(stack, question.upper().rstrip("?") + "？", max_tokens=64, stop=stop).json()
        if again["service"]["cache"] == "hit":
            break
        assert again["service"]["cache"] == "miss", again
        answers.add(again["choices"][0]["message"]["content"])  # the other replica's answer
    else:
        pytest.fail("the question was never answered from the cache")
    assert again["usage"]["completion_tokens"] == 0
    assert again["choices"][0]["message"]["content"] in answers
    assert settled(stack, ENGINE_FINISHED, model_name=TEXT_MODEL) == engine_calls


def test_a_handoff_is_answered_without_an_engine_call(stack):
    before = settled(stack, ENGINE_FINISHED, model_name=TEXT_MODEL)
    response = ask(stack, "我要投诉！转人工！")
    assert response.status_code == 200
    service = response.json()["service"]
    assert service["handoff"]["reason"] == "complaint"
    assert response.json()["choices"][0]["message"]["content"] == service["handoff"]["message"]
    assert settled(stack, ENGINE_FINISHED, model_name=TEXT_MODEL) == before
    # The counter does move for a question the model answers: the check above can fail.
    assert ask(stack, "包邮吗？新疆也包邮吗，顺丰要加钱吗").status_code == 200
    assert settled(stack, ENGINE_FINISHED, model_name=TEXT_MODEL) == before + 1


def test_the_last_stream_chunk_carries_service(stack):
    with stack.client() as client, client.stream("POST", "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "When will my order ship if I pay at 3pm today?"}], **SAMPLE,
        "stream": True, "stream_options": {"include_usage": True},
    }) as response:
        assert response.status_code == 200
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "usage" in chunks[-1] and "service" in chunks[-1]
    assert all("service" not in chunk for chunk in chunks[:-1])
    assert "faq/shipping-cutoff" in [s["id"] for s in chunks[-1]["service"]["sources"]]


def test_an_unknown_shop_is_a_404(stack):
    response = ask(stack, "hi", shop="nobody")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "shop_not_found"
    with stack.client() as client:
        listed = client.get("/v1/shops").json()["data"]
    assert [s["id"] for s in listed] == ["demo-apparel", "demo-electronics"]


def test_a_knowledge_base_edit_is_served_without_a_restart(stack):
    config = yaml.safe_load(Path(stack.config_path).read_text())
    shop = next(s for s in config["applications"][0]["args"]["shops"]["catalog"]
                if s["id"] == "demo-electronics")
    faq = Path(shop["knowledge_base"]) / "faq.yaml"
    question = "Do you sell solar-powered charging backpacks?"
    assert "faq/solar-backpack" not in [s["id"] for s in
                                        ask(stack, question, shop["id"]).json()["service"]["sources"]]
    faq.write_text(faq.read_text(encoding="utf-8") + """
  - id: solar-backpack
    title: {en: "Solar charging backpack", zh: "太阳能充电背包"}
    questions:
      en: ["Do you sell solar-powered charging backpacks?", "solar backpack"]
      zh: ["有太阳能充电背包吗"]
    answer:
      en: "Yes: the Voltway solar backpack arrives in January 2027."
      zh: "有的，伏特路太阳能背包将于2027年1月上架。"
""", encoding="utf-8")
    edited_at = time.monotonic()
    # Each ingress replica reloads on its own: the edit counts as served once every running
    # replica has answered with it. Two questions at a time go to two replicas (HAProxy sends
    # a request to the replica with the fewest open); the replica log of each request id says
    # which one answered.
    replicas, served_at = stack.ingress_replicas(), {}
    assert len(replicas) == 2, replicas
    answer = "Yes: the Voltway solar backpack arrives in January 2027."

    def one(request_id: str):
        return request_id, ask(stack, question, shop["id"], request_id).json()

    with ThreadPoolExecutor(max_workers=2) as pool:
        while served_at.keys() != replicas:
            elapsed = time.monotonic() - edited_at
            assert elapsed < RELOAD_TIMEOUT_S, (
                f"after {RELOAD_TIMEOUT_S}s the edited entry was served by {sorted(served_at)} "
                f"of the ingress replicas {sorted(replicas)}")
            answers = dict(pool.map(one, [f"kb-reload-{uuid.uuid4().hex[:12]}"
                                          for _ in range(2)]))
            replica_of = stack.ingress_replica_of(answers)
            for request_id, body in answers.items():
                replica = replica_of[request_id]
                sources = [s["id"] for s in body["service"]["sources"]]
                edited = bool(sources) and sources[0] == "faq/solar-backpack"
                if edited:
                    assert body["choices"][0]["message"]["content"].startswith(answer), body
                    served_at.setdefault(replica, elapsed)
                else:
                    # A replica serves the version it loaded last: never the old one again.
                    assert replica not in served_at, f"{replica} went back to the old entries"
            time.sleep(0.5)
    print(f"\n[integration] knowledge-base edit served by every ingress replica after "
          + ", ".join(f"{t:.1f}s" for t in sorted(served_at.values())))
