"""The benchmark's two workloads, each as the same prompts for the Serve stack and for bare vLLM.

- `plain`: one customer-service question, no shop: the Serve stack runs without `shops`, so both
  servers get the same short prompt (the figure comparable with earlier runs and with Ray Serve
  LLM's published ones).
- `shop`: the demo shops' model-answered messages from the labelled evaluation set (Chinese and
  English, single and multi-turn). The Serve stack gets the shopper's messages and `X-Shop-Id`, and
  its shop layer adds the persona and the facts block; bare vLLM gets the messages that the same
  shop layer, built here from the same config, produces for them. Both see the same prompts, so
  the ratio measures serving, not prompt length. Messages the shop answers without the model (a
  hand-off, "I'll check with a colleague") are left out: they would flatter the Serve side.

Both sides send the same explicit sampling and thinking switch; otherwise the Serve side would
apply the shop's or the model's defaults and bare vLLM its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from configs.schema import PROJECT_ROOT, AppConfig
from shop.directory import ShopDirectory

EVAL_MESSAGES = PROJECT_ROOT / "evals" / "shop-messages.yaml"
PLAIN_PROMPT = (
    "I ordered a grey hoodie in size M during the sale and the tracking page has not "
    "changed for three days. Can you tell me when it will ship, whether the discount was "
    "applied, and how I can change the delivery address if it has not left yet?")
WORKLOADS = ("plain", "shop")


@dataclass(frozen=True)
class BenchRequest:
    """One request as each side receives it."""

    serve_body: dict
    serve_headers: dict[str, str]
    bare_body: dict


@dataclass(frozen=True)
class BenchWorkload:
    name: str
    requests: tuple[BenchRequest, ...]
    # The Serve stack for this workload runs with the shops (True) or without them (False).
    needs_shops: bool
    description: str = ""
    prompt_chars: tuple[int, ...] = field(default=())  # per request, of the bare side's prompt

    def request(self, index: int) -> BenchRequest:
        """Request `index` of a level: the same sequence for both sides."""
        return self.requests[index % len(self.requests)]


def _common(model: str, output_tokens: int, sampling: dict) -> dict:
    return {"model": model, "max_tokens": output_tokens, **sampling,
            "chat_template_kwargs": {"enable_thinking": False},
            "stream": True, "stream_options": {"include_usage": True}}


def _chars(messages: list[dict]) -> int:
    return sum(len(m["content"]) for m in messages if isinstance(m.get("content"), str))


def plain_workload(model: str, output_tokens: int, sampling: dict) -> BenchWorkload:
    messages = [{"role": "user", "content": PLAIN_PROMPT}]
    body = {**_common(model, output_tokens, sampling), "messages": messages}
    return BenchWorkload("plain", (BenchRequest(body, {}, body),), needs_shops=False,
                         description="one English question, no shop layer",
                         prompt_chars=(_chars(messages),))


def shop_workload(config: AppConfig, model: str, output_tokens: int, sampling: dict,
                  eval_path: Path = EVAL_MESSAGES) -> BenchWorkload:
    if config.shops is None:
        raise ValueError("the shop workload needs an app config with shops")
    shops = ShopDirectory(config.shops, PROJECT_ROOT)
    cases = yaml.safe_load(eval_path.read_text(encoding="utf-8"))["cases"]
    requests, chars = [], []
    for case in cases:
        if case["shop"] not in shops.ids or case.get("expected_handoff") is not None:
            continue
        messages = case["messages"]
        if any(not isinstance(m.get("content"), str) for m in messages):
            continue  # text only: images go to the other model
        plan = shops.get(case["shop"]).plan(messages, thinking=False)
        if plan.messages is None:
            continue  # answered without the model
        common = _common(model, output_tokens, sampling)
        requests.append(BenchRequest(
            {**common, "messages": messages}, {"X-Shop-Id": case["shop"]},
            {**common, "messages": plan.messages}))
        chars.append(_chars(plan.messages))
    if not requests:
        raise ValueError(f"no model-answered messages in {eval_path}")
    multi = sum(1 for r in requests if len(r.serve_body["messages"]) > 1)
    return BenchWorkload(
        "shop", tuple(requests), needs_shops=True,
        description=(f"{len(requests)} model-answered messages of the demo shops' evaluation set "
                     f"({multi} multi-turn), persona and facts added by the shop layer"),
        prompt_chars=tuple(chars))
