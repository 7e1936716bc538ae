"""Order look-up tool calls scored against any OpenAI-compatible endpoint (evals/order-tools.yaml).

The set: 200 shopper messages in Chinese and English, each labelled with the tool a good assistant
calls (`get_order`, `list_orders`, or none) and the arguments that must match (the order id or
tracking number as the shopper wrote it), written by a helper session from the order contract
(docs/order-api.openapi.json) and the shops' files, without the code.

Figures, per language and overall:
- valid call rate: answers whose tool calls all name a given tool and carry arguments that parse
  and validate against its `parameters` (of the answers that called a tool);
- right tool: the first call names the expected tool, or no call where none is expected;
- right order_id / tracking_number: the expected arguments, exactly (of the cases that expect a
  call with arguments);
- call rate where one is expected, and false calls where none is;
- answers cut by `--max-tokens` (an unfinished call is no call).

`--tool-choice auto` (default) measures the model's choices: a GPU figure with the real
Qwen3-0.6B. `--tool-choice required` measures the format under guided decoding: the figure the
CPU stack's stand-in can give (every call must parse, whatever the model). Nothing is tuned on
this set; `--show-misses` lists individual cases of the dev half only (evals/cases.py).

    .venv/bin/python scripts/evaluate_tool_calls.py --base-url http://127.0.0.1:8000/v1 \\
        --api-key $KEY --shop demo-electronics [--tool-choice required] [--limit 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.cases import SELECTABLE, LabelledSet, Purpose  # noqa: E402

DEFAULT_SET = Path(__file__).resolve().parents[1] / "evals" / "order-tools.yaml"


def ask(client: httpx.Client, args, tools: list[dict], system: str, case: dict) -> dict:
    """One case's answer: the first choice's message and finish reason, or the HTTP error."""
    body: dict[str, Any] = {
        "messages": [{"role": "system", "content": system}, *case["messages"]],
        "tools": tools, "tool_choice": args.tool_choice, "max_tokens": args.max_tokens,
        "temperature": args.temperature}
    if args.model:
        body["model"] = args.model
    started = time.monotonic()
    response = client.post("/chat/completions", json=body)
    elapsed = time.monotonic() - started
    if response.status_code != 200:
        return {"error": f"{response.status_code} {response.text[:200]}", "seconds": elapsed}
    choice = response.json()["choices"][0]
    return {"message": choice["message"], "finish_reason": choice["finish_reason"],
            "seconds": elapsed}


def judge(case: dict, answer: dict, schemas: dict[str, dict]) -> dict[str, Any]:
    """What one answer got right (None: the figure does not apply to this case)."""
    expected = case["expected"]
    want_tool = expected["tool"] if expected["tool"] != "none" else None
    if "error" in answer:
        return {"error": True, "called": False, "valid": None, "right_tool": False,
                "right_args": False if want_tool and expected.get("arguments") else None,
                "cut": None}
    calls = answer["message"].get("tool_calls") or []
    parsed: list[tuple[str, Any]] = []
    valid = True
    for call in calls:
        name = call["function"]["name"]
        try:
            arguments = json.loads(call["function"]["arguments"])
            jsonschema.validate(arguments, schemas[name])
            parsed.append((name, arguments))
        except (KeyError, ValueError, jsonschema.ValidationError):
            valid = False
    first = parsed[0] if parsed and valid else None
    right_tool = (first is not None and first[0] == want_tool) if want_tool else not calls
    must = expected.get("arguments") or {}
    right_args = None
    if want_tool and must:
        right_args = first is not None and first[0] == want_tool and all(
            first[1].get(key) == value for key, value in must.items())
    return {"error": False, "called": bool(calls), "valid": valid if calls else None,
            "right_tool": right_tool, "right_args": right_args,
            "cut": answer["finish_reason"] == "length"}


def rate(values: list[bool | None]) -> tuple[float | None, int]:
    counted = [v for v in values if v is not None]
    return (sum(counted) / len(counted) if counted else None), len(counted)


def summary(cases: list[dict], verdicts: list[dict]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[tuple[dict, dict]]] = defaultdict(list)
    for case, verdict in zip(cases, verdicts):
        groups["all"].append((case, verdict))
        groups[case["language"]].append((case, verdict))
    table = {}
    for name, rows in groups.items():
        expect_call = [(c, v) for c, v in rows if c["expected"]["tool"] != "none"]
        expect_none = [(c, v) for c, v in rows if c["expected"]["tool"] == "none"]
        table[name] = {
            "cases": len(rows),
            "errors": sum(v["error"] for _, v in rows),
            "valid_call_rate": rate([v["valid"] for _, v in rows]),
            "right_tool": rate([v["right_tool"] for _, v in rows]),
            "right_arguments": rate([v["right_args"] for _, v in rows]),
            "called_when_expected": rate([v["called"] for _, v in expect_call]),
            "called_when_not_expected": rate([v["called"] for _, v in expect_none]),
            "cut_by_max_tokens": rate([v["cut"] for _, v in rows]),
        }
    return table


def print_table(table: dict[str, dict[str, Any]], args, seconds: list[float]) -> None:
    print(f"tool_choice={args.tool_choice}  endpoint={args.base_url}  "
          f"model={args.model or '(routed)'}  split={args.split}")
    columns = ["valid_call_rate", "right_tool", "right_arguments", "called_when_expected",
               "called_when_not_expected", "cut_by_max_tokens"]
    print(f"{'group':6} {'cases':>5} {'errors':>6} " + " ".join(f"{c:>24}" for c in columns))
    for name in ("all", "zh", "en"):
        if name not in table:
            continue
        row = table[name]
        cells = []
        for column in columns:
            value, n = row[column]
            cells.append(f"{'-' if value is None else f'{value:.3f}':>17} (n={n:>3})")
        print(f"{name:6} {row['cases']:>5} {row['errors']:>6} " + " ".join(cells))
    if seconds:
        ordered = sorted(seconds)
        print(f"latency per case: p50 {ordered[len(ordered) // 2]:.2f} s, "
              f"max {ordered[-1]:.2f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", default=None, help="a backend key (tools need one)")
    parser.add_argument("--shop", default=None, help="X-Shop-Id (this project's servers)")
    parser.add_argument("--model", default=None, help="model id; unset: the server routes")
    parser.add_argument("--tool-choice", default="auto", choices=["auto", "required"])
    parser.add_argument("--set", type=Path, default=DEFAULT_SET)
    parser.add_argument("--split", default="all", choices=SELECTABLE)
    parser.add_argument("--limit", type=int, default=None, help="the first N cases only")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--show-misses", action="store_true",
                        help="list the dev half's cases that were wrong (dev split only)")
    args = parser.parse_args(argv)

    purpose = Purpose.SHOW_MISSES if args.show_misses else Purpose.SCORE
    labelled = LabelledSet.load(args.set)
    selection = labelled.select(args.split, purpose)
    raw = yaml.safe_load(args.set.read_text("utf-8"))
    tools, system = raw["tools"], raw["system"]
    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
    cases = list(selection.cases)[: args.limit]
    if args.tool_choice == "required":  # a forced call cannot be right where none is expected
        cases = [c for c in cases if c["expected"]["tool"] != "none"]
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    if args.shop:
        headers["X-Shop-Id"] = args.shop
    done = 0

    def run(case: dict) -> dict:
        nonlocal done
        with httpx.Client(base_url=args.base_url, headers=headers,
                          timeout=args.timeout_s) as client:
            answer = ask(client, args, tools, system, case)
        done += 1
        if done % 20 == 0 or done == len(cases):
            print(f"  {done}/{len(cases)} answered", file=sys.stderr, flush=True)
        return answer

    with ThreadPoolExecutor(args.concurrency) as pool:
        answers = list(pool.map(run, cases))
    verdicts = [judge(case, answer, schemas) for case, answer in zip(cases, answers)]
    table = summary(cases, verdicts)
    print_table(table, args, [a["seconds"] for a in answers])
    if args.show_misses:
        for case, answer, verdict in zip(cases, answers, verdicts):
            if not verdict["right_tool"] or verdict["right_args"] is False:
                print(f"- {case['id']} expected {case['expected']} got "
                      f"{answer.get('error') or answer['message'].get('tool_calls')}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "figures": table}, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
