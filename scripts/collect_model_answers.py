"""Collect the local text model's real answers to labelled shopper messages, for the answer
guard's labelled set (issue 23): facts, conversation and answer, to be labelled faithful or not by
someone who has not read the guard's code.

    .venv/bin/python scripts/collect_model_answers.py [--per-group 40] [--out FILE]

For each labelled message set (evals/shop-messages.yaml, evals/shopper-messages-2.yaml) the shop
layer plans every case at the set's clock, exactly as the service would; the cases it sends to the
model (no hand-off, no curated answer) are sampled evenly by (shop, language) and answered by the
local stack's text model (configs/local-cpu.yaml: the model's local substitute, its engine
arguments and the shop's sampling) with vLLM's offline `LLM`, in one batch. The file written holds
no label: `label`, `reason` and `unsupported` are left for the labeller.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

import yaml

from configs.schema import APP_NAME, PROJECT_ROOT, app_config_from_serve_config, load_serve_config
from evals.cases import LabelledSet, Purpose
from shop.directory import ShopDirectory

SETS = ("evals/shop-messages.yaml", "evals/shopper-messages-2.yaml")
OUT = PROJECT_ROOT / "evals" / "answer-checks-model-unlabelled.yaml"
LOCAL_CONFIG = PROJECT_ROOT / "configs" / "local-cpu.yaml"


def planned_cases(per_group: int, seed: int) -> list[dict]:
    """The sampled cases the shop layer would send to the model, with the model's input."""
    raw = load_serve_config(LOCAL_CONFIG)
    config = app_config_from_serve_config(raw, APP_NAME)
    chosen: list[dict] = []
    for set_path in SETS:
        labelled = LabelledSet.load(PROJECT_ROOT / set_path)
        clock = labelled.clock
        directory = ShopDirectory(config.shops, PROJECT_ROOT, clock=lambda c=clock: c)
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for case in labelled.select("all", Purpose.SCORE).cases:
            assistant = directory.get(case["shop"])
            plan = assistant.plan(case["messages"])
            if plan.messages is None:
                continue
            groups[(case["shop"], plan.language)].append({
                "id": f"model-{case['id']}", "shop": case["shop"], "lang": plan.language,
                "clock": clock.isoformat(), "sources": [e.id for e in plan.facts],
                "conversation": case["messages"],
                "_input": plan.messages, "_sampling": plan.sampling,
                "_thinking": plan.enable_thinking})
        rng = random.Random(seed)
        for key in sorted(groups):
            rng.shuffle(groups[key])
            chosen.extend(groups[key][:per_group])
    return chosen


def answer(cases: list[dict]) -> None:
    """Fill in each case's `answer` and `finish_reason` with the local text model."""
    from vllm import LLM, SamplingParams

    raw = load_serve_config(LOCAL_CONFIG)
    config = app_config_from_serve_config(raw, APP_NAME)
    model = next(m for m in config.models if m.modality == "text")
    engine = model.engine
    llm = LLM(model=str(PROJECT_ROOT / model.local_substitute),
              max_model_len=engine.max_model_len, dtype=engine.dtype,
              max_num_seqs=engine.max_num_seqs, enforce_eager=engine.enforce_eager)
    params = [SamplingParams(temperature=c["_sampling"].temperature, top_p=c["_sampling"].top_p,
                             max_tokens=c["_sampling"].max_tokens) for c in cases]
    outputs = llm.chat([c["_input"] for c in cases], params, use_tqdm=True,
                       chat_template_kwargs={"enable_thinking": False})
    for case, output in zip(cases, outputs):
        case["answer"] = output.outputs[0].text
        case["finish_reason"] = output.outputs[0].finish_reason


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-group", type=int, default=40,
                        help="cases per (set, shop, language)")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    cases = planned_cases(args.per_group, args.seed)
    print(f"{len(cases)} cases go to the model", flush=True)
    answer(cases)
    for case in cases:
        for key in ("_input", "_sampling", "_thinking"):
            case.pop(key)
        case.update(label=None, reason=None, unsupported=None)
    args.out.write_text(yaml.safe_dump({"cases": cases}, allow_unicode=True, sort_keys=False,
                                       width=100), encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
