"""The shop layer behind the HTTP API (in-process, fake replicas): X-Shop-Id, GET /v1/shops, the
`service` object in bodies and in the last stream chunk, hand-offs answered without any engine
call, and the shop metrics."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from configs.schema import PROJECT_ROOT
from router.chat_service import ChatService
from router.ingress import build_api
from shop.layer import shop_layer_for
from tests.fakes import FakeBehaviour, fake_streamers, recording_metrics
from tests.unit.shop.conftest import SINGLES_DAY
from tests.unit.test_ingress_http import FakeHandle

URL = "/v1/chat/completions"


class ShopStack:
    def __init__(self, config, behaviour=None):
        streamers, self.engines = fake_streamers(config, behaviour)
        metrics, self.registry = recording_metrics(config)
        shops = shop_layer_for(config.shops, PROJECT_ROOT, clock=lambda: SINGLES_DAY)
        self.config = config
        self.client = TestClient(
            build_api(ChatService(config, streamers, shops), metrics, config, FakeHandle()),
            raise_server_exceptions=False)

    def engine_calls(self) -> int:
        return sum(len(engine.requests) for engine in self.engines.values())

    def value(self, name: str, **labels) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def stream(self, body: dict, **headers) -> list[dict]:
        with self.client.stream("POST", URL, json={**body, "stream": True},
                                headers=headers) as response:
            assert response.status_code == 200, response.read()
            lines = [line for line in response.iter_lines() if line]
        assert lines[-1] == "data: [DONE]"
        return [json.loads(line.removeprefix("data: ")) for line in lines[:-1]]


@pytest.fixture
def stack(local_config):
    return ShopStack(local_config)


def ask(text: str, **fields) -> dict:
    return {"messages": [{"role": "user", "content": text}], **fields}


def test_unknown_shop_is_404_in_the_openai_envelope(stack):
    response = stack.client.post(URL, json=ask("hi"), headers={"X-Shop-Id": "no-such-shop"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("shop_not_found", "X-Shop-Id")
    assert stack.engine_calls() == 0


def test_shops_are_listed_with_ids_names_languages_and_demo_shoppers_only(stack):
    data = stack.client.get("/v1/shops").json()["data"]
    assert [shop["id"] for shop in data] == ["demo-apparel", "demo-electronics"]
    assert all(set(shop) == {"id", "name", "languages", "demo_shoppers"} for shop in data)
    assert data[0]["demo_shoppers"] == ["u1001", "u1002", "u1003"]


def test_an_answer_carries_its_sources_and_the_model_saw_persona_and_facts(stack):
    response = stack.client.post(URL, json=ask("公司要开专票，开票信息怎么填"),
                                 headers={"X-Shop-Id": "demo-electronics"})
    assert response.status_code == 200
    service = response.json()["service"]
    assert service["shop"] == "demo-electronics" and service["handoff"] is None
    assert "faq/invoice-vat-special" in [s["id"] for s in service["sources"]]
    (sent,) = stack.engines["text"].requests
    assert sent.messages[0]["role"] == "system" and "[faq/invoice-vat-special]" in \
        sent.messages[0]["content"]
    assert sent.sampling.temperature == stack.config.shops.catalog[1].sampling.temperature


def test_a_handoff_is_answered_without_any_engine_call(stack):
    response = stack.client.post(URL, json=ask("转人工"))
    assert response.status_code == 200
    body = response.json()
    assert stack.engine_calls() == 0
    message = stack.config.shops.catalog[0].messages.handoff.zh
    assert body["choices"][0]["message"]["content"] == message
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["service"]["handoff"] == {"reason": "requested", "message": message}
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert stack.value("cs_shop_handoffs_total", shop="demo-apparel",
                       handoff_reason="requested") == 1
    assert stack.value("cs_shop_requests_total", shop="demo-apparel", answer="handoff") == 1


def test_the_last_stream_chunk_before_done_carries_service(stack):
    chunks = stack.stream(ask("What's your cut-off time for same-day dispatch?"))
    assert "service" in chunks[-1] and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("service" not in chunk for chunk in chunks[:-1])
    assert "faq/shipping-cutoff" in [s["id"] for s in chunks[-1]["service"]["sources"]]
    with_usage = stack.stream(ask("What's your cut-off time for same-day dispatch?",
                                  stream_options={"include_usage": True}))
    assert with_usage[-1]["choices"] == [] and "usage" in with_usage[-1]
    assert "service" in with_usage[-1]
    assert all("service" not in chunk for chunk in with_usage[:-1])


def test_a_streamed_handoff_has_the_same_sse_shape(stack):
    chunks = stack.stream(ask("I want to complain!!!"))
    assert stack.engine_calls() == 0
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == stack.config.shops.catalog[0].messages.handoff.en
    assert chunks[-1]["service"]["handoff"]["reason"] == "complaint"


def test_a_model_reply_that_declines_becomes_a_no_answer_handoff(local_config):
    declined = local_config.shops.catalog[0].messages.no_answer.en
    stack = ShopStack(local_config, FakeBehaviour(reply=(declined[:20], declined[20:])))
    body = stack.client.post(URL, json=ask("Is the trench coat lined?")).json()
    assert body["service"]["handoff"]["reason"] == "no_answer"
    assert body["service"]["sources"] == []
    assert stack.value("cs_shop_handoffs_total", shop="demo-apparel",
                       handoff_reason="no_answer") == 1
    chunks = stack.stream(ask("Is the trench coat lined?"))
    assert chunks[-1]["service"]["handoff"]["reason"] == "no_answer"


def test_a_blank_model_answer_becomes_the_no_answer_message_and_a_handoff(local_config):
    """A model can end on its first token: the shopper gets the shop's no-answer message, in
    their language, and the shop's chat system a `no_answer` hand-off; nothing is cached."""
    messages = local_config.shops.catalog[0].messages.no_answer
    stack = ShopStack(local_config, FakeBehaviour(reply=("", " \n")))
    body = stack.client.post(URL, json=ask("风衣有内衬吗？")).json()
    assert body["choices"][0]["message"]["content"] == messages.zh
    assert body["service"]["handoff"] == {"reason": "no_answer", "message": messages.zh}
    assert body["usage"]["completion_tokens"] == 2  # the model's tokens, as counted
    chunks = stack.stream(ask("Is the trench coat lined?"))
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip() == messages.en
    assert chunks[-1]["service"]["handoff"]["reason"] == "no_answer"
    assert chunks[-1]["service"]["cache"] == "miss"
    assert stack.value("cs_shop_handoffs_total", shop="demo-apparel",
                       handoff_reason="no_answer") == 2
    # Asked again: the model is asked again (a blank answer is never cached).
    stack.client.post(URL, json=ask("Is the trench coat lined?"))
    assert stack.engine_calls() == 3


def test_without_shops_a_blank_model_answer_is_returned_as_it_is(local_config):
    plain = local_config.model_copy(update={"shops": None})
    stack = ShopStack(plain, FakeBehaviour(reply=("",)))
    body = stack.client.post(URL, json=ask("hi")).json()
    assert body["choices"][0]["message"]["content"] == ""
    assert "service" not in body or body["service"] is None


def test_thinking_where_the_shop_forbids_it_is_a_400(stack):
    response = stack.client.post(URL, json=ask("hi", chat_template_kwargs={"enable_thinking": True}))
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "chat_template_kwargs"
    allowed = stack.client.post(URL, json=ask("hi", chat_template_kwargs={"enable_thinking": True}),
                                headers={"X-Shop-Id": "demo-electronics"})
    assert allowed.status_code == 200
    assert stack.engines["text"].requests[-1].chat_template_kwargs["enable_thinking"] is True


def test_retrieval_time_and_no_relevant_entry_are_measured(stack):
    stack.client.post(URL, json=ask("quantum zeppelin xylophone"))
    stack.client.post(URL, json=ask("包邮吗？新疆也包邮吗，顺丰要加钱吗"))
    assert stack.value("cs_shop_retrieval_seconds_count", shop="demo-apparel") == 2
    assert stack.value("cs_shop_no_relevant_entry_total", shop="demo-apparel") == 1
    assert stack.value("cs_shop_requests_total", shop="demo-apparel", answer="model") == 1


def streamed_text(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])


def test_a_streamed_answer_never_shows_a_sentence_with_an_invented_number(local_config):
    """The guard releases a sentence once it has passed: the shopper sees the supported first
    sentence, never the one with an invented price, then the replacement; the model stops at
    the failure (its request is cancelled) and the verdict is counted and in `service`."""
    invented = ("Shipping by ZTO is free to every mainland address. ",
                "SF Express costs 15 CNY per order, ", "and it arrives in 1-2 days. ",
                "Anything else I can help with?")
    stack = ShopStack(local_config, FakeBehaviour(reply=invented, token_delay_s=0.01))
    chunks = stack.stream(ask("How much is SF Express shipping, and is ZTO free?"))
    text = streamed_text(chunks)
    no_answer = local_config.shops.catalog[0].messages.no_answer.en
    assert text == invented[0].rstrip() + "\n\n" + no_answer
    assert "15" not in text and "Anything else" not in text
    service = chunks[-1]["service"]
    assert service["guard"] == {"verdict": "replaced", "reasons": ["unsupported_number"]}
    assert service["handoff"]["reason"] == "no_answer"
    assert stack.engines["text"].cancelled  # stopped at the failed sentence
    assert stack.value("cs_shop_guard_verdicts_total", shop="demo-apparel",
                       verdict="replaced", guard_reason="unsupported_number") == 1


def test_a_looping_answer_is_shown_once_then_replaced(local_config):
    loop = ("ZTO shipping is free. ",) * 8
    stack = ShopStack(local_config, FakeBehaviour(reply=loop))
    body = stack.client.post(URL, json=ask("Is ZTO shipping free?!! and SF?")).json()
    content = body["choices"][0]["message"]["content"]
    assert content.count("ZTO shipping is free.") <= 1
    assert body["service"]["guard"] == {"verdict": "replaced", "reasons": ["loop"]}
    chunks = stack.stream(ask("Is ZTO shipping free?!! and SF?"))
    assert streamed_text(chunks).count("ZTO shipping is free.") == 1
    assert chunks[-1]["service"]["guard"]["reasons"] == ["loop"]


def test_a_supported_answer_streams_whole_and_is_counted_as_a_pass(local_config):
    faithful = ("Orders paid by 16:00 ", "ship the same day; ", "after 16:00, ",
                "the next day.")
    stack = ShopStack(local_config, FakeBehaviour(reply=faithful))
    chunks = stack.stream(ask("If I pay at 5pm when does it ship? And at 3pm?"))
    assert streamed_text(chunks) == "".join(faithful)
    assert chunks[-1]["service"]["guard"] == {"verdict": "pass", "reasons": []}
    assert stack.value("cs_shop_guard_verdicts_total", shop="demo-apparel",
                       verdict="pass", guard_reason="none") == 1
