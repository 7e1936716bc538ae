"""Order-question recognition (shop/orders/intent.py) scored on evals/order-questions.yaml.

Prints precision and recall of "this message needs the shopper's own order" and the share of
order questions whose reference (order or tracking number) was read exactly, per split. Only the
dev half may be read case by case (`--show-misses`); the test half is scored in aggregate
(evals/cases.py).

    # the published figures: docs/evals/order-intent-test-split.txt
    .venv/bin/python scripts/evaluate_order_intent.py --split test
    .venv/bin/python scripts/evaluate_order_intent.py --split dev --show-misses [--set F]
"""

from __future__ import annotations

import argparse
import sys
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evals.cases import SELECTABLE, LabelledSet, Purpose  # noqa: E402
from shop.conversation import Conversation  # noqa: E402
from shop.orders.intent import recognise  # noqa: E402

EVALS = Path(__file__).resolve().parents[1] / "evals"
# Three sets written by helper sessions from the shops' files, each without the code; the third
# in a peak day's style. Their test halves together: docs/evals/order-intent-test-split.txt.
DEFAULT_SETS = [EVALS / name for name in ("order-questions.yaml", "order-questions-2.yaml",
                                          "order-questions-3.yaml")]


def predicted(case: dict):
    """What the shop layer recognises in the case's conversation (shop/assistant.py)."""
    conversation = Conversation.from_messages(case["messages"])
    return recognise(conversation.latest, conversation.last_reply)


def same_reference(found: str | None, expected: str | None) -> bool:
    """A reference read as the order system knows it: full-width digits are the same number."""
    def form(ref):
        return None if ref is None else unicodedata.normalize("NFKC", ref)
    return form(found) == form(expected)


def score(cases: list[dict]) -> dict[str, float]:
    tp = fp = fn = ref_right = 0
    for case in cases:
        found = predicted(case)
        truth = bool(case["expected_order_question"])
        if found is not None and truth:
            tp += 1
            ref_right += same_reference(found.ref, case.get("expected_ref"))
        elif found is not None:
            fp += 1
        elif truth:
            fn += 1
    return {"cases": len(cases), "order_questions": tp + fn,
            "precision": tp / (tp + fp) if tp + fp else 1.0,
            "recall": tp / (tp + fn) if tp + fn else 1.0,
            "reference_exact": ref_right / tp if tp else 1.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", default=None,
                        help="a labelled set (repeatable); default: the three order sets")
    parser.add_argument("--split", choices=SELECTABLE, default="dev")
    parser.add_argument("--show-misses", action="store_true",
                        help="print each wrong case (dev half only)")
    args = parser.parse_args()
    purpose = Purpose.SHOW_MISSES if args.show_misses else Purpose.SCORE
    pooled: list[dict] = []
    for path in args.set or DEFAULT_SETS:
        cases = LabelledSet.load(path).select(args.split, purpose).cases
        pooled += cases
        print(f"{Path(path).name} {args.split}: {report(score(cases))}")
        if args.show_misses:
            show_misses(cases)
    if len(args.set or DEFAULT_SETS) > 1:
        print(f"all sets {args.split}: {report(score(pooled))}")
    return 0


def report(figures: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in figures.items())


def show_misses(cases: list[dict]) -> None:
    for case in cases:
        found = predicted(case)
        truth = bool(case["expected_order_question"])
        wrong_ref = found is not None and truth and not same_reference(
            found.ref, case.get("expected_ref"))
        if (found is not None) != truth or wrong_ref:
            kind = "FN" if truth and found is None else "FP" if not truth else "REF"
            print(f"{kind} {case['id']} {case['messages'][-1]['content']!r} -> "
                  f"{found} (expected ref {case.get('expected_ref')!r})")


if __name__ == "__main__":
    raise SystemExit(main())
