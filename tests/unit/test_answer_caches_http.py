"""Curated answers and the response cache behind the HTTP API (in-process, fake replicas): no
engine call for a curated answer or a cache hit, the same completion and SSE shapes as a model
answer, `service.cache` and the metrics, and a knowledge-base edit dropping the answers it
made stale."""

from __future__ import annotations

import shutil
import time

import pytest
from fastapi.testclient import TestClient

from configs.schema import PROJECT_ROOT
from router.chat_service import ChatService
from router.ingress import build_api
from router.api.protocol import ChatCompletionChunk
from shop.layer import ShopLayer
from tests.fakes import fake_streamers, recording_metrics
from tests.unit.shop.conftest import SINGLES_DAY
from tests.unit.test_ingress_http import FakeHandle
from tests.unit.test_shop_http import URL, ShopStack, ask

# Grounded, answered by the model (not a written FAQ question, no confident single match).
MODEL_QUESTION = "包邮吗？新疆也包邮吗，顺丰要加钱吗"


class CachingStack(ShopStack):
    """ShopStack with the ingress's cache wiring (drop callback and size gauges)."""

    def __init__(self, config):
        streamers, self.engines = fake_streamers(config)
        metrics, self.registry = recording_metrics(config)
        self.shops = ShopLayer(config.shops, PROJECT_ROOT, metrics.cache_dropped,
                               clock=lambda: SINGLES_DAY)
        self.service = ChatService(config, streamers, self.shops)
        metrics.watch_cache(self.shops.cache_stats)
        self.metrics = metrics
        self.config = config
        self.client = TestClient(build_api(self.service, metrics, config, FakeHandle()),
                                 raise_server_exceptions=False)


@pytest.fixture
def stack(local_config):
    return CachingStack(local_config)


def test_a_curated_answer_calls_no_engine_and_says_faq(stack):
    body = stack.client.post(URL, json=ask("包郵嗎？")).json()
    assert stack.engine_calls() == 0
    assert body["choices"][0]["message"]["content"].startswith("中通快递发全国大陆地区包邮")
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    assert body["service"]["cache"] == "faq"
    assert body["service"]["sources"] == [{"id": "faq/shipping-fee", "title": "运费与包邮"}]
    assert stack.value("cs_shop_cache_requests_total", shop="demo-apparel", result="faq") == 1
    assert stack.value("cs_shop_requests_total", shop="demo-apparel", answer="faq") == 1


def test_a_streamed_curated_answer_arrives_in_pieces_like_a_model_answer(stack):
    chunks = stack.stream(ask("Is shipping free?", stream_options={"include_usage": True}))
    contents = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    text = "".join(c for c in contents if c)
    assert text.startswith("Shipping by ZTO is free")
    assert sum(1 for c in contents if c) > 3  # several content chunks, not one blob
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    assert chunks[-1]["usage"]["completion_tokens"] == 0
    assert chunks[-1]["service"]["cache"] == "faq"
    assert stack.engine_calls() == 0
    # Every event is a valid chunk of the documented schema (they are built without it).
    for chunk in chunks:
        assert ChatCompletionChunk.model_validate(chunk).id == chunks[0]["id"]


def test_the_second_identical_question_is_a_hit_without_an_engine_call(stack):
    first = stack.client.post(URL, json=ask(MODEL_QUESTION)).json()
    assert first["service"]["cache"] == "miss" and stack.engine_calls() == 1
    second = stack.client.post(URL, json=ask("包郵嗎？新疆也包郵嗎，順豐要加錢嗎")).json()
    assert stack.engine_calls() == 1
    assert second["service"]["cache"] == "hit"
    assert second["choices"][0]["message"]["content"] == \
        first["choices"][0]["message"]["content"]
    assert second["service"]["sources"] == first["service"]["sources"]
    assert second["usage"]["completion_tokens"] == 0
    chunks = stack.stream(ask(MODEL_QUESTION))
    assert chunks[-1]["service"]["cache"] == "hit" and stack.engine_calls() == 1
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                   if c["choices"]) == first["choices"][0]["message"]["content"]
    assert stack.value("cs_shop_cache_requests_total", shop="demo-apparel", result="miss") == 1
    assert stack.value("cs_shop_cache_requests_total", shop="demo-apparel", result="hit") == 2
    stack.metrics.refresh_gauges()
    assert stack.value("cs_response_cache_entries") == 1
    assert stack.value("cs_response_cache_bytes") > 0


def test_a_streamed_miss_is_cached_once_complete(stack):
    stack.stream(ask(MODEL_QUESTION))
    body = stack.client.post(URL, json=ask(MODEL_QUESTION)).json()
    assert body["service"]["cache"] == "hit" and stack.engine_calls() == 1


def test_history_handoffs_and_other_sampling_bypass_or_miss_the_cache(stack):
    stack.client.post(URL, json=ask(MODEL_QUESTION))
    history = {"messages": [{"role": "user", "content": "hi"},
                            {"role": "assistant", "content": "Hello!"},
                            {"role": "user", "content": MODEL_QUESTION}]}
    assert stack.client.post(URL, json=history).json()["service"]["cache"] == "bypass"
    assert stack.client.post(URL, json=ask("转人工")).json()["service"]["cache"] == "bypass"
    hotter = stack.client.post(URL, json=ask(MODEL_QUESTION, temperature=1.0)).json()
    assert hotter["service"]["cache"] == "miss"
    assert stack.engine_calls() == 3  # first ask, history, other sampling


def test_editing_an_entry_drops_the_answers_built_from_it(tmp_path, local_config):
    folder = tmp_path / "apparel"
    shutil.copytree(PROJECT_ROOT / "configs/shops/demo-apparel", folder)
    catalog = [shop.model_copy(update={"knowledge_base": str(folder)})
               if shop.id == "demo-apparel" else shop for shop in local_config.shops.catalog]
    config = local_config.model_copy(update={"shops": local_config.shops.model_copy(
        update={"catalog": tuple(catalog)})})
    stack = CachingStack(config)
    fee = stack.client.post(URL, json=ask(MODEL_QUESTION)).json()
    assert fee["service"]["cache"] == "miss"
    other = "What sizes does the merino sweater come in, and is it itchy?"
    assert stack.client.post(URL, json=ask(other)).json()["service"]["cache"] == "miss"
    assert stack.shops.cache.stats().entries == 2

    faq = folder / "faq.yaml"
    time.sleep(0.01)  # a new mtime
    faq.write_text(faq.read_text().replace("with no minimum spend", "with no minimum at all"))
    assert stack.shops.refresh() == ["demo-apparel"]
    assert stack.value("cs_response_cache_invalidations_total", shop="demo-apparel",
                       reason="source_changed") == 1
    assert stack.shops.cache.stats().entries == 1  # the sweater answer stays
    again = stack.client.post(URL, json=ask(MODEL_QUESTION)).json()
    assert again["service"]["cache"] == "miss" and stack.engine_calls() == 3
    assert stack.client.post(URL, json=ask(other)).json()["service"]["cache"] == "hit"
