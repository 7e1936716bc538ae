"""Choose a shop's relevance threshold (`retrieval.min_relevance`) on development data only.

Two development sets, printed side by side:
1. Held-out FAQ phrasings: each FAQ entry's first English and first Chinese phrasing, left out
   of the index, asked as questions (they should be found and reach the threshold), against
   evals/dev-out-of-scope.yaml (questions the knowledge base does not answer: they should not).
2. The dev half of the labelled set (evals/cases.py splits it by a hash of the case id):
   realistic shopper messages. Its test half is never read here (the loader refuses it to a
   tuning purpose), so the figures scripts/evaluate_shops.py reports on it stay honest.

The recommendation comes from set 2: the highest threshold whose end-to-end hit@3 (the answer's
entry among the facts given to the model) stays within a point of the best. Set 1 alone picked
0.24-0.26, which on real messages sent a third of answerable questions to "I will check" while
catching no more unanswerable ones: colloquial questions share few words with any entry, so a
lexical relevance cannot tell them from out-of-scope ones. The threshold therefore only catches
messages that match nothing; deciding that the facts found do not answer the question is left to
the model (the prompt asks it to reply with the shop's no-answer message, which the service
object then reports as a `no_answer` hand-off).

Curated answers (`curated_answers.min_relevance` and `min_margin`, shop/curated.py) are chosen
on the same development data: a grid of both, each setting judged by the curated answers it
would send. A wrong one reaches the shopper unchecked, so the recommendation is the setting
that sends the most right answers (held-out phrasings plus the dev half) among those that send
no wrong one on realistic messages: none to an out-of-scope question, none to a dev-half case
labelled with another entry or a hand-off, and a precision of at least CURATED_HELD_OUT_PRECISION
on held-out phrasings. Those are the hardest case: the question's own wording is missing from
the index, so a sibling entry's words can win ("What is it made of?" matched the entry on where
clothes are made, relevance 0.87); in a shop the FAQ holds the phrasings shoppers use, and each
wrong answer seen is fixed by adding that phrasing to the right entry.

    .venv/bin/python scripts/tune_retrieval.py [--shop demo-apparel]
"""

from __future__ import annotations

import argparse
import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import yaml

from configs.schema import APP_NAME, PROJECT_ROOT, app_config_from_serve_config, load_serve_config
from evals.cases import LabelledSet, Purpose
from evaluate_shops import EVAL_SET, evaluate
from shop.assistant import ShopAssistant
from shop.config import CuratedAnswersConfig
from shop.curated import curated_match
from shop.knowledge.base import KnowledgeBase
from shop.knowledge.files import load_entries
from shop.knowledge.index import KnowledgeIndex, WeightedQuery
from shop.text import COMMERCE_WORDS, Tokenizer

NEGATIVES = PROJECT_ROOT / "evals" / "dev-out-of-scope.yaml"
THRESHOLDS = [round(0.10 + 0.02 * i, 2) for i in range(11)]
SCAN = [round(0.02 * i, 2) for i in range(1, 16)]
CURATED_RELEVANCE = [round(0.30 + 0.05 * i, 2) for i in range(11)]
CURATED_MARGIN = [0.05, 0.10, 0.15, 0.20, 0.25]
# Share of right answers among those a setting sends to held-out phrasings (see the docstring);
# the dev half and the out-of-scope questions allow no wrong one at all.
CURATED_HELD_OUT_PRECISION = 0.95
# Largest drop of the dev half's hit@3 below its best that a higher threshold may cost.
HIT3_TOLERANCE = 0.01


def held_out_split(faq: Path, entries):
    """(index entries without the held-out phrasings, [(question, expected id)]): each FAQ
    entry's first English and first Chinese phrasing leave its documents."""
    phrasings = {f"faq/{e['id']}": e for e in yaml.safe_load(faq.read_text())["entries"]}
    kept, questions = [], []
    for entry in entries:
        source = phrasings.get(entry.id)
        if source is None:
            kept.append(entry)
            continue
        en, zh = source["questions"]["en"], source["questions"]["zh"]
        questions += [(en[0], entry.id), (zh[0], entry.id)]
        documents = (" ".join([*en[1:], entry.title["en"]]),
                     " ".join([*zh[1:], entry.title["zh"]]), *entry.documents[2:])
        kept.append(dataclasses.replace(entry, documents=documents))
    return kept, questions


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shop", action="append", help="shop id (default: all configured)")
    args = parser.parse_args()
    config = app_config_from_serve_config(
        load_serve_config(PROJECT_ROOT / "configs" / "local-cpu.yaml"), APP_NAME)
    negatives = yaml.safe_load(NEGATIVES.read_text())
    labelled = LabelledSet.load(EVAL_SET)
    dev_half = labelled.select("dev", Purpose.TUNE)
    clock = labelled.clock
    tokenizer = Tokenizer(COMMERCE_WORDS)
    now = datetime.now(timezone.utc)
    for shop in config.shops.catalog:
        if args.shop and shop.id not in args.shop:
            continue
        folder = PROJECT_ROOT / shop.knowledge_base
        entries, positives = held_out_split(folder / "faq.yaml", load_entries(folder))
        index = KnowledgeIndex(entries, tokenizer)
        pos = [(index.search([WeightedQuery(q)], now, 3), expected) for q, expected in positives]
        neg = [index.search([WeightedQuery(q)], now, 3) for q in negatives[shop.id]]
        top1 = lambda hits: hits[0].relevance if hits else 0.0  # noqa: E731
        print(f"\n{shop.id}: {len(positives)} held-out FAQ phrasings, {len(neg)} out-of-scope "
              f"questions; configured min_relevance {shop.retrieval.min_relevance}")
        print("threshold  found@1  found@3  grounded  rejected(neg)  balanced")
        for threshold in THRESHOLDS:
            grounded = [(hits, e) for hits, e in pos if top1(hits) >= threshold]
            at1 = sum(hits[0].entry.id == e for hits, e in grounded) / len(pos)
            at3 = sum(any(h.entry.id == e for h in hits[:3]) for hits, e in grounded) / len(pos)
            rejected = sum(top1(hits) < threshold for hits in neg) / len(neg)
            balanced = (len(grounded) / len(pos) + rejected) / 2
            share = len(grounded) / len(pos)
            print(f"  {threshold:5.2f}    {at1:5.2f}    {at3:5.2f}    {share:5.2f}"
                  f"        {rejected:5.2f}       {balanced:5.2f}")

        cases = dev_half.where(lambda case, shop_id=shop.id: case["shop"] == shop_id)
        knowledge = KnowledgeBase(folder, tokenizer)
        print(f"dev half of the labelled set: {len(cases)} cases")
        print("threshold  hit@1  hit@3  no_answer precision  recall  (fired)")
        scan = []
        for threshold in SCAN:
            tuned = shop.model_copy(update={"retrieval": shop.retrieval.model_copy(
                update={"min_relevance": threshold})})
            result = evaluate(cases, {shop.id: ShopAssistant(tuned, knowledge, lambda: clock)})
            na = result["handoff"]["no_answer"]
            scan.append((threshold, result["hit@3"]))
            print(f"  {threshold:5.2f}   {result['hit@1']:5.2f}  {result['hit@3']:5.2f}        "
                  f"{na['precision']:5.2f}       {na['recall']:5.2f}  ({na['predicted']})")
        best = max(hit3 for _, hit3 in scan)
        chosen = max(t for t, hit3 in scan if hit3 >= best - HIT3_TOLERANCE)
        print(f"recommended min_relevance {chosen} (highest within {HIT3_TOLERANCE} of the best "
              f"dev-half hit@3, {best:.2f})")
        tune_curated(shop, knowledge, cases, index, positives, negatives[shop.id], now, clock)
    return 0


def tune_curated(shop, knowledge, cases, held_out_index, positives, negatives, now, clock):
    """Print the curated-answer grid and the recommended setting (see the module docstring)."""
    print(f"curated answers: {len(positives)} held-out phrasings, {len(negatives)} out-of-scope, "
          f"{len(cases)} dev-half cases; configured min_relevance "
          f"{shop.curated_answers.min_relevance}, min_margin {shop.curated_answers.min_margin}")
    print("relevance margin  held-out right/wrong  out-of-scope wrong  dev-half right/wrong")
    words = knowledge.word_count
    searched_pos = [(held_out_index.search([WeightedQuery(q)], now, 3), want, words(q))
                    for q, want in positives]
    searched_neg = [(held_out_index.search([WeightedQuery(q)], now, 3), words(q))
                    for q in negatives]
    best = None
    for relevance in CURATED_RELEVANCE:
        for margin in CURATED_MARGIN:
            setting = CuratedAnswersConfig(min_relevance=relevance, min_margin=margin)
            pos = [(curated_match(found, setting, "en", n), want)
                   for found, want, n in searched_pos]
            pos_right = sum(m is not None and m.entry_id == want for m, want in pos)
            pos_wrong = sum(m is not None and m.entry_id != want for m, want in pos)
            neg_wrong = sum(curated_match(found, setting, "en", n) is not None
                            for found, n in searched_neg)
            tuned = shop.model_copy(update={"curated_answers": setting})
            result = evaluate(cases, {shop.id: ShopAssistant(tuned, knowledge, lambda: clock)})[
                "curated"]
            dev_right, dev_wrong = result["right"], result["sent"] - result["right"]
            print(f"  {relevance:5.2f}  {margin:5.2f}      {pos_right:4d} / {pos_wrong:<4d}"
                  f"           {neg_wrong:4d}             {dev_right:4d} / {dev_wrong}")
            safe = (neg_wrong == 0 and dev_wrong == 0
                    and pos_right >= CURATED_HELD_OUT_PRECISION * (pos_right + pos_wrong))
            score = (pos_right + dev_right, relevance, margin)  # ties: the stricter setting
            if safe and (best is None or score > best):
                best = score
    if best is None:
        print("no setting sends only right answers: keep curated answers off for this shop")
    else:
        print(f"recommended curated_answers min_relevance {best[1]}, min_margin {best[2]} "
              f"({best[0]} right answers, none wrong on the dev half or out-of-scope, held-out "
              f"precision >= {CURATED_HELD_OUT_PRECISION})")


if __name__ == "__main__":
    raise SystemExit(main())
