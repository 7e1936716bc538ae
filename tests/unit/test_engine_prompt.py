"""The prompt the engine renders ends with the assistant's turn opener, so the model answers
instead of writing the opener itself (answers used to start with "assistant\\n")."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from model_server.engine_protocol import EngineRequest, SamplingOptions
from model_server.vllm.engine import template_kwargs
from tests.conftest import PROJECT_ROOT

REQUEST = EngineRequest(
    request_id="chatcmpl-1",
    messages=[{"role": "system", "content": "You are Maple."},
              {"role": "user", "content": "When will my order ship?"}],
    sampling=SamplingOptions(max_tokens=8, temperature=0.0, top_p=1.0),
    chat_template_kwargs={"enable_thinking": False},
)


def test_template_kwargs_ask_for_the_generation_prompt_and_keep_the_request_switches():
    kwargs = template_kwargs(REQUEST)
    assert kwargs["add_generation_prompt"] is True
    assert kwargs["continue_final_message"] is False
    assert kwargs["enable_thinking"] is False


@pytest.mark.parametrize("model", ["smollm2-135m-instruct", "tiny-qwen3", "tiny-qwen2.5-vl"])
def test_rendered_prompt_of_each_prepared_model_ends_with_the_assistant_opener(model):
    path = PROJECT_ROOT / ".models" / model
    if not (path / ".complete").exists():
        pytest.fail(f"{path} missing: run scripts/setup.sh")
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(REQUEST.messages, tokenize=False,
                                           **template_kwargs(REQUEST))
    # After the shopper's turn comes the assistant's opener (then, for Qwen3 templates with
    # thinking off, an empty think block): the model starts inside its own turn.
    after_last_turn = prompt.rsplit("<|im_end|>\n", 1)[1]
    assert after_last_turn.startswith("<|im_start|>assistant\n"), prompt[-120:]
    assert "<|im_start|>user\nWhen will my order ship?<|im_end|>" in prompt
    # The same call without the switch is what the engine rendered before: no opener.
    bare = tokenizer.apply_chat_template(REQUEST.messages, tokenize=False,
                                         **REQUEST.chat_template_kwargs)
    assert "assistant" not in bare.rsplit("<|im_end|>", 1)[1]
