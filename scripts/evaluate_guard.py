"""Evaluate the answer guard (shop/guard/) on the labelled answer sets: how many unfaithful
answers it catches, how many faithful ones it would replace, and what it costs per answer.

    .venv/bin/python scripts/evaluate_guard.py [--split all|dev|test] [--show-misses]
                                               [--set evals/answer-checks.yaml ...]

Each case gives the knowledge-base entries the model was given (`sources`), the conversation and
an answer, labelled faithful or unfaithful by a helper session that never read the guard's code
(see each file's header). The guard reads the answer as the service does: the entries' texts in
both languages, the conversation and the shop's own texts are what the answer may say, and the
whole answer goes through the same gate a stream does. The finish reason is unknown in the sets
(None), so a cut-off answer is judged by its text alone.

Figures: recall = unfaithful answers caught / unfaithful; precision = caught answers that were
unfaithful / all answers failed; replaced = faithful answers failed / faithful; recall per kind;
the cost per answer (p50, p99 over all cases, 20 rounds, facts already read as in serving).

Tuning reads the dev half only (`--show-misses` refuses any other split: evals/cases.py); the
test half is reported in aggregate.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

from configs.schema import APP_NAME, PROJECT_ROOT, app_config_from_serve_config, load_serve_config
from evals.cases import SELECTABLE, LabelledSet, Purpose
from shop.directory import ShopDirectory

SETS = ("evals/answer-checks.yaml", "evals/answer-checks-model.yaml")
TARGETS = {"recall": 0.85, "precision": 0.90, "replaced": 0.05, "p99_ms": 2.0}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


def prepared(labelled: LabelledSet, split: str, purpose: Purpose, directory: ShopDirectory):
    """(case, guard, language, fact sheet) for each case of `split`."""
    out = []
    for case in labelled.select(split, purpose).cases:
        assistant = directory.get(case["shop"])
        entries = {e.id: e for e in assistant.knowledge.entries}
        missing = [s for s in case["sources"] if s not in entries]
        if missing:
            raise ValueError(f"{case['id']}: unknown sources {missing}")
        fact_texts = [t for s in case["sources"] for t in entries[s].text.values()]
        said = [m["content"] for m in case["conversation"] if isinstance(m["content"], str)]
        sheet = assistant.guard.facts(fact_texts, said)
        out.append((case, assistant.guard, case["lang"], sheet))
    return out


def evaluate(cases, show_misses: bool) -> dict:
    counts = Counter()
    by_kind: dict[str, Counter] = defaultdict(Counter)
    reasons = Counter()
    misses = []
    for case, guard, language, sheet in cases:
        gate = guard.check(case["answer"], case.get("finish_reason"), language, sheet)
        failed = gate.failure is not None
        unfaithful = case["label"] == "unfaithful"
        counts[(unfaithful, failed)] += 1
        by_kind[case.get("kind", "model")][failed] += 1
        if failed:
            reasons[gate.failure.reason] += 1
        if show_misses and failed != unfaithful:
            misses.append((case, gate.failure))
    caught, missed = counts[(True, True)], counts[(True, False)]
    wrongly, passed = counts[(False, True)], counts[(False, False)]
    result = {
        "cases": sum(counts.values()),
        "unfaithful": caught + missed, "faithful": wrongly + passed,
        "recall": caught / max(1, caught + missed),
        "precision": caught / max(1, caught + wrongly),
        "replaced": wrongly / max(1, wrongly + passed),
        "by_kind": {k: f"{c[True]}/{c[True] + c[False]}" for k, c in sorted(by_kind.items())},
        "reasons": dict(reasons.most_common()),
    }
    if show_misses:
        result["misses"] = misses
    return result


def cost_ms(cases, rounds: int = 20) -> tuple[float, float]:
    """p50 and p99 of one answer's check, facts already read (as a request finds them)."""
    times = []
    for _ in range(rounds):
        for case, guard, language, sheet in cases:
            started = time.perf_counter()
            guard.check(case["answer"], case.get("finish_reason"), language, sheet)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), percentile(times, 0.99)


# A 256-token answer's length: ~4 characters per token in English, ~1.5 in Chinese (Qwen's
# tokenizer on the demo shops' FAQ answers).
LONG_CHARS = {"en": 1024, "zh": 384}
STREAM_PIECE_CHARS = {"en": 4, "zh": 2}  # one token per piece, as a stream without batching


def long_answer_cost_ms(cases, rounds: int = 30) -> dict[str, tuple[float, float]]:
    """p50 and p99 of checking a 256-token answer fed a token at a time through the gate (a
    stream without batching, the dearest way), per language. The answer is the faithful
    answers of one shop and language joined until it is 256 tokens long, checked against all
    of their facts, so it passes and every sentence is read."""
    by_group: dict[tuple[str, str], list] = defaultdict(list)
    for item in cases:
        if item[0]["label"] == "faithful" and item[0].get("kind") != "no_answer":
            by_group[(item[0]["shop"], item[2])].append(item)
    results: dict[str, list[float]] = defaultdict(list)
    for (shop, language), items in sorted(by_group.items()):
        guard = items[0][1]
        text, sheet = "", None
        for case, _, _, case_sheet in items:
            text += case["answer"].strip() + ("\n" if language == "zh" else " ")
            sheet = case_sheet if sheet is None else sheet | case_sheet
            if len(text) >= LONG_CHARS[language]:
                break
        size = STREAM_PIECE_CHARS[language]
        pieces = [text[i:i + size] for i in range(0, len(text), size)]
        for _ in range(rounds):
            started = time.perf_counter()
            gate = guard.gate(language, sheet)
            for piece in pieces:
                gate.feed(piece)
            gate.end("stop")
            results[language].append((time.perf_counter() - started) * 1000)
    return {language: (statistics.median(t), percentile(t, 0.99))
            for language, t in sorted(results.items())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=SELECTABLE, default="all")
    parser.add_argument("--set", action="append", help="labelled set(s); default: both")
    parser.add_argument("--show-misses", action="store_true",
                        help="list the dev half's wrong verdicts")
    parser.add_argument("--no-cost", action="store_true")
    args = parser.parse_args()
    purpose = Purpose.SHOW_MISSES if args.show_misses else Purpose.SCORE
    raw = load_serve_config(PROJECT_ROOT / "configs" / "local-cpu.yaml")
    config = app_config_from_serve_config(raw, APP_NAME)
    everything = []
    for set_path in args.set or SETS:
        path = PROJECT_ROOT / set_path
        if not path.exists():
            print(f"{set_path}: not there, skipped")
            continue
        labelled = LabelledSet.load(path)
        clock = labelled.clock
        directory = ShopDirectory(config.shops.model_copy(
            update={"meaning": config.shops.meaning.model_copy(update={"enabled": False})}),
            PROJECT_ROOT, clock=lambda c=clock: c)
        cases = prepared(labelled, args.split, purpose, directory)
        everything.extend(cases)
        report(set_path, evaluate(cases, args.show_misses))
    if len(args.set or SETS) > 1:
        report("all sets", evaluate(everything, False))
    if not args.no_cost:
        p50, p99 = cost_ms(everything)
        print(f"cost per answer of the set: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
        for language, (p50, p99) in long_answer_cost_ms(everything).items():
            print(f"cost per 256-token answer ({language}), streamed a token at a time: "
                  f"p50 {p50:.3f} ms, p99 {p99:.3f} ms (target p99 <= {TARGETS['p99_ms']} ms)")
    return 0


def report(name: str, r: dict) -> None:
    print(f"== {name}: {r['cases']} cases ({r['unfaithful']} unfaithful, {r['faithful']} "
          f"faithful)")
    print(f"   recall {r['recall']:.3f} (>= {TARGETS['recall']}), precision "
          f"{r['precision']:.3f} (>= {TARGETS['precision']}), faithful replaced "
          f"{r['replaced']:.3f} (<= {TARGETS['replaced']})")
    print(f"   by kind (failed/all): {r['by_kind']}")
    print(f"   reasons: {r['reasons']}")
    for case, failure in r.get("misses", []):
        verdict = f"FAILED {failure.reason}: {failure.claim[:60]!r}" if failure else "PASSED"
        print(f"   - {case['id']} [{case['label']}/{case.get('kind')}] {verdict}\n"
              f"     Q: {case['conversation'][-1]['content'][:80]!r}\n"
              f"     A: {case['answer'][:160]!r}\n     why: {case.get('reason')}")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
